//! A `media` frame read by a direct scan of its bytes, the way Exotel writes one: flat JSON whose
//! values are plain strings (no escapes) or whole numbers, keys in any order, any JSON whitespace
//! between them. Anything else it declines, and the lenient reader (serde) reads the frame
//! instead.
//!
//! Every byte but the payload's is read, and every string but the payload checked as UTF-8 on
//! the way; the payload's bytes are left to whoever reads it: the strict base64 decoder accepts
//! only its alphabet, which is ASCII without quotes or escapes, so a payload it decodes makes
//! the whole frame the very frame [`Frame::read`] reads ([`Scanned::payload_is_plain`] checks
//! the same for a reader that does not decode). The fuzzer (`fuzzing::stream_frame`) and the
//! tests hold it to both.

use super::{Frame, Inbound, Oddities};
use std::borrow::Cow;
use std::ops::Range;

/// A `media` frame as the scan read it.
#[derive(Debug)]
pub struct Scanned<'a> {
    bytes: &'a [u8],
    /// Where the payload's bytes are, after its opening quote: not checked at all. In Exotel's
    /// layout they run to the frame's closing `"}}`, so a quote among them (a field after the
    /// payload) makes them no payload, which the decoder and [`Scanned::payload_is_plain`]
    /// refuse.
    payload: Range<usize>,
    /// Where the stream's id is, checked.
    stream_sid: Option<Range<usize>>,
    timestamp: Option<u64>,
    chunk: Option<u64>,
    pub inbound_track: bool,
}

impl<'a> Scanned<'a> {
    /// The payload's bytes, unchecked.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[self.payload.clone()]
    }

    /// Whether the payload is a JSON string serde reads as it stands: no quote, no escape, no
    /// control character (the rest of the frame is checked already).
    pub fn payload_is_plain(&self) -> bool {
        let payload = self.payload();
        memchr::memchr2(b'\\', b'"', payload).is_none() && no_control_bytes(payload)
    }

    /// The frame, for `text`, the frame's bytes as UTF-8, when the payload is plain (or
    /// decoded).
    pub fn frame(&self, text: &'a str) -> Frame<'a> {
        debug_assert_eq!(text.as_bytes(), self.bytes);
        Frame {
            event: Inbound::Media {
                payload: Cow::Borrowed(&text[self.payload.clone()]),
                timestamp: self.timestamp,
                chunk: self.chunk,
                inbound_track: self.inbound_track,
            },
            stream_sid: self.stream_sid.clone().map(|at| Cow::Borrowed(&text[at])),
            odd: Oddities::default(),
        }
    }
}

/// A `media` frame read by the scan, or `None` when the lenient reader must read it (another
/// event, another shape, a field it does not know).
pub fn media(bytes: &[u8]) -> Option<Scanned<'_>> {
    exotels_order(bytes).or_else(|| any_order(bytes))
}

/// Exotel's own layout, `{"event":"media","sequence_number":…,"stream_sid":"…","media":{"chunk":…,
/// "timestamp":…,"payload":"…"}}` (the numbers optional, plain or quoted), matched piece by
/// piece: most frames, in a fraction of [`any_order`]'s instructions. The payload, the last
/// value, ends where the frame's `"}}` starts: no search through its 2 KB for its quote.
fn exotels_order(bytes: &[u8]) -> Option<Scanned<'_>> {
    let mut s = Scanner { bytes, at: 0 };
    s.literal(b"{\"event\":\"media\",")?;
    if s.literal(b"\"sequence_number\":").is_some() {
        s.whole_number()?;
        s.literal(b",")?;
    }
    s.literal(b"\"stream_sid\":")?;
    let stream_sid = s.short_string()?;
    s.literal(b",\"media\":{")?;
    let chunk = s.optional_number(b"\"chunk\":")?;
    let timestamp = s.optional_number(b"\"timestamp\":")?;
    s.literal(b"\"payload\":\"")?;
    let end = bytes.strip_suffix(b"\"}}")?.len();
    (end >= s.at).then_some(Scanned {
        bytes,
        payload: s.at..end,
        stream_sid: Some(stream_sid),
        timestamp,
        chunk,
        inbound_track: true,
    })
}

/// Any order of the fields, any JSON whitespace, fields it does not know when their values are
/// plain.
fn any_order(bytes: &[u8]) -> Option<Scanned<'_>> {
    let mut s = Scanner { bytes, at: 0 };
    let mut top = Top::default();
    s.object(|s, key| top.field(s, key))?;
    s.skip_ws();
    if s.at != bytes.len() || top.event != Some(b"media") {
        return None;
    }
    let media = top.media?;
    Some(Scanned {
        bytes,
        payload: media.payload?,
        stream_sid: top.stream_sid,
        timestamp: media.timestamp,
        chunk: media.chunk,
        inbound_track: media.track != Some(b"outbound"),
    })
}

/// [`media`] for a frame that is text already, as the frame [`Frame::read`] reads.
pub fn media_frame(text: &str) -> Option<Frame<'_>> {
    let plain = |scanned: &Scanned| scanned.payload_is_plain();
    let bytes = text.as_bytes();
    let scanned = exotels_order(bytes)
        .filter(plain)
        .or_else(|| any_order(bytes).filter(plain))?;
    Some(scanned.frame(text))
}

/// The frame's own fields, each at most once (serde refuses a repeated one).
#[derive(Default)]
struct Top<'a> {
    event: Option<&'a [u8]>,
    stream_sid: Option<Range<usize>>,
    media: Option<Media<'a>>,
}

impl<'a> Top<'a> {
    fn field(&mut self, s: &mut Scanner<'a>, key: &[u8]) -> Option<()> {
        match key {
            b"event" => once(&mut self.event, s.string()?),
            b"stream_sid" | b"streamSid" => once(&mut self.stream_sid, s.string_at()?),
            b"media" => {
                let mut media = Media::default();
                s.object(|s, key| media.field(s, key))?;
                once(&mut self.media, media)
            }
            // The fields of other events are the lenient reader's to judge.
            b"start" | b"dtmf" | b"mark" | b"stop" | b"handoff" | b"transcript" => None,
            _ => s.skip_scalar(),
        }
    }
}

/// `media`'s fields.
#[derive(Default)]
struct Media<'a> {
    payload: Option<Range<usize>>,
    chunk: Option<u64>,
    timestamp: Option<u64>,
    track: Option<&'a [u8]>,
}

impl<'a> Media<'a> {
    fn field(&mut self, s: &mut Scanner<'a>, key: &[u8]) -> Option<()> {
        match key {
            b"payload" => once(&mut self.payload, s.payload()?),
            b"chunk" => once(&mut self.chunk, s.whole_number()?),
            b"timestamp" => once(&mut self.timestamp, s.whole_number()?),
            b"track" => once(&mut self.track, s.string()?),
            _ => s.skip_scalar(),
        }
    }
}

/// Sets a field the first time; a second time declines the frame.
fn once<T>(field: &mut Option<T>, value: T) -> Option<()> {
    match field {
        Some(_) => None,
        None => {
            *field = Some(value);
            Some(())
        }
    }
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn rest(&self) -> &'a [u8] {
        &self.bytes[self.at..]
    }

    /// `literal` next, taken.
    fn literal<const N: usize>(&mut self, literal: &[u8; N]) -> Option<()> {
        // An array's length known here: compared inline, not by a call to `memcmp`.
        let found = self.bytes[self.at..].first_chunk::<N>() == Some(literal);
        self.at += found as usize * N;
        found.then_some(())
    }

    /// `key` and a whole number and a comma, `Some(None)` without `key`, `None` for `key` and
    /// anything else.
    fn optional_number<const N: usize>(&mut self, key: &[u8; N]) -> Option<Option<u64>> {
        match self.literal(key) {
            Some(()) => self
                .whole_number()
                .filter(|_| self.literal(b",").is_some())
                .map(Some),
            None => Some(None),
        }
    }

    /// [`Scanner::string_at`] for an ASCII string of a few dozen bytes (an id), eight bytes at
    /// a time: its end is the first quote, and a backslash, a control byte or a non-ASCII one
    /// before it declines (the last few bytes of the frame a byte at a time).
    fn short_string(&mut self) -> Option<Range<usize>> {
        let rest = self.rest().strip_prefix(b"\"")?;
        let mut len = 0;
        loop {
            let Some(word) = rest[len..].first_chunk::<8>() else {
                while *rest.get(len)? != b'"' {
                    if special(rest[len]) {
                        return None;
                    }
                    len += 1;
                }
                break;
            };
            let (quotes, bad) = specials(u64::from_le_bytes(*word));
            if quotes | bad != 0 {
                // The lowest flag of each kind is a true one (see `specials`).
                let (quote, bad) = (quotes.trailing_zeros(), bad.trailing_zeros());
                if bad < quote {
                    return None;
                }
                len += quote as usize / 8;
                break;
            }
            len += 8;
        }
        let start = self.at + 1;
        self.at = start + len + 1;
        Some(start..start + len)
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after any whitespace, taken if it is `byte`.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_ws();
        let found = self.bytes.get(self.at) == Some(&byte);
        self.at += found as usize;
        found
    }

    /// `{"key":value,…}`, each value read by `field`, which declines with `None`.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        if !self.eat(b'{') {
            return None;
        }
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            self.skip_ws();
            let key = self.string()?;
            if !self.eat(b':') {
                return None;
            }
            self.skip_ws();
            field(self, key)?;
            if self.eat(b'}') {
                return Some(());
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    /// A string without escapes or control characters (serde refuses those raw), in UTF-8:
    /// where its bytes are. A byte at a time: the strings here (keys, ids, numbers) are short,
    /// and a search's set-up per string cost more than the string. Only a string with a
    /// non-ASCII byte is checked as UTF-8.
    fn string_at(&mut self) -> Option<Range<usize>> {
        if self.bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        let start = self.at + 1;
        let (mut end, mut high) = (start, 0u8);
        loop {
            match *self.bytes.get(end)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                b => high |= b,
            }
            end += 1;
        }
        if high >= 0x80 && std::str::from_utf8(&self.bytes[start..end]).is_err() {
            return None;
        }
        self.at = end + 1;
        Some(start..end)
    }

    /// [`Scanner::string_at`]'s bytes.
    fn string(&mut self) -> Option<&'a [u8]> {
        let at = self.string_at()?;
        Some(&self.bytes[at])
    }

    /// A string's bytes, up to the first quote, unchecked: where they are.
    fn payload(&mut self) -> Option<Range<usize>> {
        let rest = self.rest().strip_prefix(b"\"")?;
        let len = memchr::memchr(b'"', rest)?;
        let start = self.at + 1;
        self.at = start + len + 1;
        Some(start..start + len)
    }

    /// A whole number as JSON writes one (no leading zero), or a string of digits; at most 18
    /// digits, so it never overflows.
    fn whole_number(&mut self) -> Option<u64> {
        let quoted = self.bytes.get(self.at) == Some(&b'"');
        self.at += quoted as usize;
        let start = self.at;
        let mut n = 0u64;
        while let Some(d @ b'0'..=b'9') = self.bytes.get(self.at) {
            n = n.wrapping_mul(10).wrapping_add((d - b'0') as u64);
            self.at += 1;
        }
        let digits = self.at - start;
        let next = self.bytes.get(self.at);
        let ends_well = match quoted {
            true => next == Some(&b'"'),
            // No leading zero, no fraction or exponent: JSON's integers, which serde reads.
            false => {
                let leading_zero = digits > 1 && self.bytes[start] == b'0';
                !matches!(next, Some(b'.' | b'e' | b'E')) && !leading_zero
            }
        };
        if digits == 0 || digits > 18 || !ends_well {
            return None;
        }
        self.at += quoted as usize;
        Some(n)
    }

    /// An unknown field's value when it is a plain string or a whole number (which serde
    /// skips); anything else declines.
    fn skip_scalar(&mut self) -> Option<()> {
        match self.rest().first()? {
            b'"' => self.string().map(|_| ()),
            _ => self.whole_number().map(|_| ()),
        }
    }
}

/// A byte a plain ASCII string cannot hold as it stands: a backslash, a control byte or a
/// non-ASCII one.
fn special(b: u8) -> bool {
    b == b'\\' || !(0x20..0x80).contains(&b)
}

/// The eight bytes of `word` (the first the lowest) as flags at each byte's high bit: its
/// quotes, and its [`special`] bytes. A flag can be false only above a true one of its kind,
/// as a borrow runs upward, so the lowest flag of each kind is exact.
fn specials(word: u64) -> (u64, u64) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let under_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let quotes = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslashes = zero_byte(word ^ (ONES * u64::from(b'\\')));
    (quotes, under_space | backslashes | (word & HIGH))
}

/// No byte under 0x20: the smallest byte, a reduction without an early exit that the compiler
/// vectorizes (a payload is 2 KB).
fn no_control_bytes(bytes: &[u8]) -> bool {
    bytes.iter().fold(u8::MAX, |least, b| least.min(*b)) >= 0x20
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the scan reads is what serde reads; `None` is a frame it leaves to serde.
    fn scanned(text: &str) -> Option<Frame<'_>> {
        let fast = media_frame(text);
        if let Some(frame) = &fast {
            assert_eq!(Ok(frame), Frame::read(text, 8000).as_ref(), "{text}");
        }
        fast
    }

    #[test]
    fn exotels_media_frames_are_scanned_in_any_order_and_spacing() {
        for text in [
            r#"{"event":"media","sequence_number":"3","stream_sid":"MZ1","media":{"chunk":"2","timestamp":"40","payload":"AQID"}}"#,
            r#"{"event":"media","stream_sid":"MZ1","media":{"payload":"AQID"}}"#,
            r#"{"media":{"payload":"AQID","timestamp":40,"chunk":2},"stream_sid":"MZ1","event":"media"}"#,
            "{ \"event\" : \"media\",\n\t\"streamSid\":\"MZ1\", \"media\": {\"payload\": \"AQID\", \"track\": \"outbound\"} }",
            r#"{"event":"media","media":{"payload":"","protocol":7}}"#,
            // Exotel's layout up to the payload, a field after it.
            r#"{"event":"media","stream_sid":"MZ1","media":{"payload":"AQID","track":"outbound"}}"#,
        ] {
            assert!(scanned(text).is_some(), "{text}");
        }
    }

    #[test]
    fn exotels_layout_reads_as_any_order_reads_it() {
        for text in [
            r#"{"event":"media","sequence_number":"3","stream_sid":"MZ1","media":{"chunk":"2","timestamp":"40","payload":"AQID"}}"#,
            r#"{"event":"media","sequence_number":3,"stream_sid":"MZ1","media":{"chunk":2,"timestamp":40,"payload":"AQID"}}"#,
            r#"{"event":"media","stream_sid":"MZ1","media":{"payload":"AQID"}}"#,
            r#"{"event":"media","stream_sid":"MZ1","media":{"timestamp":"40","payload":""}}"#,
        ] {
            let exotels = exotels_order(text.as_bytes()).expect(text).frame(text);
            assert_eq!(
                Some(&exotels),
                any_order(text.as_bytes()).map(|s| s.frame(text)).as_ref()
            );
            assert_eq!(Ok(exotels), Frame::read(text, 8000), "{text}");
        }
        // Its near misses go to any_order, which reads them all the same.
        for text in [
            r#"{"event":"media","stream_sid":"MZ\u0031","media":{"payload":"AQID"}}"#,
            r#"{"event":"media","stream_sid":"MZé","media":{"payload":"AQID"}}"#,
            r#"{"event":"media","stream_sid":"MZ0123456789abcdef01\u00e9","media":{"payload":"AQID"}}"#,
            r#"{"event":"media","stream_sid":"MZ1","media":{"payload":"AQID"}} "#,
            r#"{"event":"media","stream_sid":"MZ1","media":{"chunk":01,"payload":"AQID"}}"#,
        ] {
            assert!(exotels_order(text.as_bytes()).is_none(), "{text}");
        }
        assert!(
            scanned(r#"{"event":"media","stream_sid":"MZé","media":{"payload":"AQID"}} "#)
                .is_some()
        );
        // A field after the payload: Exotel's layout takes it for the payload's, which then
        // holds a quote, and neither the decoder nor a reader of plain payloads takes it.
        let text =
            r#"{"event":"media","stream_sid":"MZ1","media":{"payload":"AQID","track":"outbound"}}"#;
        let taken = exotels_order(text.as_bytes()).expect("Exotel's layout up to the payload");
        assert_eq!(taken.payload(), br#"AQID","track":"outbound"#);
        assert!(!taken.payload_is_plain());
        let mut pcm = Vec::new();
        assert!(super::super::audio64::decode_append(taken.payload(), &mut pcm).is_err());
    }

    #[test]
    fn stream_ids_of_every_length_with_anything_anywhere_read_as_serde_reads_them() {
        for len in 0..40 {
            let plain = "M".repeat(len);
            let frame = |sid: &str| {
                format!(r#"{{"event":"media","stream_sid":"{sid}","media":{{"payload":"AQID"}}}}"#)
            };
            assert!(scanned(&frame(&plain)).is_some(), "{len}");
            for place in 0..len {
                for odd in ['\\', '"', '\u{1}', '\u{7f}', 'é', ' '] {
                    let mut sid = plain.clone();
                    sid.replace_range(place..place + 1, &odd.to_string());
                    // Whatever the scan reads, serde reads the same (`scanned` checks it).
                    scanned(&frame(&sid));
                }
            }
        }
    }

    #[test]
    fn a_words_first_quote_and_first_special_byte_are_found_exactly() {
        // The lowest flag of each kind is the first byte of that kind, and a word with none
        // has no flag of that kind.
        let lowest = |flags: u64| (flags != 0).then(|| flags.trailing_zeros() as usize / 8);
        let check = |bytes: [u8; 8]| {
            let (quotes, specials) = specials(u64::from_le_bytes(bytes));
            assert_eq!(
                lowest(quotes),
                bytes.iter().position(|&b| b == b'"'),
                "{bytes:?}"
            );
            assert_eq!(
                lowest(specials),
                bytes.iter().position(|&b| special(b)),
                "{bytes:?}"
            );
        };
        for place in 0..8 {
            for byte in 0..=255u8 {
                let mut bytes = *b"MZ01abcd";
                bytes[place] = byte;
                check(bytes);
            }
        }
        // Pairs of bytes around the edges, in two places.
        let edges = [
            0x00, 0x1f, 0x20, 0x21, b'"', b'#', b'[', b'\\', b']', 0x7f, 0x80, 0xff,
        ];
        for &a in &edges {
            for &b in &edges {
                check([b'x', a, b'x', b'x', b'x', b'x', b, b'x']);
                check([a, b, b'x', b'x', b'x', b'x', b'x', b'x']);
            }
        }
    }

    #[test]
    fn every_other_shape_is_left_to_the_lenient_reader() {
        for text in [
            r#"{"event":"mark","stream_sid":"MZ1","mark":{"name":"a"}}"#,
            r#"{"event":"media","stream_sid":"M\"Z","media":{"payload":"AQID"}}"#,
            r#"{"event":"media","stream_sid":"MZ1","media":{"payload":"AQ\nID"}}"#,
            "{\"event\":\"media\",\"media\":{\"payload\":\"AQ\u{1}ID\"}}",
            r#"{"event":"media","stream_sid":1,"media":{"payload":"AQID"}}"#,
            r#"{"event":"media","stream_sid":null,"media":{"payload":"AQID"}}"#,
            r#"{"event":"media","media":{"payload":"AQID"},"media":{"payload":"AQID"}}"#,
            r#"{"event":"media","stream_sid":"a","streamSid":"b","media":{"payload":"AQID"}}"#,
            r#"{"event":"media","media":{"payload":"AQID","chunk":012}}"#,
            r#"{"event":"media","media":{"payload":"AQID","chunk":1.5}}"#,
            r#"{"event":"media","media":{"payload":"AQID","chunk":" 7"}}"#,
            r#"{"event":"media","media":{"payload":"AQID","chunk":"12345678901234567890"}}"#,
            r#"{"event":"media","media":{"payload":"AQID","extra":{"a":1}}}"#,
            r#"{"event":"media","media":{"payload":"AQID"},"start":{}}"#,
            r#"{"event":"media","media":{"payload":"AQID"}} trailing"#,
            r#"{"event":"media","media":{"payload":"AQID"}"#,
            r#"{"event":"media"}"#,
            r#"{"event":"media","media":{"chunk":"#,
            r#"{"event":"media","media":{"chunk":"#.trim_end_matches(':'),
            r#"{"event":"media","media":{"chunk":""#,
            r#"{"event":"media","media":{}}"#,
            r#"{"event":"media","media":"AQID"}"#,
        ] {
            assert!(scanned(text).is_none(), "{text}");
        }
    }
}
