//! An upstream voice bot written only from `docs/exotel.md` (it knows nothing of this
//! server): a real WebSocket server on loopback that speaks Exotel's stream protocol, for the
//! relay's tests, `exotel-voicebot test-bot`, and the relay's latency measurement.
//!
//! What it does, per connection: after `start` it sends the echo delay as silence, then echoes
//! every `media` payload back as it came, at once (no pacing: Exotel, or the relay, queues).
//! Keys: `*` sends `clear`; `1` sends a mark `m1`; `5` stops reading for 15 s (a stuck bot);
//! `9` sends a text frame that is not JSON and a binary frame; `#` sends `clear`, a goodbye tone and a mark `goodbye`, and hangs up (closes)
//! when that mark comes back. Everything it receives is recorded for the tests, and it can be
//! told to refuse handshakes or to drop every connection without a close (a crash).

use base64::Engine as _;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::{Message, WebSocket};

/// What one connection received and how it ended.
#[derive(Debug, Clone, Default)]
pub struct BotCall {
    /// The handshake's path and query.
    pub uri: String,
    /// The handshake's headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Every text frame, as it arrived.
    pub frames: Vec<String>,
    /// The `event` of each text frame, in order.
    pub events: Vec<String>,
    /// The caller's audio, decoded from every `media`.
    pub caller_audio: Vec<i16>,
    pub dtmf: String,
    /// Marks that came back (their audio was played).
    pub marks: Vec<String>,
    pub stop_reason: Option<String>,
    /// The peer closed with a close frame (rather than the connection just ending).
    pub closed_cleanly: bool,
    /// The connection is over.
    pub ended: bool,
}

impl BotCall {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter of the handshake URL, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.uri.split_once('?')?.1;
        crate::http::form::parse(query)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

struct Shared {
    calls: Mutex<Vec<Arc<Mutex<BotCall>>>>,
    /// Open sockets by connection number, for [`TestBot::drop_all`].
    sockets: Mutex<Vec<(usize, TcpStream)>>,
    /// Non-zero: handshakes are refused with this HTTP status.
    refuse: AtomicU16,
    echo_delay_ms: u32,
    /// Set for `wss://`: connections are TLS with this certificate.
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// The bot server. Runs until the process ends.
pub struct TestBot {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl TestBot {
    /// On a free loopback port.
    pub fn start(echo_delay_ms: u32) -> TestBot {
        TestBot::start_on(0, echo_delay_ms).expect("bind a loopback port")
    }

    /// On 127.0.0.1:`port` (0 for any).
    pub fn start_on(port: u16, echo_delay_ms: u32) -> std::io::Result<TestBot> {
        TestBot::listen(port, echo_delay_ms, None)
    }

    /// A `wss://` bot on a free loopback port, with this certificate chain and PKCS#8 key (PEM).
    pub fn start_tls(echo_delay_ms: u32, cert_pem: &str, key_pem: &str) -> TestBot {
        let chain = crate::tls::certificates(cert_pem.as_bytes()).expect("a PEM certificate chain");
        use rustls::pki_types::pem::PemObject as _;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .expect("a PEM key");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("a usable certificate and key");
        TestBot::listen(0, echo_delay_ms, Some(Arc::new(config))).expect("bind a loopback port")
    }

    fn listen(
        port: u16,
        echo_delay_ms: u32,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<TestBot> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            calls: Mutex::new(Vec::new()),
            sockets: Mutex::new(Vec::new()),
            refuse: AtomicU16::new(0),
            echo_delay_ms,
            tls,
        });
        let for_accept = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let shared = for_accept.clone();
                let _ = std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn(move || serve(stream, &shared));
            }
        });
        Ok(TestBot { addr, shared })
    }

    /// `ws://127.0.0.1:port/bot`, or `wss://localhost:port/bot` (the certificate's name).
    pub fn url(&self) -> String {
        match self.shared.tls {
            None => format!("ws://{}/bot", self.addr),
            Some(_) => format!("wss://localhost:{}/bot", self.addr.port()),
        }
    }

    /// From now on, answer handshakes with `status` (0: accept again).
    pub fn refuse(&self, status: u16) {
        self.shared.refuse.store(status, Ordering::SeqCst);
    }

    /// Ends every open connection at once without a close frame, as a crashed bot would.
    pub fn drop_all(&self) {
        let mut sockets = self
            .shared
            .sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (_, s) in sockets.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// What every connection so far received, in the order they were accepted.
    pub fn calls(&self) -> Vec<BotCall> {
        let calls = self.shared.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls
            .iter()
            .map(|c| c.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    /// Waits up to `timeout` for `n` connections to have ended; returns them all.
    pub fn wait_ended(&self, n: usize, timeout: Duration) -> Vec<BotCall> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let calls = self.calls();
            if calls.iter().filter(|c| c.ended).count() >= n
                || std::time::Instant::now() >= deadline
            {
                return calls;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

// tungstenite's handshake callback must return its `ErrorResponse`, a whole HTTP response.
#[allow(clippy::result_large_err)]
fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let call = Arc::new(Mutex::new(BotCall::default()));
    let refuse = shared.refuse.load(Ordering::SeqCst);
    let check = |request: &Request, response: Response| {
        let mut c = call.lock().unwrap_or_else(|p| p.into_inner());
        c.uri = request.uri().to_string();
        c.headers = request
            .headers()
            .iter()
            .map(|(k, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_owned(), value)
            })
            .collect();
        if refuse != 0 {
            let mut refusal = ErrorResponse::new(Some("bot is down".into()));
            *refusal.status_mut() =
                tungstenite::http::StatusCode::from_u16(refuse).unwrap_or_default();
            return Err(refusal);
        }
        Ok(response)
    };
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    match &shared.tls {
        None => {
            let accepted = tungstenite::accept_hdr(stream, check).map_err(|e| e.to_string());
            run(accepted, clone, &call, shared);
        }
        Some(config) => {
            let Ok(tls) = rustls::ServerConnection::new(config.clone()) else {
                return;
            };
            let stream = rustls::StreamOwned::new(tls, stream);
            let accepted = tungstenite::accept_hdr(stream, check).map_err(|e| e.to_string());
            run(accepted, clone, &call, shared);
        }
    }
}

/// After the handshake: converse, then close.
fn run<S: Read + Write>(
    accepted: Result<WebSocket<S>, String>,
    clone: TcpStream,
    call: &Arc<Mutex<BotCall>>,
    shared: &Shared,
) {
    let number = {
        let mut calls = shared.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.push(call.clone());
        calls.len()
    };
    let Ok(mut ws) = accepted else {
        call.lock().unwrap_or_else(|p| p.into_inner()).ended = true;
        return;
    };
    shared
        .sockets
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((number, clone));
    converse(&mut ws, call, shared.echo_delay_ms);
    // Closing the TCP connection after the close handshake is the server's part (RFC 6455 §7).
    let mut sockets = shared.sockets.lock().unwrap_or_else(|p| p.into_inner());
    sockets.retain(|(n, _)| *n != number);
    drop(sockets);
    drop(ws);
    call.lock().unwrap_or_else(|p| p.into_inner()).ended = true;
}

/// The bot's side of one call: read, record, answer.
fn converse<S: Read + Write>(ws: &mut WebSocket<S>, call: &Mutex<BotCall>, echo_delay_ms: u32) {
    let mut stream_sid = String::new();
    let mut rate = 8000u32;
    let b64 = base64::engine::general_purpose::STANDARD;
    let record = |f: &mut dyn FnMut(&mut BotCall)| {
        f(&mut call.lock().unwrap_or_else(|p| p.into_inner()));
    };
    loop {
        let text = match ws.read() {
            Ok(Message::Text(t)) => t.to_string(),
            Ok(Message::Close(_)) => {
                record(&mut |c| c.closed_cleanly = true);
                // tungstenite answers the close; keep reading until the socket ends.
                continue;
            }
            Ok(_) => continue,
            Err(_) => return,
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let event = v["event"].as_str().unwrap_or("").to_owned();
        record(&mut |c| {
            c.frames.push(text.clone());
            c.events.push(event.clone());
        });
        let sid_json = |sid: &str| serde_json::Value::from(sid).to_string();
        let mut replies: Vec<Message> = Vec::new();
        match event.as_str() {
            "start" => {
                (stream_sid, rate) = stream_of(&v);
                let silence = vec![0u8; (rate * echo_delay_ms / 1000) as usize * 2];
                if !silence.is_empty() {
                    replies.push(media(&sid_json(&stream_sid), &b64.encode(&silence)));
                }
            }
            "media" => {
                let payload = v["media"]["payload"].as_str().unwrap_or("");
                if let Ok(pcm) = b64.decode(payload) {
                    record(&mut |c| {
                        c.caller_audio.extend(
                            pcm.chunks_exact(2)
                                .map(|b| i16::from_le_bytes([b[0], b[1]])),
                        )
                    });
                }
                replies.push(media(&sid_json(&stream_sid), payload));
            }
            "dtmf" => {
                let digit = v["dtmf"]["digit"].as_str().unwrap_or("").to_owned();
                record(&mut |c| c.dtmf.push_str(&digit));
                replies = on_key(&digit, &sid_json(&stream_sid), rate);
            }
            "mark" => {
                let name = v["mark"]["name"].as_str().unwrap_or("").to_owned();
                let goodbye = name == "goodbye";
                record(&mut |c| c.marks.push(name.clone()));
                if goodbye {
                    // Closing the socket is how a bot hangs up (docs/exotel.md §3).
                    let _ = ws.close(None);
                }
            }
            "stop" => {
                let reason = v["stop"]["reason"].as_str().map(str::to_owned);
                record(&mut |c| c.stop_reason = reason.clone());
            }
            _ => {}
        }
        for reply in replies {
            if ws.send(reply).is_err() {
                return;
            }
        }
    }
}

/// A `start`'s stream id and sample rate (a number or a string; 8 kHz when it says none).
fn stream_of(v: &serde_json::Value) -> (String, u32) {
    let start = &v["start"];
    let stream_sid = v["stream_sid"]
        .as_str()
        .or(start["stream_sid"].as_str())
        .unwrap_or("")
        .to_owned();
    let r = &start["media_format"]["sample_rate"];
    let rate = r
        .as_u64()
        .or_else(|| r.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(8000) as u32;
    (stream_sid, rate)
}

/// What the test bot does for a key the caller pressed: `*` clears, `1` marks, `3` adds
/// transcript turns (our extension: the caller's words, the bot's answer, and one with a role
/// that is neither), `5` stops reading for 15 s (what the relay sends it piles up), `9`
/// answers frames that are not events, `#` says goodbye (a tone and a mark, then the bot hangs
/// up when it comes back).
fn on_key(digit: &str, sid_json: &str, rate: u32) -> Vec<Message> {
    match digit {
        "*" => vec![clear(sid_json)],
        "1" => vec![mark(sid_json, "m1")],
        "3" => [("caller", "I pressed three"), ("robot", "lost"), ("bot", "You pressed three.")]
            .iter()
            .map(|(role, text)| {
                Message::text(
                    serde_json::json!({"event": "transcript", "transcript": {"role": role, "text": text}})
                        .to_string(),
                )
            })
            .collect(),
        "5" => {
            std::thread::sleep(Duration::from_secs(15));
            Vec::new()
        }
        "9" => vec![
            Message::text("this is not an event"),
            Message::binary(vec![1u8, 2, 3]),
        ],
        "#" => {
            let tone = crate::media::audio::tone(rate, 440.0, 300, 8000);
            let mut pcm = Vec::with_capacity(tone.len() * 2);
            crate::media::audio::samples_to_pcm(&tone, &mut pcm);
            let b64 = base64::engine::general_purpose::STANDARD;
            vec![
                clear(sid_json),
                media(sid_json, &b64.encode(&pcm)),
                mark(sid_json, "goodbye"),
            ]
        }
        _ => Vec::new(),
    }
}

fn media(sid_json: &str, payload: &str) -> Message {
    Message::text(format!(
        r#"{{"event":"media","stream_sid":{sid_json},"media":{{"payload":"{payload}"}}}}"#
    ))
}

fn mark(sid_json: &str, name: &str) -> Message {
    Message::text(format!(
        r#"{{"event":"mark","stream_sid":{sid_json},"mark":{{"name":"{name}"}}}}"#
    ))
}

fn clear(sid_json: &str) -> Message {
    Message::text(format!(r#"{{"event":"clear","stream_sid":{sid_json}}}"#))
}
