//! Exotel's stream protocol (see `docs/exotel.md`) as plain types: the events Exotel sends,
//! decoded without allocating (strings borrow from the frame), and the events we send, encoded
//! straight into a buffer the session owns.
//!
//! Owns field names and their tolerated variants. Reading is lenient where Exotel may vary: a
//! field in an unexpected shape (an id as a number, a sequence number as an object, custom
//! parameters as a query string) is set aside and named in [`Oddities`], never the reason a
//! frame is dropped; base64 is read with or without padding, across whitespace and in either
//! alphabet. Only what a frame cannot be used without (its `event` name, a media `payload`) is
//! strict. Must not know about sockets, bots or pacing.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;

pub(crate) mod audio64;

mod encode;
pub use encode::*;

mod payload;
pub use payload::*;

pub(crate) mod scan;

/// Optional fields that arrived in a shape we do not read, as bits: the frame was used without
/// them. A session names each one in its log once per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Oddities(pub u16);

impl Oddities {
    pub const STREAM_SID: Oddities = Oddities(1);
    pub const CALL_SID: Oddities = Oddities(1 << 1);
    pub const ACCOUNT_SID: Oddities = Oddities(1 << 2);
    pub const FROM_TO: Oddities = Oddities(1 << 3);
    pub const CUSTOM_PARAMETERS: Oddities = Oddities(1 << 4);
    pub const SAMPLE_RATE: Oddities = Oddities(1 << 5);
    pub const ENCODING: Oddities = Oddities(1 << 6);
    pub const CHUNK: Oddities = Oddities(1 << 7);
    pub const TIMESTAMP: Oddities = Oddities(1 << 8);
    pub const TRACK: Oddities = Oddities(1 << 9);
    pub const DTMF_DURATION: Oddities = Oddities(1 << 10);
    pub const STOP_REASON: Oddities = Oddities(1 << 11);
    pub const MEDIA_FORMAT: Oddities = Oddities(1 << 12);
    /// The payload needed the lenient base64 reader (no padding, whitespace, URL-safe).
    pub const BASE64_VARIANT: Oddities = Oddities(1 << 13);
    /// The payload's length was odd: its last byte waits for the next frame.
    pub const ODD_LENGTH: Oddities = Oddities(1 << 14);

    const NAMES: [&'static str; 15] = [
        "stream_sid",
        "start.call_sid",
        "start.account_sid",
        "start.from/to",
        "start.custom_parameters",
        "media_format.sample_rate",
        "media_format.encoding",
        "media.chunk",
        "media.timestamp",
        "media.track",
        "dtmf.duration",
        "stop.reason",
        "start.media_format",
        "media.payload (base64 variant)",
        "media.payload (odd length)",
    ];

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn add(&mut self, other: Oddities) {
        self.0 |= other.0;
    }

    /// The bits of `self` not in `seen`.
    pub fn new_since(self, seen: Oddities) -> Oddities {
        Oddities(self.0 & !seen.0)
    }

    /// The field names, comma-separated (for a log line).
    pub fn names(self) -> String {
        Oddities::NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A field read leniently: absent (or `null`), in a shape we do not read, or a value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Loose<T> {
    #[default]
    Absent,
    Odd,
    Value(T),
}

impl<T> Loose<T> {
    /// The value, noting `flag` in `odd` when the field was there in another shape.
    fn take(self, odd: &mut Oddities, flag: Oddities) -> Option<T> {
        match self {
            Loose::Absent => None,
            Loose::Odd => {
                odd.add(flag);
                None
            }
            Loose::Value(v) => Some(v),
        }
    }
}

/// Drains a sequence or map the visitor did not expect, so that the frame reads on.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// The arms every `Loose` visitor shares: `null` is absent, and an array or object (drained,
/// so that the frame reads on) is odd; `expecting` names what is accepted.
macro_rules! absent_or_odd {
    ($($shape:ident),*) => {
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Loose::Absent)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Loose::Absent)
        }
        $(absent_or_odd!(@$shape);)*
    };
    (@seq) => {
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            drain_seq(seq).map(|_| Loose::Odd)
        }
    };
    (@map) => {
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            drain_map(map).map(|_| Loose::Odd)
        }
    };
}

/// Text: a string (borrowed when it has no JSON escapes), or a number or boolean as its JSON
/// text (ids sent as numbers); `null` is absent; an object or array is odd.
impl<'de: 'a, 'a> Deserialize<'de> for Loose<Cow<'a, str>> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Loose<Cow<'de, str>>;
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Loose::Value(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Loose::Value(Cow::Owned(v.to_owned())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Loose::Value(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Loose::Value(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Loose::Value(Cow::Owned(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Loose::Value(Cow::Owned(v.to_string())))
            }
            absent_or_odd!(seq, map);
        }
        d.deserialize_any(V)
    }
}

/// A whole number, as a JSON number or a string holding one (`"sequence_number": "2"`);
/// anything else (`"128kbps"`, a fraction, an object) is odd.
impl<'de> Deserialize<'de> for Loose<u64> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Loose<u64>;
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Loose::Value(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(u64::try_from(v).map_or(Loose::Odd, Loose::Value))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                let whole = v >= 0.0 && v.fract() == 0.0 && v < u64::MAX as f64;
                Ok(if whole {
                    Loose::Value(v as u64)
                } else {
                    Loose::Odd
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(v.trim().parse().map_or(Loose::Odd, Loose::Value))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Loose::Odd)
            }
            absent_or_odd!(seq, map);
        }
        d.deserialize_any(V)
    }
}

/// A string from the frame that the frame cannot be used without (`event`, `payload`):
/// borrowed when it has no JSON escapes, owned otherwise. serde borrows a bare `Cow<str>` field
/// but not one inside `Option`, which would copy every payload of every media frame.
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

/// An object the event needs (`media`, `dtmf`, …): the object, or `Odd` for any other shape, so
/// that the frame still reads and the event reports what it lacks.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Loose<Obj<T>> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Loose<Obj<T>>;
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|t| Loose::Value(Obj(t)))
            }
            absent_or_odd!(seq);
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Loose::Odd)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Loose::Odd)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Loose::Odd)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Loose::Odd)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Loose::Odd)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A nested object of the frame (see `Loose<Obj<T>>`).
#[derive(Debug, Default)]
struct Obj<T>(T);

/// The frame as Exotel writes it: every event's fields, all optional, so one parse reads any
/// event. Unknown fields (`sequence_number`, `protocol`, …) are skipped whatever their shape.
/// `start` arrives once per call and is read as a JSON value, by hand (see [`start_event`]).
#[derive(Deserialize, Debug, Default)]
struct RawEvent<'a> {
    #[serde(borrow)]
    event: Text<'a>,
    #[serde(default, borrow, alias = "streamSid")]
    stream_sid: Loose<Cow<'a, str>>,
    #[serde(default)]
    start: Option<serde_json::Value>,
    #[serde(default, borrow)]
    media: Loose<Obj<RawMedia<'a>>>,
    #[serde(default, borrow)]
    dtmf: Loose<Obj<RawDtmf<'a>>>,
    #[serde(default, borrow)]
    mark: Loose<Obj<RawMark<'a>>>,
    #[serde(default, borrow)]
    stop: Loose<Obj<RawStop<'a>>>,
    #[serde(default, borrow)]
    handoff: Loose<Obj<RawHandoff<'a>>>,
    #[serde(default, borrow)]
    transcript: Loose<Obj<RawTranscript<'a>>>,
}

/// `transcript` of our extension event (see `BotCommand::Transcript`).
#[derive(Deserialize, Debug, Default)]
struct RawTranscript<'a> {
    #[serde(default, borrow)]
    role: Loose<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Loose<Cow<'a, str>>,
}

/// `handoff` of our extension event (see `BotCommand::Handoff`).
#[derive(Deserialize, Debug, Default)]
struct RawHandoff<'a> {
    #[serde(default, borrow)]
    reason: Loose<Cow<'a, str>>,
}

#[derive(Deserialize, Debug, Default)]
struct RawMedia<'a> {
    #[serde(default)]
    chunk: Loose<u64>,
    #[serde(default)]
    timestamp: Loose<u64>,
    #[serde(default, borrow)]
    payload: Option<Text<'a>>,
    #[serde(default, borrow)]
    track: Loose<Cow<'a, str>>,
}

#[derive(Deserialize, Debug, Default)]
struct RawDtmf<'a> {
    #[serde(default, borrow)]
    digit: Loose<Cow<'a, str>>,
    #[serde(default)]
    duration: Loose<u64>,
}

#[derive(Deserialize, Debug, Default)]
struct RawMark<'a> {
    #[serde(default, borrow)]
    name: Loose<Cow<'a, str>>,
}

#[derive(Deserialize, Debug, Default)]
struct RawStop<'a> {
    #[serde(default, borrow)]
    reason: Loose<Cow<'a, str>>,
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

/// One frame read: its event, the top-level `stream_sid` when it had one, and the optional
/// fields that were set aside.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub event: Inbound<'a>,
    pub stream_sid: Option<Cow<'a, str>>,
    pub odd: Oddities,
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
            DecodeError::Missing(what) => write!(f, "event without its {what:?}"),
            DecodeError::BadField(field, why) => write!(f, "{field}: {why}"),
        }
    }
}

/// A text frame larger than this closes the socket with 1009 (docs/ARCHITECTURE.md §5), ours and a
/// relayed bot's alike.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// Sample rates Exotel streams at.
pub const SAMPLE_RATES: [u32; 3] = [8000, 16000, 24000];

/// Encodings that name the 16-bit PCM Exotel streams (base64, linear16 and raw/slin have all
/// been seen for the same audio).
const PCM_ENCODINGS: [&str; 6] = [
    "base64",
    "linear16",
    "raw/slin",
    "slin",
    "pcm",
    "audio/x-l16",
];

impl<'a> Inbound<'a> {
    /// Decodes one text frame, its event only (see [`Frame::read`]).
    pub fn parse(text: &'a str) -> Result<Inbound<'a>, DecodeError> {
        Frame::read(text, 8000).map(|f| f.event)
    }
}

impl<'a> Frame<'a> {
    /// Decodes one text frame. Allocates nothing for `media`, `dtmf`, `mark` and `stop` unless a
    /// string holds JSON escapes or a number stands where text was expected. `default_rate` is
    /// the sample rate a `start` without a usable one is taken to have (the rate the media URL
    /// asked for).
    pub fn read(text: &'a str, default_rate: u32) -> Result<Frame<'a>, DecodeError> {
        let raw: RawEvent<'a> =
            serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
        Frame::from_raw(raw, default_rate)
    }

    /// [`Frame::read`], with a `media` frame in Exotel's shape read by a direct scan
    /// ([`scan::media_frame`]) rather than serde: the same frame either way, and what the scan
    /// declines goes to serde.
    pub fn read_scanned(text: &'a str, default_rate: u32) -> Result<Frame<'a>, DecodeError> {
        match scan::media_frame(text) {
            Some(frame) => Ok(frame),
            None => Frame::read(text, default_rate),
        }
    }

    /// The event, from the fields serde read.
    fn from_raw(raw: RawEvent<'a>, default_rate: u32) -> Result<Frame<'a>, DecodeError> {
        let mut odd = Oddities::default();
        let stream_sid = raw.stream_sid.take(&mut odd, Oddities::STREAM_SID);
        let event = match raw.event.0.as_ref() {
            "connected" => Inbound::Connected,
            "start" => {
                let start = raw.start.ok_or(DecodeError::Missing("start"))?;
                let mut s = start_event(start, default_rate, &mut odd)?;
                if let Some(sid) = &stream_sid {
                    s.stream_sid = sid.as_ref().to_owned();
                }
                Inbound::Start(Box::new(s))
            }
            "media" => {
                let m = object(raw.media, "media")?;
                Inbound::Media {
                    payload: m.payload.ok_or(DecodeError::Missing("media.payload"))?.0,
                    timestamp: m.timestamp.take(&mut odd, Oddities::TIMESTAMP),
                    chunk: m.chunk.take(&mut odd, Oddities::CHUNK),
                    inbound_track: m.track.take(&mut odd, Oddities::TRACK).as_deref()
                        != Some("outbound"),
                }
            }
            "dtmf" => {
                let d = object(raw.dtmf, "dtmf")?;
                let digit = d.digit.take(&mut odd, Oddities::default());
                let duration_ms = d.duration.take(&mut odd, Oddities::DTMF_DURATION);
                let text = digit.as_deref().unwrap_or("").trim();
                let mut chars = text.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if c.is_ascii_digit() || "*#ABCD".contains(c) => {
                        Inbound::Dtmf {
                            digit: c,
                            duration_ms,
                        }
                    }
                    _ => {
                        return Err(DecodeError::BadField(
                            "dtmf.digit",
                            format!("{text:?} is not one key"),
                        ))
                    }
                }
            }
            "mark" => Inbound::Mark {
                name: object(raw.mark, "mark")?
                    .name
                    .take(&mut odd, Oddities::default())
                    .ok_or(DecodeError::Missing("mark.name"))?,
            },
            "stop" => Inbound::Stop {
                reason: match raw.stop {
                    Loose::Value(Obj(s)) => s.reason.take(&mut odd, Oddities::STOP_REASON),
                    Loose::Odd => {
                        odd.add(Oddities::STOP_REASON);
                        None
                    }
                    Loose::Absent => None,
                }
                .unwrap_or(Cow::Borrowed("unspecified")),
            },
            other => return Err(DecodeError::UnknownEvent(other.chars().take(40).collect())),
        };
        Ok(Frame {
            event,
            stream_sid,
            odd,
        })
    }
}

/// The object an event is named for, or what it lacks.
fn object<T>(field: Loose<Obj<T>>, name: &'static str) -> Result<T, DecodeError> {
    match field {
        Loose::Value(Obj(t)) => Ok(t),
        Loose::Absent => Err(DecodeError::Missing(name)),
        Loose::Odd => Err(DecodeError::BadField(name, "not an object".into())),
    }
}

/// `start`, read by hand from its JSON value: every field optional, any shape tolerated. A
/// `start` that is a string holding a JSON object is read as that object.
fn start_event(
    start: serde_json::Value,
    default_rate: u32,
    odd: &mut Oddities,
) -> Result<StartEvent, DecodeError> {
    use serde_json::Value;
    let start = match start {
        Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::Null),
        other => other,
    };
    let Value::Object(s) = start else {
        return Err(DecodeError::BadField("start", "not an object".into()));
    };
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| s.get(*n))
            .filter(|v| !v.is_null())
    };
    let mut text = |names: &[&str], flag: Oddities| match field(names) {
        None => String::new(),
        Some(v) => scalar_text(v).unwrap_or_else(|| {
            odd.add(flag);
            String::new()
        }),
    };
    let stream_sid = text(&["stream_sid", "streamSid"], Oddities::STREAM_SID);
    let call_sid = text(&["call_sid", "callSid", "CallSid"], Oddities::CALL_SID);
    let account_sid = text(&["account_sid", "accountSid"], Oddities::ACCOUNT_SID);
    let from = text(&["from", "From"], Oddities::FROM_TO);
    let to = text(&["to", "To"], Oddities::FROM_TO);
    let custom_parameters = match field(&["custom_parameters", "customParameters"]) {
        None => BTreeMap::new(),
        Some(v) => custom_parameters(v).unwrap_or_else(|| {
            odd.add(Oddities::CUSTOM_PARAMETERS);
            BTreeMap::new()
        }),
    };
    let mut sample_rate = default_rate;
    match field(&["media_format", "mediaFormat"]) {
        None => {}
        Some(Value::Object(format)) => {
            let get = |names: &[&str]| names.iter().find_map(|n| format.get(*n));
            if let Some(rate) = get(&["sample_rate", "sampleRate"]).filter(|v| !v.is_null()) {
                let rate = scalar_text(rate).and_then(|t| t.trim().parse::<u32>().ok());
                match rate.filter(|r| SAMPLE_RATES.contains(r)) {
                    Some(r) => sample_rate = r,
                    None => odd.add(Oddities::SAMPLE_RATE),
                }
            }
            if let Some(enc) = get(&["encoding"]).filter(|v| !v.is_null()) {
                let known = scalar_text(enc)
                    .is_some_and(|e| PCM_ENCODINGS.iter().any(|k| e.eq_ignore_ascii_case(k)));
                if !known {
                    // Read as 16-bit PCM all the same: a call with odd audio can be heard and
                    // hung up on; a dropped `start` is silence.
                    odd.add(Oddities::ENCODING);
                }
            }
        }
        Some(_) => odd.add(Oddities::MEDIA_FORMAT),
    }
    Ok(StartEvent {
        stream_sid,
        call_sid,
        account_sid,
        from,
        to,
        custom_parameters,
        sample_rate,
    })
}

/// A string, number or boolean as text; `None` for objects and arrays.
fn scalar_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `custom_parameters` as an object, a JSON string holding one, or a query string
/// (`a=1&b=2`); values as text.
fn custom_parameters(v: &serde_json::Value) -> Option<BTreeMap<String, String>> {
    let as_text = |(k, v): (&String, &serde_json::Value)| {
        let text = scalar_text(v).unwrap_or_else(|| v.to_string());
        (k.clone(), text)
    };
    match v {
        serde_json::Value::Object(map) => Some(map.iter().map(as_text).collect()),
        serde_json::Value::String(s) => {
            let s = s.trim();
            if s.starts_with('{') {
                let parsed: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(s).ok()?;
                Some(parsed.iter().map(as_text).collect())
            } else {
                Some(
                    crate::http::form::parse(s.trim_start_matches('?'))
                        .into_iter()
                        .collect(),
                )
            }
        }
        _ => None,
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
    /// Our extension: the bot hands the caller to a person (`{"event": "handoff", "handoff":
    /// {"reason": "…"}}`); never forwarded to Exotel.
    Handoff {
        reason: Cow<'a, str>,
    },
    /// Our extension: words of the call for its transcript (`{"event": "transcript",
    /// "transcript": {"role": "bot" | "caller", "text": "…"}}`); never forwarded to Exotel.
    Transcript {
        role: Cow<'a, str>,
        text: Cow<'a, str>,
    },
}

impl<'a> BotCommand<'a> {
    /// Decodes one text frame from a bot. Allocates nothing unless a string holds JSON escapes.
    pub fn parse(text: &'a str) -> Result<BotCommand<'a>, DecodeError> {
        let raw: RawEvent<'a> =
            serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
        match raw.event.0.as_ref() {
            "media" => Ok(BotCommand::Media {
                payload: object(raw.media, "media")?
                    .payload
                    .ok_or(DecodeError::Missing("media.payload"))?
                    .0,
            }),
            "mark" => Ok(BotCommand::Mark {
                name: match object(raw.mark, "mark")?.name {
                    Loose::Value(name) => name,
                    _ => return Err(DecodeError::Missing("mark.name")),
                },
            }),
            "clear" => Ok(BotCommand::Clear),
            "handoff" => Ok(BotCommand::Handoff {
                reason: match raw.handoff {
                    Loose::Value(Obj(h)) => match h.reason {
                        Loose::Value(reason) => reason,
                        _ => Cow::Borrowed("bot"),
                    },
                    _ => Cow::Borrowed("bot"),
                },
            }),
            "transcript" => {
                let turn = object(raw.transcript, "transcript")?;
                match (turn.role, turn.text) {
                    (Loose::Value(role), Loose::Value(text)) => {
                        Ok(BotCommand::Transcript { role, text })
                    }
                    (Loose::Value(_), _) => Err(DecodeError::Missing("transcript.text")),
                    _ => Err(DecodeError::Missing("transcript.role")),
                }
            }
            other => Err(DecodeError::UnknownEvent(other.chars().take(40).collect())),
        }
    }
}

#[cfg(test)]
mod tests;
