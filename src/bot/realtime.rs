//! A call bridged to a speech-to-speech AI service that speaks OpenAI's Realtime protocol
//! (`BOT=realtime`; docs/realtime.md says what this server sends and reads). The relay dials
//! the service as it dials any bot; this layer translates: the caller's audio becomes
//! `input_audio_buffer.append`, a key press a conversation item, and the service's audio deltas,
//! transcripts, interruptions and tool calls become the call's audio, transcript, `clear`,
//! hang-up or handoff.
//!
//! Audio: an 8 kHz call speaks G.711 μ-law with the service (`audio/pcmu`), with no
//! resampling; a 16 or 24 kHz call speaks 16-bit PCM at 24 kHz (`audio/pcm`), resampled.
//!
//! A pure layer: text in, text and outbox out; the relay owns the socket.

use crate::bot::{Outbox, Speaker};
use crate::config::RealtimeSettings;
use crate::exotel::stream::{decode_payload, Inbound, StartEvent};
use crate::media::g711;
use crate::media::resample::Resampler;
use base64::Engine as _;
use serde_json::{json, Value};

/// The service's rate for 16-bit PCM.
const PCM_RATE: u32 = 24_000;

/// The tools every realtime call offers the model.
fn tools() -> Value {
    json!([
        {
            "type": "function",
            "name": "end_call",
            "description": "End the call once you have said goodbye.",
            "parameters": {"type": "object", "properties": {
                "reason": {"type": "string", "description": "why the call ends"}
            }},
        },
        {
            "type": "function",
            "name": "transfer_to_human",
            "description": "Hand the caller to a person, after telling them you will.",
            "parameters": {"type": "object", "properties": {
                "reason": {"type": "string", "description": "why they need a person"}
            }},
        },
    ])
}

/// `text` with anything shaped like an API key (a word starting `sk-`) masked: a service's
/// message about a wrong key may quote it, and the message goes to the row and the log.
fn without_keys(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.contains("sk-") {
                "sk-****"
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A format as `session.updated` names it: `Ok(true)` for 16-bit PCM at 24 kHz, `Ok(false)`
/// for μ-law, the name of any other; `None` when it names none.
fn format_of(ga: &Value, beta: &Value) -> Option<Result<bool, String>> {
    let name = ga["type"].as_str().or(beta.as_str())?;
    let rate = ga["rate"].as_u64().unwrap_or(u64::from(PCM_RATE));
    Some(match name {
        "audio/pcmu" | "g711_ulaw" => Ok(false),
        "audio/pcm" | "pcm16" if rate == u64::from(PCM_RATE) => Ok(true),
        "audio/pcm" => Err(format!("audio/pcm at {rate} Hz")),
        other => Err(other.to_owned()),
    })
}

/// How the service is asked to find the end of the caller's turn.
fn turn_detection(kind: crate::config::TurnDetection) -> Value {
    match kind.eagerness() {
        None => json!({"type": kind.name()}),
        Some(eagerness) => json!({"type": kind.name(), "eagerness": eagerness}),
    }
}

/// One call's side of the bridge.
pub struct RealtimeSide {
    /// The call's rate; 8 kHz speaks μ-law with the service.
    rate: u32,
    to_service: Option<Resampler>,
    from_service: Option<Resampler>,
    /// The response item being played: its id and the samples of it queued for the caller.
    playing: Option<(String, u64)>,
    /// The item the caller last talked over: deltas of it still on their way when the
    /// service cancelled are dropped, not played after the `clear`.
    cut: Option<String>,
    pcm: Vec<u8>,
    samples: Vec<i16>,
    converted: Vec<i16>,
    bytes: Vec<u8>,
}

impl RealtimeSide {
    pub fn new(start: &StartEvent) -> RealtimeSide {
        let rate = start.sample_rate;
        let pcm = rate != 8000;
        RealtimeSide {
            rate,
            to_service: pcm.then(|| Resampler::new(rate, PCM_RATE)),
            from_service: pcm.then(|| Resampler::new(PCM_RATE, rate)),
            playing: None,
            cut: None,
            pcm: Vec::new(),
            samples: Vec::new(),
            converted: Vec::new(),
            bytes: Vec::new(),
        }
    }

    fn format(&self) -> Value {
        if self.rate == 8000 {
            json!({"type": "audio/pcmu"})
        } else {
            json!({"type": "audio/pcm", "rate": PCM_RATE})
        }
    }

    /// What the service is sent first: the session (instructions, audio formats, voice, turn
    /// detection, transcription, tools), and a first response when the model speaks first.
    /// `{{name}}` in the instructions and the greeting is filled from the call's parameters
    /// (its variables, a campaign contact's columns).
    /// A session opened again after a drop (`greet` false) does not greet a second time.
    pub fn first_messages(
        &self,
        settings: &RealtimeSettings,
        values: &std::collections::BTreeMap<String, String>,
        greet: bool,
    ) -> Vec<String> {
        let instructions = RealtimeSettings::fill(&settings.instructions, values);
        let mut first = vec![json!({
            "type": "session.update",
            "session": {
                "type": "realtime",
                "instructions": instructions,
                "audio": {
                    "input": {
                        "format": self.format(),
                        "turn_detection": turn_detection(settings.turn_detection),
                        "transcription": {"model": settings.transcription_model},
                    },
                    "output": {"format": self.format(), "voice": settings.voice},
                },
                "tools": tools(),
            },
        })
        .to_string()];
        if let Some(greeting) = settings.greeting.as_ref().filter(|_| greet) {
            let greeting = RealtimeSettings::fill(greeting, values);
            first.push(
                json!({
                    "type": "response.create",
                    "response": {"instructions": format!("Greet the caller by saying: {greeting}")},
                })
                .to_string(),
            );
        }
        first
    }

    /// One of Exotel's frames as what the service is sent: the caller's audio, or a key press
    /// as a conversation item the model answers.
    pub fn from_exotel(&mut self, text: &str, out: &mut Vec<String>) -> Result<(), String> {
        match Inbound::parse(text).map_err(|e| e.to_string())? {
            Inbound::Media {
                payload,
                inbound_track: true,
                ..
            } => {
                decode_payload(&payload, &mut self.pcm).map_err(|e| format!("{e:?}"))?;
                self.samples.clear();
                self.samples.extend(
                    self.pcm
                        .chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]])),
                );
                self.bytes.clear();
                match &mut self.to_service {
                    None => g711::encode(&self.samples, &mut self.bytes),
                    Some(r) => {
                        self.converted.clear();
                        r.process(&self.samples, &mut self.converted);
                        self.bytes
                            .extend(self.converted.iter().flat_map(|s| s.to_le_bytes()));
                    }
                }
                let audio = base64::engine::general_purpose::STANDARD.encode(&self.bytes);
                out.push(json!({"type": "input_audio_buffer.append", "audio": audio}).to_string());
            }
            Inbound::Dtmf { digit, .. } => {
                out.push(
                    json!({
                        "type": "conversation.item.create",
                        "item": {
                            "type": "message",
                            "role": "user",
                            "content": [{"type": "input_text", "text": format!("The caller pressed {digit}.")}],
                        },
                    })
                    .to_string(),
                );
                out.push(json!({"type": "response.create"}).to_string());
            }
            _ => {}
        }
        Ok(())
    }

    /// One of the service's events into the call: audio played, transcripts kept, a barge-in
    /// cleared and the interrupted item truncated to what was played, tool calls carried out
    /// and answered. `replies` gets what the service must be told back. An `error` event is
    /// returned as the error (a harmless one, a cancel with nothing to cancel, is not).
    /// Audio beyond `MAX_QUEUED_BOT_SECONDS` waiting is dropped and counted by the outbox.
    pub fn to_outbox(
        &mut self,
        text: &str,
        out: &mut Outbox,
        replies: &mut Vec<String>,
    ) -> Result<(), String> {
        let event: Value =
            serde_json::from_str(text).map_err(|e| format!("not a JSON event: {e}"))?;
        let str_of = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        match event["type"].as_str().unwrap_or_default() {
            "response.output_audio.delta" | "response.audio.delta" => {
                self.play(&str_of(&event["item_id"]), &str_of(&event["delta"]), out)?
            }
            "input_audio_buffer.speech_started" => self.barge_in(out, replies),
            "session.updated" => self.follow_formats(&event["session"], out),
            "response.output_audio_transcript.done" | "response.audio_transcript.done" => {
                out.transcript(Speaker::Bot, str_of(&event["transcript"]))
            }
            "conversation.item.input_audio_transcription.completed" => {
                out.transcript(Speaker::Caller, str_of(&event["transcript"]))
            }
            "response.function_call_arguments.done" => {
                self.call_tool(&event, out, replies);
            }
            "error" => {
                let code = str_of(&event["error"]["code"]);
                if code != "response_cancel_not_active" {
                    out.service_error(format!(
                        "the service's error {code}: {}",
                        without_keys(&str_of(&event["error"]["message"]))
                    ));
                }
            }
            "rate_limits.updated" => out.service_rate_limits(),
            _ => {}
        }
        Ok(())
    }

    /// The formats the service says it applied (`session.updated`, GA or beta names),
    /// followed where this side speaks them (μ-law on an 8 kHz call, 16-bit PCM at 24 kHz), so
    /// a service that chose otherwise than asked is still understood; any other is the call's
    /// error. A format not said leaves what was asked.
    fn follow_formats(&mut self, session: &Value, out: &mut Outbox) {
        let audio = &session["audio"];
        let said = [
            (
                "input",
                format_of(&audio["input"]["format"], &session["input_audio_format"]),
            ),
            (
                "output",
                format_of(&audio["output"]["format"], &session["output_audio_format"]),
            ),
        ];
        for (direction, format) in said {
            let followed = match format {
                None => continue,
                Some(Ok(pcm)) if pcm || self.rate == 8000 => Ok(pcm),
                Some(Ok(_)) => Err("audio/pcmu".to_owned()),
                Some(Err(name)) => Err(name),
            };
            let pcm = match followed {
                Ok(pcm) => pcm,
                Err(name) => {
                    out.service_error(format!(
                        "the service applied the {direction} format {name}, which a {} Hz call cannot speak",
                        self.rate
                    ));
                    continue;
                }
            };
            let (from, to) = match direction {
                "input" => (self.rate, PCM_RATE),
                _ => (PCM_RATE, self.rate),
            };
            let resampler = if direction == "input" {
                &mut self.to_service
            } else {
                &mut self.from_service
            };
            if pcm != resampler.is_some() {
                *resampler = pcm.then(|| Resampler::new(from, to));
            }
        }
    }

    /// An audio delta of `item`: decoded, brought to the call's rate, queued.
    fn play(&mut self, item: &str, delta: &str, out: &mut Outbox) -> Result<(), String> {
        if self.cut.as_deref() == Some(item) {
            return Ok(());
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(delta)
            .map_err(|e| format!("an audio delta that is not base64: {e}"))?;
        self.samples.clear();
        let played = match &mut self.from_service {
            None => {
                g711::decode(&bytes, &mut self.samples);
                &self.samples
            }
            Some(r) => {
                self.samples.extend(
                    bytes
                        .chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]])),
                );
                self.converted.clear();
                r.process(&self.samples, &mut self.converted);
                &self.converted
            }
        };
        if !out.play_within(played) {
            return Ok(());
        }
        match &mut self.playing {
            Some((id, queued)) if id == item => *queued += played.len() as u64,
            _ => self.playing = Some((item.to_owned(), played.len() as u64)),
        }
        Ok(())
    }

    /// The caller spoke over the bot: what is queued is dropped (and Exotel told to drop its
    /// own), the item is truncated to what left for the caller, the response cancelled.
    fn barge_in(&mut self, out: &mut Outbox, replies: &mut Vec<String>) {
        let Some((item, queued)) = self.playing.take() else {
            return;
        };
        let sent = queued.saturating_sub(out.queued_samples() as u64);
        out.clear();
        self.cut = Some(item.clone());
        replies.push(
            json!({
                "type": "conversation.item.truncate",
                "item_id": item,
                "content_index": 0,
                "audio_end_ms": sent * 1000 / u64::from(self.rate),
            })
            .to_string(),
        );
        replies.push(json!({"type": "response.cancel"}).to_string());
    }

    /// `end_call` and `transfer_to_human`, each answered with its output.
    fn call_tool(&mut self, event: &Value, out: &mut Outbox, replies: &mut Vec<String>) {
        let args: Value = event["arguments"]
            .as_str()
            .and_then(|a| serde_json::from_str(a).ok())
            .unwrap_or_default();
        let reason = args["reason"].as_str().unwrap_or_default();
        let output = match event["name"].as_str().unwrap_or_default() {
            "end_call" => {
                out.hang_up_after_audio();
                json!({"ok": true})
            }
            "transfer_to_human" => {
                out.hand_off(if reason.is_empty() { "bot" } else { reason });
                json!({"ok": true})
            }
            other => json!({"error": format!("no tool {other:?}")}),
        };
        replies.push(
            json!({
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": event["call_id"],
                    "output": output.to_string(),
                },
            })
            .to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::MAX_QUEUED_BOT_SECONDS;

    use crate::bot::test_start as start;

    fn settings(greeting: Option<&str>) -> RealtimeSettings {
        RealtimeSettings {
            instructions: "Be brief.".into(),
            voice: "marin".into(),
            greeting: greeting.map(str::to_owned),
            turn_detection: crate::config::TurnDetection::SemanticVad(
                crate::config::Eagerness::Low,
            ),
            transcription_model: "whisper-1".into(),
        }
    }

    #[test]
    fn the_session_asks_for_the_calls_own_format_and_offers_the_tools() {
        for (rate, format) in [
            (8000, json!({"type": "audio/pcmu"})),
            (16000, json!({"type": "audio/pcm", "rate": 24000})),
        ] {
            let side = RealtimeSide::new(&start(rate));
            let first = side.first_messages(&settings(Some("Hello")), &Default::default(), true);
            let session: Value = serde_json::from_str(&first[0]).unwrap();
            assert_eq!(session["type"], "session.update");
            assert_eq!(session["session"]["audio"]["input"]["format"], format);
            assert_eq!(session["session"]["audio"]["output"]["format"], format);
            assert_eq!(session["session"]["audio"]["output"]["voice"], "marin");
            assert_eq!(
                session["session"]["audio"]["input"]["turn_detection"],
                json!({"type": "semantic_vad", "eagerness": "low"})
            );
            assert_eq!(
                session["session"]["audio"]["input"]["transcription"]["model"],
                "whisper-1"
            );
            let names: Vec<&str> = session["session"]["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap())
                .collect();
            assert_eq!(names, ["end_call", "transfer_to_human"]);
            let greet: Value = serde_json::from_str(&first[1]).unwrap();
            assert_eq!(greet["type"], "response.create");
            assert!(greet["response"]["instructions"]
                .as_str()
                .unwrap()
                .contains("Hello"));
        }
        // No greeting, or a session opened again after a drop: the session alone.
        for (greeting, greet) in [(None, true), (Some("Hello"), false)] {
            let first = RealtimeSide::new(&start(8000)).first_messages(
                &settings(greeting),
                &Default::default(),
                greet,
            );
            assert_eq!(first.len(), 1);
        }
    }

    #[test]
    fn a_barge_in_truncates_the_item_to_what_was_sent_and_cancels() {
        let mut side = RealtimeSide::new(&start(8000));
        let mut out = Outbox::new(8000, 0);
        let mut replies = Vec::new();
        let mut law = Vec::new();
        g711::encode(&[500i16; 8000], &mut law);
        let delta = base64::engine::general_purpose::STANDARD.encode(&law);
        let event =
            json!({"type": "response.output_audio.delta", "item_id": "it1", "delta": delta});
        side.to_outbox(&event.to_string(), &mut out, &mut replies)
            .unwrap();
        assert_eq!(out.queued_samples(), 8000);
        // 300 ms of it leave for the caller before the caller speaks.
        let mut sent = Vec::new();
        out.drain_into(2400, &mut sent);
        side.to_outbox(
            r#"{"type":"input_audio_buffer.speech_started"}"#,
            &mut out,
            &mut replies,
        )
        .unwrap();
        assert_eq!(out.queued_samples(), 0, "what was queued is dropped");
        let truncate: Value = serde_json::from_str(&replies[0]).unwrap();
        assert_eq!(truncate["type"], "conversation.item.truncate");
        assert_eq!(truncate["item_id"], "it1");
        assert_eq!(truncate["audio_end_ms"], 300);
        let cancel: Value = serde_json::from_str(&replies[1]).unwrap();
        assert_eq!(cancel["type"], "response.cancel");
        // A second barge-in with nothing playing asks nothing.
        replies.clear();
        side.to_outbox(
            r#"{"type":"input_audio_buffer.speech_started"}"#,
            &mut out,
            &mut replies,
        )
        .unwrap();
        assert!(replies.is_empty());
        // A delta of the cut item still on its way is not played after the clear; the next
        // item is.
        side.to_outbox(&event.to_string(), &mut out, &mut replies)
            .unwrap();
        assert_eq!(
            out.queued_samples(),
            0,
            "the cut item's late delta was played"
        );
        let next = json!({"type": "response.output_audio.delta", "item_id": "it2", "delta": delta});
        side.to_outbox(&next.to_string(), &mut out, &mut replies)
            .unwrap();
        assert_eq!(out.queued_samples(), 8000);
    }

    #[test]
    fn tools_transcripts_and_errors_reach_the_call() {
        let mut side = RealtimeSide::new(&start(16000));
        let mut out = Outbox::new(16000, 0);
        let mut replies = Vec::new();
        let mut event = |text: &str, out: &mut Outbox| side.to_outbox(text, out, &mut replies);
        event(
            r#"{"type":"response.function_call_arguments.done","name":"transfer_to_human","call_id":"c7","arguments":"{\"reason\":\"billing\"}"}"#,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.handoff(), Some("billing"));
        event(
            r#"{"type":"response.output_audio_transcript.done","transcript":"One moment."}"#,
            &mut out,
        )
        .unwrap();
        // A cancel with nothing to cancel is harmless; another error is noted, any key in its
        // message masked; rate-limit updates are counted.
        event(
            r#"{"type":"error","error":{"code":"response_cancel_not_active","message":"x"}}"#,
            &mut out,
        )
        .unwrap();
        assert!(out.take_service_notes().is_none());
        for text in [
            r#"{"type":"rate_limits.updated","rate_limits":[]}"#,
            r#"{"type":"error","error":{"code":"invalid_api_key","message":"Incorrect key sk-abc123 given"}}"#,
        ] {
            event(text, &mut out).unwrap();
        }
        let notes = out.take_service_notes().unwrap();
        assert_eq!((notes.errors, notes.rate_limits), (1, 1));
        assert_eq!(
            notes.last_error.as_deref(),
            Some("the service's error invalid_api_key: Incorrect key sk-**** given")
        );
        let output: Value = serde_json::from_str(&replies[0]).unwrap();
        assert_eq!(output["item"]["type"], "function_call_output");
        assert_eq!(output["item"]["call_id"], "c7");
        assert_eq!(out.take_transcript().unwrap()[0].1, "One moment.");
    }

    #[test]
    fn a_service_sending_more_than_the_queue_holds_costs_its_own_audio_counted() {
        let mut side = RealtimeSide::new(&start(8000));
        let mut out = Outbox::new(8000, 0);
        // Ten seconds a delta, far faster than real time: what passes the limit is dropped.
        let mut law = Vec::new();
        g711::encode(&[300i16; 80_000], &mut law);
        let delta = json!({"type": "response.output_audio.delta", "item_id": "i1",
                           "delta": base64::engine::general_purpose::STANDARD.encode(&law)})
        .to_string();
        let deltas = MAX_QUEUED_BOT_SECONDS / 10 + 3;
        for _ in 0..deltas {
            side.to_outbox(&delta, &mut out, &mut Vec::new()).unwrap();
        }
        assert_eq!(out.queued_samples(), MAX_QUEUED_BOT_SECONDS * 8000);
        assert_eq!(out.take_dropped(), 3);
    }

    #[test]
    fn the_formats_the_service_applied_are_followed_or_named_as_an_error() {
        let mut side = RealtimeSide::new(&start(8000));
        let mut out = Outbox::new(8000, 0);
        // Asked for μ-law, the service applied 24 kHz PCM both ways (beta names).
        let updated = json!({"type": "session.updated",
                             "session": {"input_audio_format": "pcm16", "output_audio_format": "pcm16"}});
        side.to_outbox(&updated.to_string(), &mut out, &mut Vec::new())
            .unwrap();
        assert!(out.take_service_notes().is_none());
        let frame = json!({"event": "media", "stream_sid": "S", "media": {
            "track": "inbound", "chunk": "1", "timestamp": "0",
            "payload": base64::engine::general_purpose::STANDARD.encode([0u8; 320])}});
        let mut sent = Vec::new();
        side.from_exotel(&frame.to_string(), &mut sent).unwrap();
        let append: Value = serde_json::from_str(&sent[0]).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(append["audio"].as_str().unwrap())
            .unwrap();
        // 160 samples at 8 kHz are 480 at 24 kHz, two bytes each (give or take the filter's delay).
        assert!((900..=960).contains(&bytes.len()), "{} bytes", bytes.len());
        let delta = json!({"type": "response.output_audio.delta", "item_id": "i",
                           "delta": base64::engine::general_purpose::STANDARD.encode([0u8; 4800])});
        side.to_outbox(&delta.to_string(), &mut out, &mut Vec::new())
            .unwrap();
        assert!(
            (780..=800).contains(&out.queued_samples()),
            "{}",
            out.queued_samples()
        );
        // A format this side does not speak is the call's error, named.
        let alaw = json!({"type": "session.updated",
                          "session": {"audio": {"output": {"format": {"type": "audio/pcma"}}}}});
        side.to_outbox(&alaw.to_string(), &mut out, &mut Vec::new())
            .unwrap();
        let error = out.take_service_notes().unwrap().last_error.unwrap();
        assert!(error.contains("output format audio/pcma"), "{error}");
    }
}
