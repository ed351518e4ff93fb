//! A fake Exotel API: a real HTTP server on loopback that records every request it receives and
//! answers the way it is told to (accept, refuse, garbage, or never answer). Used by the tests
//! and by `simulate --outbound`; it listens on 127.0.0.1 only.

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
    /// What `GET …/Calls/{sid}.json` answers, by CallSid (404 for others).
    call_statuses: Arc<Mutex<HashMap<String, String>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl FakeExotel {
    /// On a free loopback port.
    pub fn start(behaviour: Behaviour) -> FakeExotel {
        FakeExotel::start_on(0, behaviour).expect("bind a loopback port")
    }

    /// On 127.0.0.1:`port` (0 for any).
    pub fn start_on(port: u16, behaviour: Behaviour) -> std::io::Result<FakeExotel> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let behaviour = Arc::new(Mutex::new(behaviour));
        let received = Arc::new(Mutex::new(Vec::new()));
        let call_statuses = Arc::new(Mutex::new(HashMap::new()));
        let (b, r, c) = (behaviour.clone(), received.clone(), call_statuses.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (b, r, c) = (b.clone(), r.clone(), c.clone());
                std::thread::spawn(move || serve(stream, &b, &r, &c));
            }
        });
        Ok(FakeExotel {
            addr,
            behaviour,
            call_statuses,
            received,
        })
    }

    /// `http://127.0.0.1:port`, for `EXOTEL_API_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    /// What the call-details API answers for `call_sid` from now on (`completed`, `no-answer`,
    /// `in-progress`, …).
    pub fn set_call_status(&self, call_sid: &str, status: &str) {
        self.call_statuses
            .lock()
            .unwrap()
            .insert(call_sid.to_owned(), status.to_owned());
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The form fields of the `Calls/connect` request whose `CustomField` is `call_log_id`.
    pub fn call_for(&self, call_log_id: &str) -> Option<Vec<(String, String)>> {
        self.received().iter().find_map(|r| {
            let fields = crate::http::form::parse(std::str::from_utf8(&r.body).ok()?);
            fields
                .iter()
                .any(|(k, v)| k == "CustomField" && v == call_log_id)
                .then_some(fields)
        })
    }
}

fn serve(
    mut stream: TcpStream,
    behaviour: &Mutex<Behaviour>,
    received: &Mutex<Vec<Received>>,
    call_statuses: &Mutex<HashMap<String, String>>,
) {
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
            let headers: HashMap<String, String> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
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
    let details_of = request
        .path
        .rsplit_once("/Calls/")
        .and_then(|(_, rest)| rest.strip_suffix(".json"))
        .filter(|sid| request.method == "GET" && *sid != "connect")
        .map(crate::http::form::decode);
    received.lock().unwrap().push(request);
    if let Some(sid) = details_of {
        let (status, body) = match call_statuses.lock().unwrap().get(&sid) {
            Some(s) => (
                200,
                format!(r#"{{"Call":{{"Sid":"{sid}","Status":"{s}","Duration":"7"}}}}"#),
            ),
            None => (
                404,
                r#"{"RestException":{"Status":404,"Message":"Call not found"}}"#.to_owned(),
            ),
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body.as_bytes());
        return;
    }
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
