//! Exotel's stream protocol (exotel-protocol.md §3) as plain types: the events Exotel sends,
//! decoded without allocating (strings borrow from the frame), and the events we send, encoded
//! straight into a buffer the session owns.
//!
//! Owns field names and their tolerated variants (numbers as strings, `stream_sid` at the top
//! level or inside `start`). Must not know about sockets, bots or pacing.

use base64::Engine as _;
use bytes::{BufMut, BytesMut};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A number Exotel may send as a JSON number or as a string (`"sequence_number": "2"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Num(pub u64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Num, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number or a string holding one")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                u64::try_from(v)
                    .map(Num)
                    .map_err(|_| E::custom("negative number"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
                if v >= 0.0 && v.fract() == 0.0 {
                    Ok(Num(v as u64))
                } else {
                    Err(E::custom("not a whole number"))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
                // "128kbps" style values are not numbers; digits only, else an error.
                v.trim()
                    .parse()
                    .map(Num)
                    .map_err(|_| E::custom("not a number"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A string from the frame: borrowed when it has no JSON escapes, owned otherwise. serde
/// borrows a bare `Cow<str>` field but not one inside `Option`, which would copy every
/// `stream_sid` of every media frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text<'a>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The frame as Exotel writes it: every event's fields, all optional, so one parse reads any
/// event. Unknown fields are skipped.
#[derive(Deserialize, Debug, Default)]
struct RawEvent<'a> {
    #[serde(borrow)]
    event: Text<'a>,
    #[serde(default, borrow, alias = "streamSid")]
    stream_sid: Option<Text<'a>>,
    #[serde(default)]
    sequence_number: Option<Num>,
    #[serde(default, borrow)]
    start: Option<RawStart<'a>>,
    #[serde(default, borrow)]
    media: Option<RawMedia<'a>>,
    #[serde(default, borrow)]
    dtmf: Option<RawDtmf<'a>>,
    #[serde(default, borrow)]
    mark: Option<RawMark<'a>>,
    #[serde(default, borrow)]
    stop: Option<RawStop<'a>>,
}

#[derive(Deserialize, Debug, Default)]
struct RawStart<'a> {
    #[serde(default, borrow, alias = "streamSid")]
    stream_sid: Option<Text<'a>>,
    #[serde(default, borrow, alias = "callSid")]
    call_sid: Option<Text<'a>>,
    #[serde(default, borrow, alias = "accountSid")]
    account_sid: Option<Text<'a>>,
    #[serde(default, borrow)]
    from: Option<Text<'a>>,
    #[serde(default, borrow)]
    to: Option<Text<'a>>,
    #[serde(default, alias = "customParameters")]
    custom_parameters: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, borrow, alias = "mediaFormat")]
    media_format: Option<RawFormat<'a>>,
}

#[derive(Deserialize, Debug, Default)]
struct RawFormat<'a> {
    #[serde(default, borrow)]
    encoding: Option<Text<'a>>,
    #[serde(default, alias = "sampleRate")]
    sample_rate: Option<Num>,
}

#[derive(Deserialize, Debug, Default)]
struct RawMedia<'a> {
    #[serde(default)]
    chunk: Option<Num>,
    #[serde(default)]
    timestamp: Option<Num>,
    #[serde(borrow)]
    payload: Text<'a>,
    #[serde(default, borrow)]
    track: Option<Text<'a>>,
}

#[derive(Deserialize, Debug, Default)]
struct RawDtmf<'a> {
    #[serde(borrow)]
    digit: Text<'a>,
    #[serde(default)]
    duration: Option<Num>,
}

#[derive(Deserialize, Debug, Default)]
struct RawMark<'a> {
    #[serde(borrow)]
    name: Text<'a>,
}

#[derive(Deserialize, Debug, Default)]
struct RawStop<'a> {
    #[serde(default, borrow)]
    reason: Option<Text<'a>>,
}

/// `start`: who is calling and how the audio is encoded. Owned: it arrives once per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartEvent {
    pub stream_sid: String,
    pub call_sid: String,
    pub account_sid: String,
    pub from: String,
    pub to: String,
    /// `start.custom_parameters`, values as text.
    pub custom_parameters: BTreeMap<String, String>,
    /// 8000, 16000 or 24000.
    pub sample_rate: u32,
}

/// One event from Exotel. Borrowed events (`Media`, `Dtmf`, `Mark`) point into the frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    Connected,
    Start(Box<StartEvent>),
    Media {
        /// Base64 of 16-bit little-endian mono PCM.
        payload: Cow<'a, str>,
        /// Milliseconds since the stream started, when given.
        timestamp: Option<u64>,
        chunk: Option<u64>,
        /// `false` for `track: "outbound"` (our own audio echoed by some configurations).
        inbound_track: bool,
    },
    Dtmf {
        digit: char,
        duration_ms: Option<u64>,
    },
    Mark {
        name: Cow<'a, str>,
    },
    Stop {
        reason: Cow<'a, str>,
    },
}

/// Why a frame is not an event we can use. Logged and skipped: the call goes on.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    NotJson(String),
    UnknownEvent(String),
    /// The event lacks the object its name calls for (`media` without `media`, …).
    Missing(&'static str),
    BadField(&'static str, String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::NotJson(e) => write!(f, "not a JSON event: {e}"),
            DecodeError::UnknownEvent(name) => write!(f, "unknown event {name:?}"),
            DecodeError::Missing(what) => write!(f, "event without its {what:?} object"),
            DecodeError::BadField(field, why) => write!(f, "{field}: {why}"),
        }
    }
}

/// Sample rates Exotel streams at.
pub const SAMPLE_RATES: [u32; 3] = [8000, 16000, 24000];

impl<'a> Inbound<'a> {
    /// Decodes one text frame. Allocates nothing for `media`, `dtmf`, `mark` and `stop` unless a
    /// string holds JSON escapes.
    pub fn parse(text: &'a str) -> Result<Inbound<'a>, DecodeError> {
        let raw: RawEvent<'a> =
            serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
        let _ = raw.sequence_number;
        match raw.event.0.as_ref() {
            "connected" => Ok(Inbound::Connected),
            "start" => {
                let s = raw.start.ok_or(DecodeError::Missing("start"))?;
                let stream_sid = raw
                    .stream_sid
                    .or(s.stream_sid)
                    .map(|t| t.0.into_owned())
                    .unwrap_or_default();
                let format = s.media_format.unwrap_or_default();
                let sample_rate = format.sample_rate.map(|n| n.0).unwrap_or(8000);
                let sample_rate = u32::try_from(sample_rate)
                    .ok()
                    .filter(|r| SAMPLE_RATES.contains(r))
                    .ok_or_else(|| {
                        DecodeError::BadField(
                            "media_format.sample_rate",
                            format!("{sample_rate} is not 8000, 16000 or 24000"),
                        )
                    })?;
                if let Some(enc) = format.encoding.as_ref().map(|t| t.0.as_ref()) {
                    // base64, linear16 and raw/slin have all been seen for the same PCM.
                    let known = [
                        "base64",
                        "linear16",
                        "raw/slin",
                        "slin",
                        "pcm",
                        "audio/x-l16",
                    ];
                    if !known.iter().any(|k| enc.eq_ignore_ascii_case(k)) {
                        return Err(DecodeError::BadField(
                            "media_format.encoding",
                            format!("{enc:?} is not 16-bit PCM"),
                        ));
                    }
                }
                let text_of = |v: Option<Text<'_>>| v.map(|t| t.0.into_owned()).unwrap_or_default();
                Ok(Inbound::Start(Box::new(StartEvent {
                    stream_sid,
                    call_sid: text_of(s.call_sid),
                    account_sid: text_of(s.account_sid),
                    from: text_of(s.from),
                    to: text_of(s.to),
                    custom_parameters: s
                        .custom_parameters
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| match v {
                            serde_json::Value::String(s) => (k, s),
                            other => (k, other.to_string()),
                        })
                        .collect(),
                    sample_rate,
                })))
            }
            "media" => {
                let m = raw.media.ok_or(DecodeError::Missing("media"))?;
                Ok(Inbound::Media {
                    payload: m.payload.0,
                    timestamp: m.timestamp.map(|n| n.0),
                    chunk: m.chunk.map(|n| n.0),
                    inbound_track: m.track.as_ref().map(|t| t.0.as_ref()) != Some("outbound"),
                })
            }
            "dtmf" => {
                let d = raw.dtmf.ok_or(DecodeError::Missing("dtmf"))?;
                let mut chars = d.digit.0.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if c.is_ascii_digit() || "*#ABCD".contains(c) => {
                        Ok(Inbound::Dtmf {
                            digit: c,
                            duration_ms: d.duration.map(|n| n.0),
                        })
                    }
                    _ => Err(DecodeError::BadField(
                        "dtmf.digit",
                        format!("{:?} is not one key", d.digit.0),
                    )),
                }
            }
            "mark" => Ok(Inbound::Mark {
                name: raw.mark.ok_or(DecodeError::Missing("mark"))?.name.0,
            }),
            "stop" => Ok(Inbound::Stop {
                reason: raw
                    .stop
                    .and_then(|s| s.reason)
                    .map_or(Cow::Borrowed("unspecified"), |t| t.0),
            }),
            other => Err(DecodeError::UnknownEvent(other.chars().take(40).collect())),
        }
    }
}

/// What a bot sends toward Exotel (§3, "To Exotel"), as a relayed bot writes it: the same
/// three events we send ourselves.
#[derive(Debug, PartialEq, Eq)]
pub enum BotCommand<'a> {
    /// Base64 of 16-bit little-endian mono PCM, any length.
    Media {
        payload: Cow<'a, str>,
    },
    Mark {
        name: Cow<'a, str>,
    },
    Clear,
}

impl<'a> BotCommand<'a> {
    /// Decodes one text frame from a bot. Allocates nothing unless a string holds JSON escapes.
    pub fn parse(text: &'a str) -> Result<BotCommand<'a>, DecodeError> {
        let raw: RawEvent<'a> =
            serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
        match raw.event.0.as_ref() {
            "media" => Ok(BotCommand::Media {
                payload: raw.media.ok_or(DecodeError::Missing("media"))?.payload.0,
            }),
            "mark" => Ok(BotCommand::Mark {
                name: raw.mark.ok_or(DecodeError::Missing("mark"))?.name.0,
            }),
            "clear" => Ok(BotCommand::Clear),
            other => Err(DecodeError::UnknownEvent(other.chars().take(40).collect())),
        }
    }
}

/// The events we send. Encoded by hand into the session's buffer: the layout is fixed, and the
/// only strings (stream sid, mark names) go through serde_json's escaping.
pub struct Encoder {
    /// `"S…"` with its quotes, escaped once per call.
    stream_sid_json: String,
}

impl Encoder {
    pub fn new(stream_sid: &str) -> Encoder {
        Encoder {
            stream_sid_json: serde_json::to_string(stream_sid).unwrap_or_else(|_| "\"\"".into()),
        }
    }

    /// Bytes `media` takes for `pcm_len` bytes of audio, for reserving once.
    pub fn media_len(&self, pcm_len: usize) -> usize {
        64 + self.stream_sid_json.len() + base64::encoded_len(pcm_len, true).unwrap_or(0)
    }

    /// `{"event":"media","stream_sid":"S…","media":{"payload":"<base64>"}}`
    pub fn media(&self, out: &mut BytesMut, pcm: &[u8]) {
        out.reserve(self.media_len(pcm.len()));
        out.put_slice(b"{\"event\":\"media\",\"stream_sid\":");
        out.put_slice(self.stream_sid_json.as_bytes());
        out.put_slice(b",\"media\":{\"payload\":\"");
        let start = out.len();
        let b64_len = base64::encoded_len(pcm.len(), true).unwrap_or(0);
        out.resize(start + b64_len, 0);
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(pcm, &mut out[start..])
            .unwrap_or(0);
        out.truncate(start + written);
        out.put_slice(b"\"}}");
    }

    /// `{"event":"mark","stream_sid":"S…","mark":{"name":"…"}}`
    pub fn mark(&self, out: &mut BytesMut, name: &str) {
        out.put_slice(b"{\"event\":\"mark\",\"stream_sid\":");
        out.put_slice(self.stream_sid_json.as_bytes());
        out.put_slice(b",\"mark\":{\"name\":");
        let _ = serde_json::to_writer(out.writer(), name);
        out.put_slice(b"}}");
    }

    /// `{"event":"stop","stream_sid":"S…","stop":{"call_sid":"C…","account_sid":"A…","reason":"…"}}`,
    /// Exotel's own `stop`, for telling a relayed bot that the call ended when Exotel's `stop`
    /// never came (the caller's socket broke, the server is shutting down, …).
    pub fn stop(&self, out: &mut BytesMut, start: &StartEvent, reason: &str) {
        out.put_slice(b"{\"event\":\"stop\",\"stream_sid\":");
        out.put_slice(self.stream_sid_json.as_bytes());
        out.put_slice(b",\"stop\":");
        let stop = serde_json::json!({
            "call_sid": start.call_sid,
            "account_sid": start.account_sid,
            "reason": reason,
        });
        let _ = serde_json::to_writer(out.writer(), &stop);
        out.put_slice(b"}");
    }

    /// `{"event":"clear","stream_sid":"S…"}`
    pub fn clear(&self, out: &mut BytesMut) {
        out.put_slice(b"{\"event\":\"clear\",\"stream_sid\":");
        out.put_slice(self.stream_sid_json.as_bytes());
        out.put_slice(b"}");
    }
}

/// Decodes a base64 payload into `pcm` (cleared first; no allocation within its capacity).
pub fn decode_payload(payload: &str, pcm: &mut Vec<u8>) -> Result<(), base64::DecodeSliceError> {
    let max = payload.len().div_ceil(4) * 3;
    pcm.clear();
    pcm.resize(max, 0);
    let n = base64::engine::general_purpose::STANDARD.decode_slice(payload.as_bytes(), pcm)?;
    pcm.truncate(n);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_a_bot_sends() {
        let media = r#"{"event":"media","stream_sid":"S","media":{"payload":"AAA=","chunk":3}}"#;
        assert_eq!(
            BotCommand::parse(media),
            Ok(BotCommand::Media {
                payload: Cow::Borrowed("AAA=")
            })
        );
        assert_eq!(
            BotCommand::parse(r#"{"event":"mark","mark":{"name":"a\"b"}}"#),
            Ok(BotCommand::Mark {
                name: Cow::Owned("a\"b".into())
            })
        );
        assert_eq!(
            BotCommand::parse(r#"{"event":"clear"}"#),
            Ok(BotCommand::Clear)
        );
        assert!(matches!(
            BotCommand::parse(r#"{"event":"start"}"#),
            Err(DecodeError::UnknownEvent(_))
        ));
        assert!(matches!(
            BotCommand::parse(r#"{"event":"media"}"#),
            Err(DecodeError::Missing("media"))
        ));
        assert!(matches!(
            BotCommand::parse("hello"),
            Err(DecodeError::NotJson(_))
        ));
    }

    #[test]
    fn a_synthesized_stop_reads_as_exotels_own() {
        let start = StartEvent {
            stream_sid: "S1".into(),
            call_sid: "C1".into(),
            account_sid: "A1".into(),
            from: String::new(),
            to: String::new(),
            custom_parameters: BTreeMap::new(),
            sample_rate: 8000,
        };
        let mut out = BytesMut::new();
        Encoder::new("S1").stop(&mut out, &start, "socket-closed");
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            Inbound::parse(text),
            Ok(Inbound::Stop {
                reason: Cow::Borrowed("socket-closed")
            })
        );
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["stream_sid"], "S1");
        assert_eq!(v["stop"]["call_sid"], "C1");
    }

    #[test]
    fn parses_the_documented_events() {
        assert_eq!(
            Inbound::parse(r#"{"event":"connected","protocol":"x"}"#),
            Ok(Inbound::Connected)
        );
        let start = Inbound::parse(
            r#"{"event":"start","sequence_number":"1","start":{"stream_sid":"S1","call_sid":"C1","account_sid":"A1","from":"+91","to":"0","custom_parameters":{"k":"v","n":3},"media_format":{"encoding":"base64","sample_rate":"16000","bit_rate":"128kbps"}}}"#,
        )
        .unwrap();
        let Inbound::Start(s) = start else { panic!() };
        assert_eq!(
            (s.stream_sid.as_str(), s.call_sid.as_str(), s.sample_rate),
            ("S1", "C1", 16000)
        );
        assert_eq!(s.custom_parameters["k"], "v");
        assert_eq!(s.custom_parameters["n"], "3");
        let media = Inbound::parse(
            r#"{"event":"media","sequence_number":2,"stream_sid":"S1","media":{"chunk":1,"timestamp":"100","payload":"AAA="}}"#,
        );
        assert_eq!(
            media,
            Ok(Inbound::Media {
                payload: "AAA=".into(),
                timestamp: Some(100),
                chunk: Some(1),
                inbound_track: true
            })
        );
        assert_eq!(
            Inbound::parse(r#"{"event":"dtmf","dtmf":{"digit":"5","duration":"200"}}"#),
            Ok(Inbound::Dtmf {
                digit: '5',
                duration_ms: Some(200)
            })
        );
        assert_eq!(
            Inbound::parse(r#"{"event":"mark","mark":{"name":"g"}}"#),
            Ok(Inbound::Mark { name: "g".into() })
        );
        assert_eq!(
            Inbound::parse(r#"{"event":"stop","stop":{"call_sid":"C","reason":"callended"}}"#),
            Ok(Inbound::Stop {
                reason: "callended".into()
            })
        );
    }

    #[test]
    fn stream_sid_at_the_top_level_wins_and_rates_default_to_8000() {
        let Ok(Inbound::Start(s)) =
            Inbound::parse(r#"{"event":"start","stream_sid":"TOP","start":{"stream_sid":"IN"}}"#)
        else {
            panic!()
        };
        assert_eq!((s.stream_sid.as_str(), s.sample_rate), ("TOP", 8000));
        let Ok(Inbound::Start(s)) =
            Inbound::parse(r#"{"event":"start","start":{"streamSid":"IN"}}"#)
        else {
            panic!()
        };
        assert_eq!(s.stream_sid, "IN");
    }

    #[test]
    fn strings_with_escapes_are_read_too() {
        let mark =
            Inbound::parse(r#"{"event":"mark","stream_sid":"S\u0031","mark":{"name":"a\"b"}}"#);
        assert_eq!(
            mark,
            Ok(Inbound::Mark {
                name: "a\"b".into()
            })
        );
        let Ok(Inbound::Media { payload, .. }) =
            Inbound::parse(r#"{"event":"media","media":{"payload":"AA\u003d\u003d"}}"#)
        else {
            panic!()
        };
        assert!(matches!(payload, Cow::Owned(_)));
        assert_eq!(payload, "AA==");
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        assert!(matches!(
            Inbound::parse("not json"),
            Err(DecodeError::NotJson(_))
        ));
        assert!(matches!(
            Inbound::parse(r#"{"event":"dance"}"#),
            Err(DecodeError::UnknownEvent(_))
        ));
        assert!(matches!(
            Inbound::parse(r#"{"event":"media"}"#),
            Err(DecodeError::Missing("media"))
        ));
        assert!(matches!(
            Inbound::parse(r#"{"event":"dtmf","dtmf":{"digit":"55"}}"#),
            Err(DecodeError::BadField(..))
        ));
        assert!(matches!(
            Inbound::parse(r#"{"event":"start","start":{"media_format":{"sample_rate":11025}}}"#),
            Err(DecodeError::BadField(..))
        ));
        assert!(matches!(
            Inbound::parse(r#"{"event":"start","start":{"media_format":{"encoding":"mulaw"}}}"#),
            Err(DecodeError::BadField(..))
        ));
        assert!(matches!(
            Inbound::parse(r#"{"no_event":1}"#),
            Err(DecodeError::NotJson(_))
        ));
        let outbound =
            Inbound::parse(r#"{"event":"media","media":{"payload":"","track":"outbound"}}"#)
                .unwrap();
        assert!(matches!(
            outbound,
            Inbound::Media {
                inbound_track: false,
                ..
            }
        ));
    }

    #[test]
    fn encodes_what_exotel_expects() {
        let e = Encoder::new("S\"1");
        let mut out = BytesMut::new();
        e.media(&mut out, &[1, 2, 3]);
        assert_eq!(
            &out[..],
            br#"{"event":"media","stream_sid":"S\"1","media":{"payload":"AQID"}}"#
        );
        out.clear();
        e.mark(&mut out, "greet\"ing");
        assert_eq!(
            &out[..],
            br#"{"event":"mark","stream_sid":"S\"1","mark":{"name":"greet\"ing"}}"#
        );
        out.clear();
        e.clear(&mut out);
        assert_eq!(&out[..], br#"{"event":"clear","stream_sid":"S\"1"}"#);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_sid"], "S\"1");
    }

    #[test]
    fn payloads_decode_into_the_callers_buffer() {
        let mut pcm = Vec::with_capacity(16);
        decode_payload("AQID", &mut pcm).unwrap();
        assert_eq!(pcm, [1, 2, 3]);
        assert!(decode_payload("!!!!", &mut pcm).is_err());
    }
}
