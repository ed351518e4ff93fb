//! An upstream bot that speaks Twilio Media Streams, written from Twilio's published message
//! shapes (it knows nothing of this server): a real WebSocket server on loopback for the tests
//! of `BOT_PROTOCOL=twilio`. Per connection it records every message, echoes each `media`
//! payload back under its own `streamSid` (μ-law, as it came), answers the key `1` with a mark
//! `m1` and the key `*` with a `clear`.

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::Message;

/// One connection's messages, as text, in order.
type Seen = Arc<Mutex<Vec<String>>>;

pub struct TwilioBot {
    pub addr: SocketAddr,
    /// Every connection's messages.
    connections: Arc<Mutex<Vec<Seen>>>,
}

impl TwilioBot {
    /// On a free loopback port.
    pub fn start() -> TwilioBot {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("its address");
        let connections: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let for_accept = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let seen = Arc::new(Mutex::new(Vec::new()));
                for_accept
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(seen.clone());
                std::thread::spawn(move || {
                    if let Ok(mut ws) = tungstenite::accept(stream) {
                        converse(&mut ws, &seen);
                    }
                });
            }
        });
        TwilioBot { addr, connections }
    }

    /// `ws://127.0.0.1:port/twilio`.
    pub fn url(&self) -> String {
        format!("ws://{}/twilio", self.addr)
    }

    /// The messages of the first connection once its `stop` has come, within `timeout`.
    pub fn wait_stopped(&self, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let first = self
                .connections
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .first()
                .cloned();
            let seen: Vec<serde_json::Value> = first
                .map(|c| c.lock().unwrap_or_else(|p| p.into_inner()).clone())
                .unwrap_or_default()
                .iter()
                .filter_map(|t| serde_json::from_str(t).ok())
                .collect();
            if seen.iter().any(|m| m["event"] == "stop") || Instant::now() > deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn converse<S: std::io::Read + std::io::Write>(
    ws: &mut tungstenite::WebSocket<S>,
    seen: &Mutex<Vec<String>>,
) {
    let own_sid = "MZ-twilio-bot";
    loop {
        let text = match ws.read() {
            Ok(Message::Text(t)) => t.to_string(),
            Ok(Message::Close(_)) => continue,
            Ok(_) => continue,
            Err(_) => return,
        };
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(text.clone());
        let m: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let reply = match (m["event"].as_str(), m["dtmf"]["digit"].as_str()) {
            (Some("media"), _) => Some(serde_json::json!({
                "event": "media",
                "streamSid": own_sid,
                "media": {"payload": m["media"]["payload"]},
            })),
            (Some("dtmf"), Some("1")) => Some(serde_json::json!({
                "event": "mark", "streamSid": own_sid, "mark": {"name": "m1"},
            })),
            (Some("dtmf"), Some("*")) => {
                Some(serde_json::json!({"event": "clear", "streamSid": own_sid}))
            }
            _ => None,
        };
        if let Some(reply) = reply {
            if ws.send(Message::text(reply.to_string())).is_err() {
                return;
            }
        }
    }
}
