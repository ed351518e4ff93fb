//! A `media` frame read by a direct scan, the way Exotel writes one: flat JSON whose values are
//! plain strings (no escapes) or whole numbers, keys in any order, any JSON whitespace between
//! them. Anything else it declines, and the lenient reader (serde) reads the frame instead.
//!
//! Its one promise, checked by the fuzzer (`fuzzing::stream_frame`) and the tests: a frame it
//! reads is the very frame [`Frame::read`](super::Frame::read) reads.

use super::{Frame, Inbound, Oddities};
use std::borrow::Cow;

/// A `media` frame's event read by the scan, or `None` when the lenient reader must read it
/// (another event, another shape, a field it does not know).
pub fn media(text: &str) -> Option<Frame<'_>> {
    let mut s = Scanner { text, at: 0 };
    let mut top = Top::default();
    s.object(|s, key| top.field(s, key))?;
    s.skip_ws();
    if s.at != text.len() || top.event != Some("media") {
        return None;
    }
    let media = top.media?;
    Some(Frame {
        event: Inbound::Media {
            payload: Cow::Borrowed(media.payload?),
            timestamp: media.timestamp,
            chunk: media.chunk,
            inbound_track: media.track != Some("outbound"),
        },
        stream_sid: top.stream_sid.map(Cow::Borrowed),
        odd: Oddities::default(),
    })
}

/// The frame's own fields, each at most once (serde refuses a repeated one).
#[derive(Default)]
struct Top<'a> {
    event: Option<&'a str>,
    stream_sid: Option<&'a str>,
    media: Option<Media<'a>>,
}

impl<'a> Top<'a> {
    fn field(&mut self, s: &mut Scanner<'a>, key: &str) -> Option<()> {
        match key {
            "event" => once(&mut self.event, s.string()?),
            "stream_sid" | "streamSid" => once(&mut self.stream_sid, s.string()?),
            "media" => {
                let mut media = Media::default();
                s.object(|s, key| media.field(s, key))?;
                once(&mut self.media, media)
            }
            // The fields of other events are the lenient reader's to judge.
            "start" | "dtmf" | "mark" | "stop" | "handoff" | "transcript" => None,
            _ => s.skip_scalar(),
        }
    }
}

/// `media`'s fields.
#[derive(Default)]
struct Media<'a> {
    payload: Option<&'a str>,
    chunk: Option<u64>,
    timestamp: Option<u64>,
    track: Option<&'a str>,
}

impl<'a> Media<'a> {
    fn field(&mut self, s: &mut Scanner<'a>, key: &str) -> Option<()> {
        match key {
            "payload" => once(&mut self.payload, s.string()?),
            "chunk" => once(&mut self.chunk, s.whole_number()?),
            "timestamp" => once(&mut self.timestamp, s.whole_number()?),
            "track" => once(&mut self.track, s.string()?),
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
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    fn bytes(&self) -> &'a [u8] {
        &self.text.as_bytes()[self.at..]
    }

    fn skip_ws(&mut self) {
        let ws = self
            .bytes()
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
        self.at += ws.count();
    }

    /// The next byte after any whitespace, taken if it is `byte`.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_ws();
        let found = self.bytes().first() == Some(&byte);
        self.at += found as usize;
        found
    }

    /// `{"key":value,…}`, each value read by `field`, which declines with `None`.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &str) -> Option<()>) -> Option<()> {
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

    /// A string without escapes or control characters (serde refuses those raw), borrowed.
    fn string(&mut self) -> Option<&'a str> {
        let rest = self.bytes().strip_prefix(b"\"")?;
        let len = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[len] != b'"' || !no_control_bytes(&rest[..len]) {
            return None;
        }
        let start = self.at + 1;
        self.at = start + len + 1;
        // Both ends are next to an ASCII quote: whole UTF-8.
        Some(&self.text[start..start + len])
    }

    /// A whole number as JSON writes one (no leading zero), or a string of digits; at most 18
    /// digits, so it never overflows.
    fn whole_number(&mut self) -> Option<u64> {
        let quoted = self.bytes().first() == Some(&b'"');
        let digits = if quoted {
            self.string()?.as_bytes()
        } else {
            let digits = self.bytes();
            let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
            if n > 1 && digits[0] == b'0' || matches!(digits.get(n), Some(b'.' | b'e' | b'E')) {
                return None;
            }
            self.at += n;
            &digits[..n]
        };
        if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(digits.iter().fold(0, |n, d| n * 10 + (d - b'0') as u64))
    }

    /// An unknown field's value when it is a plain string or a whole number (which serde
    /// skips); anything else declines.
    fn skip_scalar(&mut self) -> Option<()> {
        match self.bytes().first()? {
            b'"' => self.string().map(|_| ()),
            _ => self.whole_number().map(|_| ()),
        }
    }
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
        let fast = media(text);
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
        ] {
            assert!(scanned(text).is_some(), "{text}");
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
            r#"{"event":"media","media":{}}"#,
            r#"{"event":"media","media":"AQID"}"#,
        ] {
            assert!(scanned(text).is_none(), "{text}");
        }
    }
}
