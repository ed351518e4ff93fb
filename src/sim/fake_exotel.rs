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
    /// Play a telephone network (see [`Network`]).
    Network(Network),
}

/// A telephone network behind the fake: every `Calls/connect` gets its own CallSid
/// (`NET{n}`), rings for `ring`, then ends busy (numbers in `busy`) or completed after `talk`,
/// told through the request's `StatusCallback` as Exotel does (once, no retry; a server that
/// is down misses it and must ask the call-details API, which answers from the same record).
#[derive(Clone, Debug, Default)]
pub struct Network {
    pub ring: Duration,
    pub talk: Duration,
    /// Numbers (their last ten digits) that are always busy.
    pub busy: Vec<String>,
    /// How long the answer to `Calls/connect` takes (the call is placed at once).
    pub answer_delay: Duration,
}

/// One call the network was asked to place.
#[derive(Clone, Debug)]
pub struct NetworkCall {
    pub call_sid: String,
    /// `From` as sent (the customer).
    pub to: String,
    pub caller_id: String,
    pub custom_field: String,
    /// The request's `Authorization` header.
    pub authorization: String,
    pub asked_at: std::time::Instant,
    /// When its final status was decided (and its callback sent, if it could be).
    pub ended_at: Option<std::time::Instant>,
    pub outcome: Option<&'static str>,
}

/// The network's record: every call asked for, and the most live at once.
#[derive(Debug, Default)]
struct NetworkLog {
    calls: Vec<NetworkCall>,
    live: usize,
    max_live: usize,
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
    network: Arc<Mutex<NetworkLog>>,
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
        let network = Arc::new(Mutex::new(NetworkLog::default()));
        let shared = Shared {
            behaviour: behaviour.clone(),
            received: received.clone(),
            call_statuses: call_statuses.clone(),
            network: network.clone(),
        };
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        Ok(FakeExotel {
            addr,
            behaviour,
            call_statuses,
            received,
            network,
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

    /// Every call the network mode was asked to place, in order.
    pub fn network_calls(&self) -> Vec<NetworkCall> {
        self.network.lock().unwrap().calls.clone()
    }

    /// The most calls the network held live at once (from the request to the final status).
    pub fn max_live(&self) -> usize {
        self.network.lock().unwrap().max_live
    }

    /// Calls the network holds live now.
    pub fn live(&self) -> usize {
        self.network.lock().unwrap().live
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

/// What every connection's thread shares.
#[derive(Clone)]
struct Shared {
    behaviour: Arc<Mutex<Behaviour>>,
    received: Arc<Mutex<Vec<Received>>>,
    call_statuses: Arc<Mutex<HashMap<String, String>>>,
    network: Arc<Mutex<NetworkLog>>,
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(request) = read_request(&mut stream) else {
        return;
    };
    let details_of = request
        .path
        .rsplit_once("/Calls/")
        .and_then(|(_, rest)| rest.strip_suffix(".json"))
        .filter(|sid| request.method == "GET" && *sid != "connect")
        .map(crate::http::form::decode);
    shared.received.lock().unwrap().push(request.clone());
    if let Some(sid) = details_of {
        let (status, body) = call_details(&sid, shared);
        answer(&mut stream, status, &body);
        return;
    }
    let behaviour = shared.behaviour.lock().unwrap().clone();
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
        Behaviour::Network(network) => {
            let sid = place_on_network(&network, shared, &request);
            std::thread::sleep(network.answer_delay);
            (
                200,
                format!(
                    r#"{{"Call":{{"Sid":"{sid}","Status":"queued","Direction":"outbound-api"}}}}"#
                ),
            )
        }
    };
    answer(&mut stream, status, &body);
}

/// Reads one request, head and body; `None` when the client goes before it is whole. (The
/// tests' other fake servers read theirs with it too.)
pub fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(head)) = req.parse(&buf) else {
            continue;
        };
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
            return Some(Received {
                method: req.method.unwrap().to_owned(),
                path: req.path.unwrap().to_owned(),
                headers,
                body: buf[head..head + len].to_vec(),
            });
        }
    }
}

/// Exotel's call details for `sid`: its status as the network last set it, or 404.
fn call_details(sid: &str, shared: &Shared) -> (u16, String) {
    match shared.call_statuses.lock().unwrap().get(sid) {
        Some(s) => (
            200,
            format!(r#"{{"Call":{{"Sid":"{sid}","Status":"{s}","Duration":"7"}}}}"#),
        ),
        None => (
            404,
            r#"{"RestException":{"Status":404,"Message":"Call not found"}}"#.to_owned(),
        ),
    }
}

/// Writes a JSON answer and closes.
fn answer(stream: &mut TcpStream, status: u16, body: &str) {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}

/// A call on the network, played on a thread of its own: it rings, talks (unless busy) and
/// ends, then tells the status callback.
struct NetworkCallPlay {
    shared: Shared,
    network: Network,
    call_sid: String,
    busy: bool,
    callback: String,
    custom_field: String,
}

impl NetworkCallPlay {
    fn play(self) {
        let NetworkCallPlay {
            shared,
            network,
            call_sid,
            busy,
            callback,
            custom_field,
        } = self;
        std::thread::sleep(network.ring);
        let outcome = if busy {
            "busy"
        } else {
            shared
                .call_statuses
                .lock()
                .unwrap()
                .insert(call_sid.clone(), "in-progress".into());
            std::thread::sleep(network.talk);
            "completed"
        };
        {
            let mut log = shared.network.lock().unwrap();
            log.live -= 1;
            if let Some(call) = log.calls.iter_mut().find(|c| c.call_sid == call_sid) {
                call.ended_at = Some(std::time::Instant::now());
                call.outcome = Some(outcome);
            }
        }
        shared
            .call_statuses
            .lock()
            .unwrap()
            .insert(call_sid.clone(), outcome.into());
        if callback.starts_with("http://") {
            let mut body = String::new();
            crate::http::form::append_pair(&mut body, "CallSid", &call_sid);
            crate::http::form::append_pair(&mut body, "Status", outcome);
            crate::http::form::append_pair(&mut body, "CustomField", &custom_field);
            crate::http::form::append_pair(&mut body, "EventType", "terminal");
            let talked = if busy { 0 } else { network.talk.as_secs() };
            crate::http::form::append_pair(&mut body, "ConversationDuration", &talked.to_string());
            let _ = minreq::post(callback)
                .with_header("Content-Type", "application/x-www-form-urlencoded")
                .with_body(body)
                .with_timeout(5)
                .send();
        }
    }
}

/// Takes a call onto the network: records it, and on a thread of its own rings, talks and ends
/// it, then tells the status callback. Answers its CallSid.
fn place_on_network(network: &Network, shared: &Shared, request: &Received) -> String {
    let fields = crate::http::form::parse(std::str::from_utf8(&request.body).unwrap_or(""));
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let to = field("From");
    let digits: String = to.chars().filter(char::is_ascii_digit).collect();
    let last_ten = &digits[digits.len().saturating_sub(10)..];
    let busy = network
        .busy
        .iter()
        .any(|b| b.ends_with(last_ten) && !last_ten.is_empty());
    let callback = field("StatusCallback");
    let custom_field = field("CustomField");
    let sid = {
        let mut log = shared.network.lock().unwrap();
        let sid = format!("NET{}", log.calls.len() + 1);
        log.calls.push(NetworkCall {
            call_sid: sid.clone(),
            to: to.clone(),
            caller_id: field("CallerId"),
            custom_field: custom_field.clone(),
            authorization: request
                .headers
                .get("authorization")
                .cloned()
                .unwrap_or_default(),
            asked_at: std::time::Instant::now(),
            ended_at: None,
            outcome: None,
        });
        log.live += 1;
        log.max_live = log.max_live.max(log.live);
        sid
    };
    shared
        .call_statuses
        .lock()
        .unwrap()
        .insert(sid.clone(), "ringing".into());
    let call = NetworkCallPlay {
        shared: shared.clone(),
        network: network.clone(),
        call_sid: sid.clone(),
        busy,
        callback,
        custom_field,
    };
    std::thread::spawn(move || call.play());
    sid
}
