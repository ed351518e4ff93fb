//! A speech-to-speech service that speaks OpenAI's Realtime protocol as docs/realtime.md
//! describes it (it knows nothing of this server): a real WebSocket server on loopback for the
//! tests of `BOT=realtime`, following a script. It records the handshake and every event it
//! gets, answers `session.update` with `session.updated`, greets (a tone of `greeting_ms` in the
//! session's format, then its transcript) when asked for a response, and once it has had
//! `after_caller_ms` of the caller's audio it reports the caller's words and does what the
//! script says next: call `end_call` after a short goodbye, call `transfer_to_human`, or hear
//! the caller start speaking over it (a barge-in), or fail (an error, then the socket closed).
//! After each response it reports its rate limits, as the service does.

use base64::Engine as _;
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::Message;

/// What the service does after the caller has spoken for a while.
#[derive(Clone, Debug)]
pub enum Then {
    /// Says a 300 ms goodbye, then calls `end_call`.
    EndCall,
    /// Calls `transfer_to_human` with this reason.
    Transfer(String),
    /// `input_audio_buffer.speech_started`: the caller talks over the greeting.
    BargeIn,
    /// An `error` event with this code, then the session closed; handshakes from then on are
    /// refused with `refuse_after` (0: accepted).
    Fail { code: String, refuse_after: u16 },
}

#[derive(Clone, Debug)]
pub struct Script {
    pub greeting_ms: u32,
    pub after_caller_ms: u32,
    pub then: Then,
}

#[derive(Default)]
struct Shared {
    /// Every event received, in order, and the handshake's request line and Authorization.
    events: Mutex<Vec<Value>>,
    handshake: Mutex<Option<(String, String)>>,
    refuse: AtomicU16,
    /// When each response's first audio delta was sent, in order.
    first_deltas: Mutex<Vec<Instant>>,
}

pub struct FakeRealtime {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

/// The words the service says the caller said, and its own greeting's.
pub const CALLER_WORDS: &str = "I would like to pay my bill.";
pub const GREETING_WORDS: &str = "Hello, this is the fake service.";

impl FakeRealtime {
    // tungstenite's handshake callback returns its own (large) refusal type.
    #[allow(clippy::result_large_err)]
    pub fn start(script: Script) -> FakeRealtime {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("its address");
        let shared = Arc::new(Shared::default());
        let for_accept = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (shared, script) = (for_accept.clone(), script.clone());
                // Each event goes out as it is written, as a service's does: Nagle's wait for
                // an ACK would add a delayed ACK's 40 ms to what the edge is measured by.
                let _ = stream.set_nodelay(true);
                std::thread::spawn(move || {
                    let refuse = shared.refuse.load(Ordering::SeqCst);
                    let check = |request: &Request, response: Response| {
                        let auth = request
                            .headers()
                            .get("authorization")
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                            .unwrap_or_default();
                        *shared.handshake.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some((request.uri().to_string(), auth));
                        if refuse != 0 {
                            let mut no = ErrorResponse::new(Some(
                                r#"{"error":{"code":"invalid_api_key"}}"#.into(),
                            ));
                            *no.status_mut() =
                                tungstenite::http::StatusCode::from_u16(refuse).unwrap_or_default();
                            return Err(no);
                        }
                        Ok(response)
                    };
                    if let Ok(mut ws) = tungstenite::accept_hdr(stream, check) {
                        converse(&mut ws, &shared, &script);
                    }
                });
            }
        });
        FakeRealtime { addr, shared }
    }

    /// `ws://127.0.0.1:port/v1/realtime`, as `REALTIME_URL`.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    /// Refuses every handshake with this status from now on (401: a wrong key).
    pub fn refuse(&self, status: u16) {
        self.shared.refuse.store(status, Ordering::SeqCst);
    }

    /// The handshake's path and query, and its `Authorization` header.
    pub fn handshake(&self) -> Option<(String, String)> {
        self.shared
            .handshake
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The events received so far.
    pub fn events(&self) -> Vec<Value> {
        self.shared
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// When each response's first audio delta was sent, in the order they were (one a
    /// connection when calls come one at a time and the model speaks once each).
    pub fn first_deltas(&self) -> Vec<Instant> {
        self.shared
            .first_deltas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The events received, once one of type `kind` has come (or `timeout` has passed).
    pub fn wait_for(&self, kind: &str, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events();
            if events.iter().any(|e| e["type"] == kind) || Instant::now() > deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The session's audio: μ-law at 8 kHz, or 16-bit PCM at 24 kHz.
#[derive(Clone, Copy, PartialEq)]
enum Format {
    Pcmu,
    Pcm24k,
}

impl Format {
    fn bytes_per_ms(self) -> usize {
        match self {
            Format::Pcmu => 8,
            Format::Pcm24k => 48,
        }
    }

    /// `ms` of a 440 Hz tone in this format, base64.
    fn tone(self, ms: u32) -> String {
        let rate = if self == Format::Pcmu { 8000 } else { 24000 };
        let samples = crate::media::audio::tone(rate, 440.0, ms, 8000);
        let bytes = match self {
            Format::Pcmu => {
                let mut law = Vec::new();
                crate::media::g711::encode(&samples, &mut law);
                law
            }
            Format::Pcm24k => samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
        };
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

fn converse<S: std::io::Read + std::io::Write>(
    ws: &mut tungstenite::WebSocket<S>,
    shared: &Shared,
    script: &Script,
) {
    let mut format = Format::Pcmu;
    let mut caller_bytes = 0usize;
    let mut greeted = false;
    let mut acted = false;
    let mut last_item = Value::Null;
    loop {
        let event: Value = match ws.read() {
            Ok(Message::Text(t)) => serde_json::from_str(t.as_str()).unwrap_or_default(),
            Ok(_) => continue,
            Err(_) => return,
        };
        shared
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event.clone());
        let mut replies = Vec::new();
        match event["type"].as_str().unwrap_or_default() {
            "session.update" => {
                if event["session"]["audio"]["input"]["format"]["type"] == "audio/pcm" {
                    format = Format::Pcm24k;
                }
                replies.push(json!({"type": "session.updated", "session": event["session"]}));
            }
            "response.create" if !greeted => {
                greeted = true;
                speak(&mut replies, format, "item-greet", script.greeting_ms);
                replies.push(json!({
                    "type": "response.output_audio_transcript.done",
                    "item_id": "item-greet", "transcript": GREETING_WORDS,
                }));
                replies.push(json!({"type": "response.done"}));
                replies.push(json!({"type": "rate_limits.updated", "rate_limits": [
                    {"name": "requests", "limit": 1000, "remaining": 999, "reset_seconds": 0.06}
                ]}));
            }
            "input_audio_buffer.append" => {
                let audio = event["audio"].as_str().unwrap_or_default();
                caller_bytes += base64::engine::general_purpose::STANDARD
                    .decode(audio)
                    .map_or(0, |b| b.len());
                let heard_ms = caller_bytes / format.bytes_per_ms();
                if !acted && heard_ms >= script.after_caller_ms as usize {
                    acted = true;
                    act(&mut replies, format, &script.then);
                }
            }
            _ => {}
        }
        for reply in replies {
            let item = &reply["item_id"];
            if reply["type"] == "response.output_audio.delta" && *item != last_item {
                last_item = item.clone();
                let mut firsts = shared
                    .first_deltas
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                firsts.push(Instant::now());
            }
            if ws.send(Message::text(reply.to_string())).is_err() {
                return;
            }
        }
        if let (true, Then::Fail { refuse_after, .. }) = (acted, &script.then) {
            shared.refuse.store(*refuse_after, Ordering::SeqCst);
            let _ = ws.close(None);
            let _ = ws.flush();
            return;
        }
    }
}

/// `ms` of audio for `item`, in deltas of 100 ms, as a service streams it (faster than real
/// time).
fn speak(replies: &mut Vec<Value>, format: Format, item: &str, ms: u32) {
    for _ in 0..ms / 100 {
        replies.push(json!({
            "type": "response.output_audio.delta",
            "item_id": item, "content_index": 0, "delta": format.tone(100),
        }));
    }
}

fn act(replies: &mut Vec<Value>, format: Format, then: &Then) {
    replies.push(json!({
        "type": "conversation.item.input_audio_transcription.completed",
        "item_id": "item-caller", "transcript": CALLER_WORDS,
    }));
    match then {
        Then::EndCall => {
            speak(replies, format, "item-bye", 300);
            replies.push(json!({
                "type": "response.function_call_arguments.done",
                "name": "end_call", "call_id": "call-end", "arguments": "{\"reason\":\"paid\"}",
            }));
        }
        Then::Transfer(reason) => replies.push(json!({
            "type": "response.function_call_arguments.done",
            "name": "transfer_to_human", "call_id": "call-transfer",
            "arguments": json!({"reason": reason}).to_string(),
        })),
        Then::BargeIn => replies.push(json!({"type": "input_audio_buffer.speech_started"})),
        Then::Fail { code, .. } => replies.push(json!({
            "type": "error",
            "error": {"type": "server_error", "code": code,
                      "message": "The server had an error while processing your request."},
        })),
    }
}
