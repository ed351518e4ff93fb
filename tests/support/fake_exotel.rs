//! A fake Exotel API: a real HTTP server on 127.0.0.1 that records every request it receives and
//! answers the way a test tells it to (accept, refuse, garbage, or never answer).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the fake answers the next requests.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// 200 `{"Call": {"Sid": <sid>, "Status": "queued", …}}`
    Accept { sid: String },
    /// This status and body, as Exotel's error answers look.
    Answer { status: u16, body: String },
    /// Bytes that are not HTTP at all, then close.
    Garbage,
    /// Read the request, never answer, keep the connection open.
    Silent,
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

pub struct FakeExotel {
    pub addr: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl FakeExotel {
    pub fn start(behaviour: Behaviour) -> FakeExotel {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let behaviour = Arc::new(Mutex::new(behaviour));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (b, r) = (behaviour.clone(), received.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (b, r) = (b.clone(), r.clone());
                std::thread::spawn(move || serve(stream, &b, &r));
            }
        });
        FakeExotel {
            addr,
            behaviour,
            received,
        }
    }

    /// `http://127.0.0.1:port`, for `EXOTEL_API_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn serve(mut stream: TcpStream, behaviour: &Mutex<Behaviour>, received: &Mutex<Vec<Received>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let request = loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = req.parse(&buf) {
            let headers = super::header_map(req.headers);
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= head + len {
                break Received {
                    method: req.method.unwrap().to_owned(),
                    path: req.path.unwrap().to_owned(),
                    headers,
                    body: buf[head..head + len].to_vec(),
                };
            }
        }
    };
    received.lock().unwrap().push(request);
    let behaviour = behaviour.lock().unwrap().clone();
    let (status, body) = match behaviour {
        Behaviour::Accept { sid } => (
            200,
            format!(
                r#"{{"Call":{{"Sid":"{sid}","Status":"queued","Direction":"outbound-api","Uri":"/v1/Accounts/x/Calls/{sid}.json"}}}}"#
            ),
        ),
        Behaviour::Answer { status, body } => (status, body),
        Behaviour::Garbage => {
            let _ = stream.write_all(b"\x00\x01 this is not HTTP \r\n\r\n");
            return;
        }
        Behaviour::Silent => {
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}
