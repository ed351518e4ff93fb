//! The HTTP side of the server, three ways:
//! - `loopback_round_trip`: the webhook's round trip on loopback, through the real HTTP layer
//!   and dispatcher, against the cheapest route (`/health`) on the same kind of connection in
//!   the same run: the ratio is what the connect webhook costs over the HTTP floor (docs/ARCHITECTURE.md §6:
//!   webhook answer p99 under 1 ms).
//! - `in_memory`: the same requests parsed, dispatched and answered without a socket
//!   (`http::answer_in_memory`), so the HTTP layer's own cost shows apart from the kernel's.
//! - `passthru_latency`: single round trips of Exotel's Passthru (the caller waits on the line
//!   for it) and of `/health`, interleaved on loopback in the same run, with their p50, p99 and
//!   max (docs/ARCHITECTURE.md §6: Passthru p99 under 1 ms). The Passthru is about a call whose
//!   bot handed off, so it answers 200 and records the stream's end.
//! - `place_call`: `POST /call` up to the point of the Exotel request: the JSON body read into
//!   parameters, validated into a `PlaceCall`, and the `Calls/connect` form body built. (The
//!   call-log lookup and the slot are left out: one is a SQLite read on its own thread, the
//!   other a mutex.)
//!
//! `cargo bench --bench http`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use exotel_voicebot::app::App;
use exotel_voicebot::calls::place::PlaceCall;
use exotel_voicebot::config::Config;
use exotel_voicebot::exotel::{CallTarget, ConnectCall};
use exotel_voicebot::http::{answer_in_memory, BodyFraming, Params, Request, Server};
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

fn bench_config() -> Config {
    Config::from_lookup(|name| match name {
        "WEBHOOK_BASE_URL" => Some("https://voice.example.com".into()),
        // Every iteration issues a token that lives 60 s; the default cap (100,000) is for
        // production traffic, not tens of thousands of webhooks a second.
        "MAX_PENDING_MEDIA_TOKENS" => Some("10000000".into()),
        // The Passthru's call-log writes name a call the bench never made: each would log a
        // warning.
        "LOG_LEVEL" => Some("error".into()),
        "DATA_DIR" => Some(
            std::env::temp_dir()
                .join("exotel-voicebot-bench")
                .display()
                .to_string(),
        ),
        _ => None,
    })
    .expect("bench config")
}

fn start_server() -> SocketAddr {
    let config = bench_config();
    let limits = config.http.clone();
    let server = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr().unwrap();
    let app = App::new(config, addr.port()).expect("bench app");
    handed_off(&app);
    let _ = server.start(Arc::new(app), limits);
    addr
}

/// The call the Passthru requests ask about: a row in the call log, and a stream that ended
/// handing the caller off.
fn handed_off(app: &App) {
    let id = exotel_voicebot::calls::CallLogId::parse("bench-call-1").unwrap();
    app.call_log
        .record(exotel_voicebot::calls::log::LogEvent::Requested {
            id: id.clone(),
            to: "+919876543210".into(),
            caller_id: "08047112233".into(),
        });
    app.handoffs
        .stream_ended(&id, Some("b1"), Some("bench".into()));
}

/// Sends one request on a keep-alive connection and reads exactly one answer.
fn round_trip(stream: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>) {
    stream.write_all(request).unwrap();
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..head_end]).unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            if buf.len() >= head_end + 4 + len {
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                return;
            }
        }
    }
}

/// The requests both groups send: `/health` (the floor), the webhook as GET and as JSON POST.
fn requests() -> [(&'static str, Vec<u8>); 4] {
    [
        ("health_baseline", b"GET /health HTTP/1.1\r\nHost: b\r\n\r\n".to_vec()),
        (
            "webhook_get",
            b"GET /api/v1/exotel/voice/connect?CallSid=b1&CallFrom=%2B919876543210&CallTo=08047112233&Direction=outbound-api&CustomField=bench-call-1 HTTP/1.1\r\nHost: b\r\n\r\n".to_vec(),
        ),
        ("webhook_post_json", {
            let body = r#"{"CallSid":"b1","CallFrom":"+919876543210","CallTo":"08047112233","Direction":"outbound-api","CustomField":"bench-call-1"}"#;
            format!("POST /voicebot/connect HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
        }),
        ("passthru_nested", PASSTHRU.to_vec()),
    ]
}

/// Exotel's Passthru after a stream, its fields as nested keys.
const PASSTHRU: &[u8] = b"GET /api/v1/exotel/passthru?CallSid=b1&CustomField=bench-call-1&Direction=inbound&Stream%5BStreamSID%5D=S1&Stream%5BStatus%5D=completed&Stream%5BDuration%5D=28&Stream%5BDisconnectedBy%5D=bot HTTP/1.1\r\nHost: b\r\n\r\n";

/// Round trips of the Passthru and of `/health`, one after the other on one connection each,
/// timed one by one: criterion reports means, and a caller waits on the slowest answers. Twice:
/// back to back (the Passthru's call-log write then keeps the writer thread busy on one of the
/// two cores, which no real flow does: it is the worst case), and paced at one pair every 2 ms,
/// 500 Passthru requests a second (a server whose 5,000 calls all end within ten seconds sees
/// a tenth of that).
fn passthru_latency(_: &mut Criterion) {
    passthru_rounds("back_to_back", std::time::Duration::ZERO);
    passthru_rounds("paced_2ms", std::time::Duration::from_millis(2));
}

fn passthru_rounds(pace_name: &str, pace: std::time::Duration) {
    const ROUNDS: usize = 20_000;
    let addr = start_server();
    let connect = || {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s
    };
    let (mut health_conn, mut passthru_conn) = (connect(), connect());
    let health = b"GET /health HTTP/1.1\r\nHost: b\r\n\r\n";
    let mut buf = Vec::new();
    let (mut h, mut p) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
    for i in 0..ROUNDS + 1000 {
        if !pace.is_zero() {
            std::thread::sleep(pace);
        }
        let t = std::time::Instant::now();
        round_trip(&mut health_conn, health, &mut buf);
        let th = t.elapsed();
        let t = std::time::Instant::now();
        round_trip(&mut passthru_conn, PASSTHRU, &mut buf);
        let tp = t.elapsed();
        // The first thousand warm up.
        if i >= 1000 {
            h.push(th);
            p.push(tp);
        }
    }
    let line = |name: &str, v: &mut Vec<std::time::Duration>| {
        v.sort();
        let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
        let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
        println!(
            "passthru_latency/{pace_name}/{name}: p50 {:.1} us, p99 {:.1} us, max {:.1} us ({ROUNDS} round trips)",
            us(at(0.5)),
            us(at(0.99)),
            us(*v.last().unwrap())
        );
        (us(at(0.5)), us(at(0.99)))
    };
    let (h50, h99) = line("health_baseline", &mut h);
    let (p50, p99) = line("passthru_nested", &mut p);
    println!(
        "passthru_latency/{pace_name}: passthru / health p50 {:.2}x, p99 {:.2}x; passthru p99 {} 1 ms",
        p50 / h50,
        p99 / h99,
        if p99 < 1000.0 { "under" } else { "OVER" }
    );
}

fn webhook(c: &mut Criterion) {
    let addr = start_server();
    let mut group = c.benchmark_group("loopback_round_trip");
    group.throughput(Throughput::Elements(1));
    for (name, request) in requests() {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut buf = Vec::new();
        group.bench_function(name, |b| {
            b.iter(|| round_trip(&mut stream, &request, &mut buf))
        });
    }
    group.finish();
}

fn in_memory(c: &mut Criterion) {
    let config = bench_config();
    let limits = config.http.clone();
    let app = App::new(config, 3000).expect("bench app");
    handed_off(&app);
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let mut group = c.benchmark_group("in_memory");
    group.throughput(Throughput::Elements(1));
    for (name, request) in requests() {
        let mut out = Vec::with_capacity(4096);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                answer_in_memory(&app, black_box(&request), peer, &limits, &mut out);
                assert!(out.starts_with(b"HTTP/1.1 200"));
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn place_call(c: &mut Criterion) {
    let body =
        br#"{"to":"+919876543210","callLogId":"bench-call-1","timeLimit":"600","record":"true"}"#;
    let request = Request {
        method: "POST".into(),
        path: "/call".into(),
        query: String::new(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_vec(),
        framing: BodyFraming::Length(body.len()),
        peer: "127.0.0.1:40000".parse().unwrap(),
    };
    let mut group = c.benchmark_group("place_call");
    group.throughput(Throughput::Elements(1));
    group.bench_function("json_to_exotel_form", |b| {
        b.iter(|| {
            let mut params = Params::default();
            params.add_body(black_box(&request)).unwrap();
            let call = PlaceCall::from_params(&params).unwrap();
            let connect = ConnectCall {
                to: call.to,
                caller_id: "08047112233".into(),
                target: CallTarget::Applet {
                    app_id: "123456".into(),
                },
                call_log_id: call.call_log_id,
                options: call.options,
            };
            black_box(connect.form_body("exotelsid"))
        })
    });
    group.finish();
}

criterion_group!(benches, webhook, in_memory, passthru_latency, place_call);
criterion_main!(benches);
