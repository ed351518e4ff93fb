//! Safe by default, on the real binary: a live call cannot be taken over or ended by someone
//! who only knows its callLogId, a proxy in front does not turn "loopback only" into
//! "everyone", `/metrics` can be closed, and a low open-file limit is raised (or respected)
//! so that clients past it are told 503 instead of hanging.

use crate::support;

use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{request, ws_connect, Server};
use tungstenite::Message;

#[test]
fn a_live_call_cannot_be_taken_over_through_the_webhook() {
    let server = Server::start(&[]);
    // The real call, streaming.
    let r = server.get("/voicebot/connect?CallSid=CA-real&CustomField=victim");
    assert_eq!(r.status, 200);
    let url = r.json()["url"].as_str().unwrap().to_owned();
    let mut ws = ws_connect(server.addr, &url[url.find("/media").unwrap()..]).unwrap();
    ws.send(Message::text(
        r#"{"event":"start","stream_sid":"S1","start":{"call_sid":"CA-real"}}"#,
    ))
    .unwrap();
    server.wait_for_log(&["media.start", "callLogId=victim"]);

    // Someone who knows the callLogId asks for its media under another CallSid.
    let stolen = server.get("/voicebot/connect?CallSid=CA-evil&CustomField=victim");
    stolen.assert_error(409, "call_sid_mismatch");
    let post = server.post_json(
        "/api/v1/exotel/voice/connect",
        r#"{"CallSid":"CA-evil","CustomField":"victim"}"#,
    );
    post.assert_error(409, "call_sid_mismatch");

    // The real call goes on: its audio still comes back.
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD.encode([7u8; 3200]);
    for _ in 0..6 {
        let media = format!(r#"{{"event":"media","media":{{"payload":"{payload}"}}}}"#);
        ws.send(Message::text(media)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut heard = false;
    while Instant::now() < deadline && !heard {
        if let Ok(Message::Text(t)) = ws.read() {
            heard = t.contains("\"media\"");
        }
    }
    assert!(heard, "the real caller still hears the bot");
    // Exotel reconnecting the same call (same CallSid) is still let in.
    assert_eq!(
        server
            .get("/voicebot/connect?CallSid=CA-real&CustomField=victim")
            .status,
        200
    );
    let refused = metric(&server, "exotel_voicebot_requests_refused_total");
    assert!(refused >= 2.0, "refusals are counted: {refused}");
}

fn metric(server: &Server, sample: &str) -> f64 {
    let text = String::from_utf8(server.get("/metrics").body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in /metrics"))
}

#[test]
fn a_made_up_status_callback_cannot_end_a_live_call() {
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-placed".into(),
    });
    let base = fake.base_url();
    let server = Server::start(&[
        ("EXOTEL_API_KEY", "k"),
        ("EXOTEL_API_TOKEN", "t"),
        ("EXOTEL_SID", "acme1"),
        ("EXOTEL_APP_ID", "4242"),
        ("EXOTEL_CALLER_ID", "08047112233"),
        ("EXOTEL_API_BASE_URL", &base),
    ]);
    let placed = server.post_json("/call", r#"{"to":"+919876543210","callLogId":"live-1"}"#);
    assert_eq!(placed.status, 200);
    let form = |sid: Option<&str>| {
        let mut body = "Status=completed&CustomField=live-1".to_owned();
        if let Some(sid) = sid {
            body.push_str(&format!("&CallSid={sid}"));
        }
        server.post_form("/api/v1/exotel/status", &body)
    };
    form(Some("CA-made-up")).assert_error(409, "call_sid_mismatch");
    form(None).assert_error(409, "call_sid_mismatch");
    assert_eq!(server.get("/health").json()["activeCalls"], 1, "still live");
    assert_eq!(server.get("/calls/live-1").json()["status"], "initiated");
    // Exotel's own callback carries the CallSid it gave: that one ends the call.
    assert_eq!(form(Some("CA-placed")).status, 200);
    assert_eq!(server.get("/health").json()["activeCalls"], 0);
    let deadline = Instant::now() + Duration::from_secs(3);
    while server.get("/calls/live-1").json()["status"] != "completed" {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn without_api_token_a_forwarded_request_is_refused_unless_its_proxy_is_trusted() {
    let server = Server::start(&[]);
    let body = br#"{"to":"+919876543210"}"#;
    let json = ("Content-Type", "application/json");
    for header in [
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Real-IP", "203.0.113.7"),
        ("Forwarded", "for=203.0.113.7;proto=https"),
    ] {
        let r = request(server.addr, "POST", "/call", &[json, header], body);
        let e = r.assert_error(401, "unauthorized");
        assert!(e["detail"].as_str().unwrap().contains("TRUST_PROXY"), "{e}");
        let r = request(server.addr, "GET", "/calls", &[header], b"");
        r.assert_error(401, "unauthorized");
    }
    // Straight from loopback, /calls is still open to the operator.
    assert_eq!(server.get("/calls").status, 200);

    // With the proxy named, its local clients get through and remote ones do not.
    let trusting = Server::start(&[("TRUST_PROXY", "127.0.0.1")]);
    let local = ("X-Forwarded-For", "127.0.0.1");
    let r = request(trusting.addr, "GET", "/calls", &[local], b"");
    assert_eq!(r.status, 200, "{r:?}");
    let remote = ("X-Forwarded-For", "198.51.100.4");
    let r = request(trusting.addr, "GET", "/calls", &[remote], b"");
    r.assert_error(401, "unauthorized");
    // And API_TOKEN opens it to anyone who has the token, proxy or not.
    let tokened = Server::start(&[("API_TOKEN", "s3cret")]);
    let r = request(
        tokened.addr,
        "GET",
        "/calls",
        &[remote, ("Authorization", "Bearer s3cret")],
        b"",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn metrics_token_closes_metrics() {
    let server = Server::start(&[("METRICS_TOKEN", "m3trics")]);
    server.get("/metrics").assert_error(401, "unauthorized");
    let r = request(
        server.addr,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer wrong")],
        b"",
    );
    r.assert_error(401, "unauthorized");
    let r = request(
        server.addr,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer m3trics")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("exotel_voicebot_calls_live"));
}

#[test]
fn a_low_open_file_limit_is_raised_to_the_hard_limit() {
    let server = Server::start_with_open_files(256, 4096, &[]);
    let line = server.wait_for_log(&["server.open_files"]);
    assert!(line.contains("limit=4096"), "{line}");
    server.assert_healthy();
}

#[test]
fn past_the_open_file_limit_clients_get_503_not_silence() {
    // 200 files in all: the server keeps 64 for itself and lets 136 connections in.
    let server = Server::start_with_open_files(200, 200, &[("HTTP_MAX_CONNECTIONS", "10000")]);
    let line = server.wait_for_log(&["config.max_connections_capped"]);
    assert!(line.contains("capped=136"), "{line}");
    // Hold 150 idle connections open (each has sent one byte of a request).
    let held: Vec<TcpStream> = (0..150)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(b"G").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Past the limit: an answer within a second, a 503, not a connection left hanging.
    let mut c = TcpStream::connect(server.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text:?}");
    drop(held);
    server.wait_healthy();
}

#[test]
fn a_media_token_is_bound_to_the_callsid_of_its_first_start() {
    let server = Server::start(&[]);
    let r = server.get("/voicebot/connect?CallSid=CA-one&CustomField=bound-1");
    let url = r.json()["url"].as_str().unwrap().to_owned();
    let path = &url[url.find("/media").unwrap()..];
    let mut first = ws_connect(server.addr, path).unwrap();
    first
        .send(Message::text(
            r#"{"event":"start","stream_sid":"S1","start":{"call_sid":"CA-one"}}"#,
        ))
        .unwrap();
    server.wait_for_log(&["media.start", "callLogId=bound-1"]);
    // The same token under another CallSid is not this call's stream: refused at its start.
    let mut other = ws_connect(server.addr, path).unwrap();
    other
        .send(Message::text(
            r#"{"event":"start","stream_sid":"S2","start":{"call_sid":"CA-two"}}"#,
        ))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let reason = loop {
        match other.read() {
            Ok(Message::Close(Some(frame))) => break frame.reason.to_string(),
            Ok(_) => assert!(Instant::now() < deadline, "not closed"),
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(reason, "call-sid-mismatch");
    server.wait_for_log(&["media.refused_start", "callLogId=bound-1", "CA-one"]);
    // The call's row was not touched by the refused stream.
    assert_eq!(server.get("/calls/bound-1").json()["status"], "in-progress");
}

/// The kernel's descriptor table of the server process (`FDSize` in /proc/PID/status).
fn descriptor_table_slots(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("FDSize:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no FDSize in {status}"))
}

#[test]
fn the_descriptor_table_is_grown_at_start_for_the_connections_allowed() {
    // Growing it during calls stalls the thread that crosses its size (lib.rs, descriptors.rs):
    // 64 kept + 2 per connection, within the open-file limit. The kernel rounds up to a power
    // of two; an idle server without this holds a 64-slot table.
    let server = Server::start_with_open_files(8192, 8192, &[("HTTP_MAX_CONNECTIONS", "3000")]);
    let line = server.wait_for_log(&["server.descriptor_table"]);
    assert!(line.contains("slots=6064"), "{line}");
    assert!(descriptor_table_slots(&server) >= 6064);
    server.assert_healthy();

    let small = Server::start_with_open_files(8192, 8192, &[("HTTP_MAX_CONNECTIONS", "100")]);
    let line = small.wait_for_log(&["server.descriptor_table"]);
    assert!(line.contains("slots=264"), "{line}");
    let slots = descriptor_table_slots(&small);
    assert!((264..6064).contains(&slots), "{slots}");

    // Never past the open-file limit: 1,024 files fit 960 connections, and the table 1,024.
    let capped = Server::start_with_open_files(1024, 1024, &[]);
    let line = capped.wait_for_log(&["server.descriptor_table"]);
    assert!(line.contains("slots=1024"), "{line}");
    assert_eq!(descriptor_table_slots(&capped), 1024);
}

#[test]
fn a_stranger_is_refused_before_being_told_a_method_or_route_is_wrong() {
    let server = Server::start(&[
        ("API_TOKEN", "guard-token"),
        ("WEBHOOK_SECRET", "guard-secret"),
        ("METRICS_TOKEN", "metrics-token"),
    ]);
    // Wrong methods and unknown routes under guarded paths: the guard answers first, so a
    // stranger learns nothing of what exists there.
    for (method, path) in [
        ("PUT", "/phones"),
        ("DELETE", "/call"),
        ("POST", "/calls/c-1"),
        ("GET", "/agents/a/b"),
        ("PATCH", "/dnc"),
        ("PUT", "/campaigns/x/launch"),
        ("DELETE", "/voicebot/connect"),
        ("PUT", "/api/v1/exotel/passthru"),
        ("POST", "/metrics"),
    ] {
        let r = request(server.addr, method, path, &[], b"");
        assert_eq!(r.status, 401, "{method} {path}: {r:?}");
    }
    // With the credential, the same requests get their 405 (with Allow) or 404 as before.
    let user = [("Authorization", "Bearer guard-token")];
    let r = request(server.addr, "PUT", "/phones", &user, b"");
    r.assert_error(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, POST"));
    request(server.addr, "GET", "/agents/a/b", &user, b"").assert_error(404, "not_found");
    request(
        server.addr,
        "DELETE",
        "/voicebot/connect?secret=guard-secret",
        &[],
        b"",
    )
    .assert_error(405, "method_not_allowed");
    let metrics = [("Authorization", "Bearer metrics-token")];
    request(server.addr, "POST", "/metrics", &metrics, b"").assert_error(405, "method_not_allowed");
    // Open paths keep their answers.
    request(server.addr, "POST", "/health", &[], b"").assert_error(405, "method_not_allowed");
    request(server.addr, "GET", "/nowhere", &[], b"").assert_error(404, "not_found");
}
