//! Twilio Media Streams for a relayed bot written for Twilio (`BOT_PROTOCOL=twilio`): many bot
//! frameworks and samples speak it rather than Exotel's format. The relay sends the bot
//! Twilio's `connected` and `start`, then the caller's audio as Twilio's `media` frames (8 kHz
//! μ-law, 20 ms each, with `track`, `chunk` and `timestamp`), and `dtmf`, `mark` and `stop`;
//! the bot's `media` (μ-law), `mark` and `clear` come back as the call's. 16 and 24 kHz calls
//! are resampled to and from 8 kHz. docs/exotel.md says what each field carries.
//!
//! A pure layer: text in, text or outbox out; the relay owns the socket.

use crate::bot::Outbox;
use crate::exotel::stream::{decode_payload, Inbound, StartEvent};
use crate::media::g711;
use crate::media::resample::Resampler;
use base64::Engine as _;
use serde_json::json;

/// Twilio's rate and frame: 8 kHz, 20 ms (160 μ-law bytes).
const RATE: u32 = 8000;
const FRAME_BYTES: usize = 160;

/// One call's side of the translation.
pub struct TwilioSide {
    stream_sid: String,
    call_sid: String,
    account_sid: String,
    /// The `sequenceNumber` of the next message to the bot.
    sequence: u64,
    /// The `chunk` of the next media frame (from 1) and its `timestamp` in milliseconds.
    chunk: u64,
    timestamp_ms: u64,
    /// The call's rate to 8 kHz and back, when it is not 8 kHz.
    to_bot: Option<Resampler>,
    from_bot: Option<Resampler>,
    /// μ-law bytes of the caller not yet a whole frame.
    pending: Vec<u8>,
    pcm: Vec<u8>,
    samples: Vec<i16>,
    narrow: Vec<i16>,
}

impl TwilioSide {
    /// The side for a call whose stream `start` is this.
    pub fn new(start: &StartEvent) -> TwilioSide {
        let rate = start.sample_rate;
        let resampler = |from, to| (from != to).then(|| Resampler::new(from, to));
        TwilioSide {
            stream_sid: start.stream_sid.clone(),
            call_sid: start.call_sid.clone(),
            account_sid: start.account_sid.clone(),
            sequence: 1,
            chunk: 1,
            timestamp_ms: 0,
            to_bot: resampler(rate, RATE),
            from_bot: resampler(RATE, rate),
            pending: Vec::with_capacity(2 * FRAME_BYTES),
            pcm: Vec::new(),
            samples: Vec::new(),
            narrow: Vec::new(),
        }
    }

    fn next_sequence(&mut self) -> String {
        let n = self.sequence;
        self.sequence += 1;
        n.to_string()
    }

    /// Twilio's `connected`, the first message.
    pub fn connected(&mut self) -> String {
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}).to_string()
    }

    /// Twilio's `start`, with the call's custom parameters (the URL's and the contact's).
    pub fn start(&mut self, start: &StartEvent) -> String {
        json!({
            "event": "start",
            "sequenceNumber": self.next_sequence(),
            "start": {
                "accountSid": self.account_sid,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "customParameters": start.custom_parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1},
            },
            "streamSid": self.stream_sid,
        })
        .to_string()
    }

    /// One of Exotel's frames as what the bot gets: none (audio short of a frame, events
    /// Twilio has no word for), one, or several media frames.
    pub fn from_exotel(&mut self, text: &str, out: &mut Vec<String>) -> Result<(), String> {
        match Inbound::parse(text).map_err(|e| e.to_string())? {
            Inbound::Media {
                payload,
                inbound_track: true,
                ..
            } => self.caller_audio(&payload, out)?,
            Inbound::Dtmf { digit, .. } => {
                let seq = self.next_sequence();
                out.push(
                    json!({
                        "event": "dtmf",
                        "sequenceNumber": seq,
                        "streamSid": self.stream_sid,
                        "dtmf": {"track": "inbound_track", "digit": digit.to_string()},
                    })
                    .to_string(),
                );
            }
            Inbound::Mark { name } => {
                let seq = self.next_sequence();
                out.push(
                    json!({
                        "event": "mark",
                        "sequenceNumber": seq,
                        "streamSid": self.stream_sid,
                        "mark": {"name": name},
                    })
                    .to_string(),
                );
            }
            Inbound::Stop { .. } => {
                let seq = self.next_sequence();
                out.push(
                    json!({
                        "event": "stop",
                        "sequenceNumber": seq,
                        "streamSid": self.stream_sid,
                        "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                    })
                    .to_string(),
                );
            }
            _ => {}
        }
        Ok(())
    }

    /// The caller's audio as 20 ms μ-law frames; a part frame waits for the next.
    fn caller_audio(&mut self, payload: &str, out: &mut Vec<String>) -> Result<(), String> {
        decode_payload(payload, &mut self.pcm).map_err(|e| format!("{e:?}"))?;
        self.samples.clear();
        self.samples.extend(
            self.pcm
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]])),
        );
        let narrow = match &mut self.to_bot {
            Some(r) => {
                self.narrow.clear();
                r.process(&self.samples, &mut self.narrow);
                &self.narrow
            }
            None => &self.samples,
        };
        g711::encode(narrow, &mut self.pending);
        let b64 = base64::engine::general_purpose::STANDARD;
        let whole = self.pending.len() / FRAME_BYTES * FRAME_BYTES;
        for frame in self.pending[..whole].chunks(FRAME_BYTES) {
            let seq = self.sequence;
            self.sequence += 1;
            out.push(
                json!({
                    "event": "media",
                    "sequenceNumber": seq.to_string(),
                    "media": {
                        "track": "inbound",
                        "chunk": self.chunk.to_string(),
                        "timestamp": self.timestamp_ms.to_string(),
                        "payload": b64.encode(frame),
                    },
                    "streamSid": self.stream_sid,
                })
                .to_string(),
            );
            self.chunk += 1;
            self.timestamp_ms += 20;
        }
        self.pending.drain(..whole);
        Ok(())
    }

    /// One of the bot's Twilio messages into the call's outbox: `media` (μ-law) played,
    /// `mark` and `clear` as the call's own. Anything else is named as an error.
    /// Audio beyond `MAX_QUEUED_BOT_SECONDS` waiting is dropped and counted by the outbox.
    pub fn to_outbox(&mut self, text: &str, out: &mut Outbox) -> Result<(), String> {
        let message: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not a JSON message: {e}"))?;
        match message["event"].as_str() {
            Some("media") => {
                let payload = message["media"]["payload"]
                    .as_str()
                    .ok_or("media without media.payload")?;
                let law = base64::engine::general_purpose::STANDARD
                    .decode(payload)
                    .map_err(|e| format!("media.payload is not base64: {e}"))?;
                self.samples.clear();
                g711::decode(&law, &mut self.samples);
                let played = match &mut self.from_bot {
                    Some(r) => {
                        self.narrow.clear();
                        r.process(&self.samples, &mut self.narrow);
                        &self.narrow
                    }
                    None => &self.samples,
                };
                out.play_within(played);
                Ok(())
            }
            Some("mark") => {
                let name = message["mark"]["name"]
                    .as_str()
                    .ok_or("mark without mark.name")?;
                out.mark(name);
                Ok(())
            }
            Some("clear") => {
                out.clear();
                Ok(())
            }
            Some(other) => Err(format!("unknown Twilio event {other:?}")),
            None => Err("a message without event".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::bot::test_start as start;

    fn exotel_media(samples: &[i16]) -> String {
        let pcm: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(pcm);
        json!({"event": "media", "stream_sid": "S1", "media": {"payload": b64}}).to_string()
    }

    #[test]
    fn the_bot_gets_twilios_start_then_20_ms_mulaw_frames_numbered_in_order() {
        let s = start(16000);
        let mut side = TwilioSide::new(&s);
        let connected: serde_json::Value = serde_json::from_str(&side.connected()).unwrap();
        assert_eq!(connected["protocol"], "Call");
        let started: serde_json::Value = serde_json::from_str(&side.start(&s)).unwrap();
        assert_eq!(started["start"]["mediaFormat"]["encoding"], "audio/x-mulaw");
        assert_eq!(started["start"]["mediaFormat"]["sampleRate"], 8000);
        assert_eq!(started["start"]["customParameters"]["name"], "Asha");
        assert_eq!(started["sequenceNumber"], "1");
        // 100 ms at 16 kHz, in two uneven pieces: five whole 20 ms frames in all.
        let audio: Vec<i16> = (0..1600).map(|i| ((i * 37) % 2000) as i16).collect();
        let mut out = Vec::new();
        side.from_exotel(&exotel_media(&audio[..700]), &mut out)
            .unwrap();
        side.from_exotel(&exotel_media(&audio[700..]), &mut out)
            .unwrap();
        // The resampler's delay holds back part of a frame until more comes.
        assert!((4..=5).contains(&out.len()), "{} frames", out.len());
        for (i, frame) in out.iter().enumerate() {
            let f: serde_json::Value = serde_json::from_str(frame).unwrap();
            assert_eq!(f["event"], "media");
            assert_eq!(f["sequenceNumber"], (i + 2).to_string());
            assert_eq!(f["media"]["chunk"], (i + 1).to_string());
            assert_eq!(f["media"]["timestamp"], (i * 20).to_string());
            assert_eq!(f["media"]["track"], "inbound");
            let law = base64::engine::general_purpose::STANDARD
                .decode(f["media"]["payload"].as_str().unwrap())
                .unwrap();
            assert_eq!(law.len(), FRAME_BYTES);
        }
        // A key, an echoed mark and the stop in Twilio's words.
        let mut out = Vec::new();
        for text in [
            r#"{"event":"dtmf","stream_sid":"S1","dtmf":{"digit":"5"}}"#,
            r#"{"event":"mark","stream_sid":"S1","mark":{"name":"m1"}}"#,
            r#"{"event":"stop","stream_sid":"S1","stop":{"reason":"callended"}}"#,
        ] {
            side.from_exotel(text, &mut out).unwrap();
        }
        let events: Vec<serde_json::Value> = out
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect();
        assert_eq!(events[0]["dtmf"]["digit"], "5");
        assert_eq!(events[1]["mark"]["name"], "m1");
        assert_eq!(events[2]["stop"]["callSid"], "C1");
    }

    #[test]
    fn the_bots_mulaw_is_played_at_the_calls_rate_with_its_marks_and_clears() {
        for rate in [8000, 24000] {
            let mut side = TwilioSide::new(&start(rate));
            let mut out = Outbox::new(rate, 0);
            let mut law = Vec::new();
            g711::encode(&[1000i16; 160], &mut law);
            let b64 = base64::engine::general_purpose::STANDARD.encode(&law);
            let media = json!({"event": "media", "streamSid": "S1", "media": {"payload": b64}});
            side.to_outbox(&media.to_string(), &mut out).unwrap();
            let expected = 160 * rate as usize / 8000;
            assert!(
                out.queued_samples().abs_diff(expected) <= 48 * 3,
                "{rate}: {}",
                out.queued_samples()
            );
            side.to_outbox(
                r#"{"event":"mark","streamSid":"S1","mark":{"name":"m"}}"#,
                &mut out,
            )
            .unwrap();
            side.to_outbox(r#"{"event":"clear","streamSid":"S1"}"#, &mut out)
                .unwrap();
            assert_eq!(out.queued_samples(), 0, "the clear dropped what was queued");
            assert!(side.to_outbox(r#"{"event":"dance"}"#, &mut out).is_err());
            assert!(side.to_outbox("not json", &mut out).is_err());
        }
    }
}
