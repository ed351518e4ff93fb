//! Signed call events to the user's backend (`EVENTS_URL`): a receiver on loopback that
//! refuses at first, a server restarted meanwhile, and every call's events arriving at least
//! once, in order, each with a signature this file verifies as the Standard Webhooks
//! specification says (its own HMAC, not the server's function).

use crate::support;

use base64::Engine as _;
use exotel_voicebot::media::audio::speech_like;
use exotel_voicebot::sim::fake_exotel::read_request;
use exotel_voicebot::sim::{run_call, CallPlan};
use serde_json::Value;
use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::Server;

/// 32 bytes of key, as `EVENTS_SECRET` holds them.
const KEY: &[u8; 32] = b"events-test-key-0123456789abcdef";

/// One request the receiver got: its headers (lower-cased names), body, and what it answered.
#[derive(Clone, Debug)]
struct Delivery {
    headers: std::collections::HashMap<String, String>,
    body: String,
    taken: bool,
}

impl Delivery {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

/// A backend that answers 503 until `open` is set, then 204; it keeps every request.
struct Receiver {
    port: u16,
    open: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (open2, got2) = (open.clone(), got.clone());
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let Some(request) = read_request(&mut stream) else {
                    continue;
                };
                let taken = open2.load(Ordering::SeqCst);
                got2.lock().unwrap().push(Delivery {
                    headers: request.headers,
                    body: String::from_utf8_lossy(&request.body).into_owned(),
                    taken,
                });
                let status = if taken {
                    "204 No Content"
                } else {
                    "503 Service Unavailable"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { port, open, got }
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }
}

/// The Standard Webhooks check, written from its specification: the signed content is
/// `{webhook-id}.{webhook-timestamp}.{body}`, the key the base64 after `whsec_`, the signature
/// header a space-separated list of `v1,<base64 HMAC-SHA256>`, one of which must match; the
/// timestamp within five minutes of now.
fn verify(secret: &str, d: &Delivery) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let timestamp: i64 = d.header("webhook-timestamp").parse().unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - timestamp).abs() > 300 {
        return false;
    }
    let content = format!("{}.{timestamp}.{}", d.header("webhook-id"), d.body);
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
        content.as_bytes(),
    );
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.as_ref());
    d.header("webhook-signature")
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|sig| sig == expected)
}

fn call(server: &Server) -> String {
    let mut plan = CallPlan::new(server.addr, speech_like(8000, 600, 3));
    plan.check_echo = false;
    run_call(&plan).call_log_id
}

/// Waits for `done` over the deliveries, up to `within`.
fn wait_for(receiver: &Receiver, within: Duration, done: impl Fn(&[Delivery]) -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done(&receiver.deliveries()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done(&receiver.deliveries())
}

fn event_of(d: &Delivery) -> Value {
    serde_json::from_str(&d.body).unwrap()
}

#[test]
fn every_calls_events_arrive_signed_in_order_through_a_refusing_receiver_and_a_restart() {
    let receiver = Receiver::start();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(KEY)
    );
    let url = format!("http://127.0.0.1:{}/hooks", receiver.port);
    let env = [
        ("EVENTS_URL", url.as_str()),
        ("EVENTS_SECRET", secret.as_str()),
    ];
    let dir = support::temp_dir("events");
    let server = Server::start_in(dir.clone(), &env);
    let ids: Vec<String> = (0..4).map(|_| call(&server)).collect();
    // Each call's first event was tried, and refused; they wait, listed.
    assert!(wait_for(&receiver, Duration::from_secs(20), |got| {
        ids.iter().all(|id| {
            got.iter()
                .any(|d| event_of(d)["data"]["callLogId"] == id.as_str())
        })
    }));
    let pending = support::request(server.addr, "GET", "/events", &[], b"").json();
    assert!(
        !pending["events"].as_array().unwrap().is_empty(),
        "{pending}"
    );
    // Restarted while the receiver still refuses; then it takes them.
    server.signal("TERM");
    let _ = server.wait_exit(Duration::from_secs(20));
    let server = Server::start_in(dir, &env);
    receiver.open.store(true, Ordering::SeqCst);
    let ended_taken = |got: &[Delivery]| {
        ids.iter().all(|id| {
            got.iter().any(|d| {
                let e = event_of(d);
                d.taken && e["type"] == "call.ended" && e["data"]["callLogId"] == id.as_str()
            })
        })
    };
    assert!(
        wait_for(&receiver, Duration::from_secs(60), ended_taken),
        "{:#?}",
        receiver.deliveries()
    );

    let got = receiver.deliveries();
    for d in &got {
        assert!(
            verify(&secret, d),
            "a signature that does not verify: {d:?}"
        );
        assert_eq!(d.header("content-type"), "application/json");
    }
    for id in &ids {
        let of_call: Vec<(&Delivery, Value)> = got
            .iter()
            .map(|d| (d, event_of(d)))
            .filter(|(_, e)| e["data"]["callLogId"] == id.as_str())
            .collect();
        let ids_of = |kind: &str| {
            let mut ids: Vec<&str> = of_call
                .iter()
                .filter(|(_, e)| e["type"] == kind)
                .map(|(d, _)| d.header("webhook-id"))
                .collect();
            ids.dedup();
            ids
        };
        // One event each, whatever the attempts: one webhook-id.
        assert_eq!(ids_of("call.started").len(), 1, "{id}");
        assert_eq!(ids_of("call.ended").len(), 1, "{id}");
        // In order: nothing of call.ended was sent before call.started was taken.
        let started_taken = of_call
            .iter()
            .position(|(d, e)| d.taken && e["type"] == "call.started")
            .expect("call.started taken");
        let first_ended = of_call
            .iter()
            .position(|(_, e)| e["type"] == "call.ended")
            .unwrap();
        assert!(started_taken < first_ended, "{id}: ended before started");
        let (_, ended) = of_call
            .iter()
            .find(|(d, e)| d.taken && e["type"] == "call.ended")
            .unwrap();
        assert_eq!(ended["data"]["status"], "completed", "{ended}");
        assert!(ended["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    let metrics = String::from_utf8(server.get("/metrics").body).unwrap();
    assert!(
        metrics.contains("exotel_voicebot_events_total{outcome=\"delivered\"}"),
        "{metrics}"
    );
    let failed = support::request(server.addr, "GET", "/events?status=failed", &[], b"").json();
    assert_eq!(failed["events"], serde_json::json!([]));
}

#[test]
fn events_need_a_secret_and_a_destination_that_keeps_it_private() {
    for (env, variable) in [
        (
            vec![("EVENTS_URL", "https://hooks.example/x")],
            "EVENTS_SECRET",
        ),
        (
            vec![
                ("EVENTS_URL", "http://hooks.example/x"),
                (
                    "EVENTS_SECRET",
                    "whsec_ZXZlbnRzLXRlc3Qta2V5LTAxMjM0NTY3ODlhYmNkZWY=",
                ),
            ],
            "EVENTS_URL",
        ),
        (
            vec![
                ("EVENTS_URL", "https://hooks.example/x"),
                ("EVENTS_SECRET", "not-a-whsec"),
            ],
            "EVENTS_SECRET",
        ),
    ] {
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let e = exotel_voicebot::config::Config::from_lookup(lookup).unwrap_err();
        assert_eq!(e.variable, variable, "{env:?}");
        assert!(
            !e.to_string().contains("ZXZlbnRz"),
            "the secret in an error"
        );
    }
}

#[test]
fn the_readmes_python_receiver_verifies_what_the_server_sends() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("```python\n").expect("the README's receiver") + 10;
    let code = &readme[start..start + readme[start..].find("```").unwrap()];
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let dir = support::temp_dir("events-python");
    // As written, but for its port: a free one instead of 8000.
    std::fs::write(
        dir.join("receiver.py"),
        code.replace("8000", &port.to_string()),
    )
    .unwrap();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(KEY)
    );
    let mut python = std::process::Command::new("python3")
        .arg("receiver.py")
        .current_dir(&dir)
        .env("EVENTS_SECRET", &secret)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let out = python.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let lines2 = lines.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            lines2.lock().unwrap().push(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the receiver did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("http://127.0.0.1:{port}/");
    let server = Server::start(&[
        ("EVENTS_URL", url.as_str()),
        ("EVENTS_SECRET", secret.as_str()),
    ]);
    let id = call(&server);
    let want = format!("call.ended {id} signed");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lines.lock().unwrap().contains(&want) {
        assert!(Instant::now() < deadline, "{:?}", lines.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = python.kill();
    let _ = python.wait();
    let printed = lines.lock().unwrap().clone();
    assert!(
        printed.contains(&format!("call.started {id} signed")),
        "{printed:?}"
    );
    assert!(
        !printed.iter().any(|l| l.contains("NOT SIGNED")),
        "{printed:?}"
    );
}
