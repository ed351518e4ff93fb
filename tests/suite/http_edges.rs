//! Design §5 row by row against the real binary: each bad input gets its status and a JSON
//! `{"error", "detail"}`, each limit is tried at its edge, and the server still answers after.

use crate::support;

use std::io::Write;
use std::time::{Duration, Instant};
use support::{request, request_bytes, Conn, Server};

fn health_with_headers(n: usize) -> Vec<u8> {
    let mut req = String::from("GET /health HTTP/1.1\r\n");
    for i in 0..n {
        req.push_str(&format!("X-Header-{i}: v\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

fn send(server: &Server, bytes: &[u8]) -> support::TestResponse {
    let mut conn = Conn::open(server.addr);
    conn.send(bytes);
    conn.read_response()
}

#[test]
fn header_count_limit_is_100() {
    let server = Server::start(&[]);
    // may_minihttp 0.1.11 gave up at 17; a request through a CDN easily carries that many.
    for n in [16, 17, 100] {
        assert_eq!(
            send(&server, &health_with_headers(n)).status,
            200,
            "{n} headers"
        );
    }
    let json = send(&server, &health_with_headers(101)).assert_error(431, "headers_too_large");
    assert!(json["detail"].as_str().unwrap().contains("100"));
    server.assert_healthy();
}

#[test]
fn head_size_limit_is_16_kib() {
    let server = Server::start(&[]);
    let head_of =
        |pad: usize| format!("GET /health HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "a".repeat(pad));
    let base = head_of(0).len();
    let exactly = head_of(16 * 1024 - base);
    assert_eq!(exactly.len(), 16 * 1024);
    assert_eq!(send(&server, exactly.as_bytes()).status, 200);
    let over = head_of(16 * 1024 - base + 1);
    send(&server, over.as_bytes()).assert_error(431, "headers_too_large");
    // Far over: the server stops reading at the limit instead of buffering it all.
    send(&server, head_of(200_000).as_bytes()).assert_error(431, "headers_too_large");
    server.assert_healthy();
}

#[test]
fn body_limit_is_64_kib_for_length_and_chunked_bodies() {
    let server = Server::start(&[]);
    let json_of_len = |len: usize| {
        let mut body = br#"{"to": "+919876543210"}"#.to_vec();
        body.resize(len, b' ');
        body
    };
    let ct = [("Content-Type", "application/json")];
    // Exactly 64 KiB reaches the handler (which then says Exotel is not configured).
    request(server.addr, "POST", "/call", &ct, &json_of_len(65_536))
        .assert_error(503, "not_configured");
    let json = request(server.addr, "POST", "/call", &ct, &json_of_len(65_537))
        .assert_error(413, "body_too_large");
    assert!(json["detail"].as_str().unwrap().contains("65536"));

    let chunked = |body: &[u8]| {
        let mut out = b"POST /call HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in body.chunks(10_000) {
            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    };
    send(&server, &chunked(&json_of_len(65_536))).assert_error(503, "not_configured");
    send(&server, &chunked(&json_of_len(65_537))).assert_error(413, "body_too_large");
    server.assert_healthy();
}

#[test]
fn chunked_bodies_are_decoded() {
    let server = Server::start(&[]);
    let body = br#"{"CallSid": "ch-1", "CustomField": "chunky"}"#;
    let mut req = b"POST /voicebot/connect HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in body.chunks(7) {
        req.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    let r = send(&server, &req);
    assert_eq!(r.status, 200);
    assert!(r.json()["url"]
        .as_str()
        .unwrap()
        .ends_with("callLogId=chunky"));
    let bad = b"POST /voicebot/connect HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    send(&server, bad).assert_error(400, "bad_request");
    let gzip = b"POST /voicebot/connect HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
    send(&server, gzip).assert_error(501, "unsupported_transfer_encoding");
    server.assert_healthy();
}

#[test]
fn bad_and_missing_content_length() {
    let server = Server::start(&[]);
    for bad in ["abc", "-1", "1e3", "12, 13", "99999999999999999999999"] {
        let req = format!("POST /call HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {bad}\r\n\r\n{{}}");
        send(&server, req.as_bytes()).assert_error(400, "bad_request");
    }
    let two = b"POST /call HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}";
    send(&server, two).assert_error(400, "bad_request");
    let both = b"POST /call HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}";
    send(&server, both).assert_error(400, "bad_request");
    // Repeated identical values are one length (RFC 9112 §6.3).
    let same = b"POST /voicebot/connect HTTP/1.1\r\nContent-Length: 13, 13\r\n\r\nCallSid=x&a=b";
    assert_eq!(send(&server, same).status, 200);
    // No length at all on /call: 411.
    let none = b"POST /call HTTP/1.1\r\nContent-Type: application/json\r\n\r\n";
    send(&server, none).assert_error(411, "length_required");
    server.assert_healthy();
}

#[test]
fn malformed_heads_are_400() {
    let server = Server::start(&[]);
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /health HTTP/9.9\r\n\r\n",
        b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
    ] {
        send(&server, bad).assert_error(400, "bad_request");
    }
    server.assert_healthy();
}

#[test]
fn routes_methods_and_media_types() {
    let server = Server::start(&[]);
    server.get("/nope").assert_error(404, "not_found");
    server.get("/call/").assert_error(404, "not_found");
    let r = request(server.addr, "PUT", "/health", &[], b"");
    r.assert_error(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = server.get("/call");
    r.assert_error(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("POST"));
    let r = request(server.addr, "PATCH", "/voicebot/connect", &[], b"");
    assert_eq!(r.header("allow"), Some("GET, POST"));
    request(
        server.addr,
        "POST",
        "/call",
        &[("Content-Type", "text/plain")],
        b"to=+919876543210",
    )
    .assert_error(415, "unsupported_media_type");
    // HEAD answers the GET's headers without a body.
    let mut conn = Conn::open(server.addr);
    conn.send(b"HEAD /health HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\n");
    let head = conn.read_response_head_only();
    assert_eq!(head.status, 200);
    assert_eq!(
        conn.read_response().status,
        200,
        "the next answer is not eaten by HEAD"
    );
    server.assert_healthy();
}

#[test]
fn keep_alive_serves_1000_requests_on_one_connection() {
    let server = Server::start(&[]);
    let mut conn = Conn::open(server.addr);
    for i in 0..1000 {
        let path = if i % 2 == 0 {
            "/health"
        } else {
            "/voicebot/connect?CallSid=k"
        };
        conn.send(&request_bytes("GET", path, &[], b""));
        let r = conn.read_response();
        assert_eq!(r.status, 200, "request {i}");
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start(&[]);
    let mut conn = Conn::open(server.addr);
    let mut batch = Vec::new();
    batch.extend(request_bytes("GET", "/health", &[], b""));
    batch.extend(request_bytes("GET", "/nope", &[], b""));
    batch.extend(request_bytes(
        "POST",
        "/voicebot/connect",
        &[("Content-Type", "application/json")],
        br#"{"CallSid": "p", "CustomField": "third"}"#,
    ));
    batch.extend(request_bytes("PUT", "/health", &[], b""));
    conn.send(&batch);
    assert_eq!(conn.read_response().status, 200);
    assert_eq!(conn.read_response().status, 404);
    let third = conn.read_response();
    assert!(third.json()["url"]
        .as_str()
        .unwrap()
        .ends_with("callLogId=third"));
    assert_eq!(conn.read_response().status, 405);
}

#[test]
fn http_1_0_and_connection_close_end_the_connection() {
    let server = Server::start(&[]);
    let mut conn = Conn::open(server.addr);
    conn.send(b"GET /health HTTP/1.0\r\n\r\n");
    let r = conn.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(conn.closed_within(Duration::from_secs(3)));
    let mut conn = Conn::open(server.addr);
    conn.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(
        conn.read_response().header("connection"),
        Some("keep-alive")
    );
    assert_eq!(conn.read_response().header("connection"), Some("close"));
    assert!(conn.closed_within(Duration::from_secs(3)));
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let server = Server::start(&[]);
    let mut conn = Conn::open(server.addr);
    let body = br#"{"CallSid": "e", "CustomField": "expect"}"#;
    conn.send(format!("POST /voicebot/connect HTTP/1.1\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    assert_eq!(conn.read_response().status, 100);
    conn.send(body);
    let r = conn.read_response();
    assert!(r.json()["url"]
        .as_str()
        .unwrap()
        .ends_with("callLogId=expect"));
}

#[test]
fn an_idle_connection_is_closed_without_an_answer() {
    let server = Server::start(&[("HTTP_IDLE_TIMEOUT_MS", "300")]);
    let mut silent = Conn::open(server.addr);
    let started = Instant::now();
    assert!(silent.closed_within(Duration::from_secs(5)));
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed too early: {:?}",
        started.elapsed()
    );
    // The same timer runs between keep-alive requests.
    let mut conn = Conn::open(server.addr);
    conn.send(&request_bytes("GET", "/health", &[], b""));
    assert_eq!(conn.read_response().status, 200);
    assert!(conn.closed_within(Duration::from_secs(5)));
    server.assert_healthy();
}

#[test]
fn a_client_sending_one_byte_a_second_gets_408_and_is_closed() {
    let server = Server::start(&[("HTTP_HEAD_TIMEOUT_MS", "2500")]);
    let req = request_bytes("GET", "/health", &[], b"");
    // Fast enough (whole head in about 1 s): answered.
    let mut quick = Conn::open(server.addr);
    for b in &req {
        quick.send(std::slice::from_ref(b));
        std::thread::sleep(Duration::from_millis(1000 / req.len() as u64));
    }
    assert_eq!(quick.read_response().status, 200);
    // One byte a second: 408 once 2.5 s have passed since the first byte, then closed.
    let mut slow = Conn::open(server.addr);
    let started = Instant::now();
    let mut answer = None;
    for b in &req {
        if slow.stream.write_all(std::slice::from_ref(b)).is_err() {
            break;
        }
        slow.stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        if let Some(r) = slow.try_read_response_nonfatal() {
            answer = Some(r);
            break;
        }
    }
    let r = answer.expect("an answer before the head was complete");
    r.assert_error(408, "request_timeout");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(2400) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    assert!(slow.closed_within(Duration::from_secs(5)));
    server.assert_healthy();
}

#[test]
fn connections_over_the_limit_get_503() {
    let server = Server::start(&[("HTTP_MAX_CONNECTIONS", "2")]);
    let mut a = Conn::open(server.addr);
    let mut b = Conn::open(server.addr);
    a.send(&request_bytes("GET", "/health", &[], b""));
    b.send(&request_bytes("GET", "/health", &[], b""));
    assert_eq!(a.read_response().status, 200);
    assert_eq!(b.read_response().status, 200);
    let mut third = Conn::open(server.addr);
    third.read_response().assert_error(503, "over_capacity");
    drop((a, b));
    server.wait_healthy();
}

#[test]
fn every_http_max_variable_holds_at_its_edge_when_set() {
    let server = Server::start(&[
        ("HTTP_MAX_HEADERS", "8"),
        ("HTTP_MAX_HEAD_BYTES", "2048"),
        ("HTTP_MAX_BODY_BYTES", "1024"),
        ("HTTP_MAX_UPLOAD_BYTES", "4096"),
        ("HTTP_MAX_UPLOADS_HELD_BYTES", "8192"),
    ]);
    // HTTP_MAX_HEADERS: 8 pass (the request line's Host is not added here), 9 do not.
    assert_eq!(send(&server, &health_with_headers(8)).status, 200);
    let json = send(&server, &health_with_headers(9)).assert_error(431, "headers_too_large");
    assert!(
        json["detail"]
            .as_str()
            .unwrap()
            .contains("HTTP_MAX_HEADERS"),
        "{json}"
    );
    // HTTP_MAX_HEAD_BYTES: exactly 2,048 bytes of head pass, one more does not.
    let head_of =
        |pad: usize| format!("GET /health HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "a".repeat(pad));
    let base = head_of(0).len();
    assert_eq!(send(&server, head_of(2048 - base).as_bytes()).status, 200);
    send(&server, head_of(2048 - base + 1).as_bytes()).assert_error(431, "headers_too_large");
    // HTTP_MAX_BODY_BYTES: 1,024 bytes reach the handler, 1,025 are refused with the limit.
    let ct = [("Content-Type", "application/json")];
    let json_of_len = |len: usize| {
        let mut body = br#"{"to": "+919876543210"}"#.to_vec();
        body.resize(len, b' ');
        body
    };
    request(server.addr, "POST", "/call", &ct, &json_of_len(1024))
        .assert_error(503, "not_configured");
    let json = request(server.addr, "POST", "/call", &ct, &json_of_len(1025))
        .assert_error(413, "body_too_large");
    assert!(json["detail"].as_str().unwrap().contains("1024"), "{json}");
    // HTTP_MAX_UPLOAD_BYTES: an upload route takes 4,096 bytes, not 4,097.
    let csv = [("Content-Type", "text/csv")];
    let numbers_of_len = |len: usize| {
        let mut body = b"+919876543210\n".repeat(len / 14 + 1);
        body.truncate(len);
        body
    };
    assert_eq!(
        request(server.addr, "POST", "/dnc", &csv, &numbers_of_len(4096)).status,
        200
    );
    let json = request(server.addr, "POST", "/dnc", &csv, &numbers_of_len(4097))
        .assert_error(413, "body_too_large");
    assert!(json["detail"].as_str().unwrap().contains("4096"), "{json}");
    server.assert_healthy();
}
