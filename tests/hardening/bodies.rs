//! Bodies before auth: uploads refused from their head, and the held-bytes cap.

use super::*;

fn upload_head(method: &str, path: &str, auth: Option<&str>, len: usize) -> Vec<u8> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\nContent-Length: {len}\r\n"
    );
    if let Some(auth) = auth {
        head.push_str(&format!("Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Writes `len` bytes of CSV-looking filler, stopping quietly when the server closes.
fn send_filler(stream: &mut TcpStream, len: usize) -> usize {
    let chunk = b"+919876543210\n".repeat(4096);
    let mut sent = 0;
    while sent < len {
        let n = chunk.len().min(len - sent);
        match stream.write(&chunk[..n]) {
            Ok(0) | Err(_) => break,
            Ok(written) => sent += written,
        }
    }
    sent
}

#[test]
fn uploads_without_the_token_are_refused_from_their_head_and_never_held() {
    const BODY: usize = 16 << 20;
    let server = Server::start(&[("API_TOKEN", TOKEN)]);
    server.assert_healthy();
    let (_, idle_rss) = peak_and_rss_kib(&server);
    let routes = [
        ("POST", "/dnc"),
        ("POST", "/campaigns"),
        ("PUT", "/agents/collector/greeting"),
    ];
    // Each of 40 connections announces 16 MiB and gets its 401 before sending a byte of it.
    let mut conns: Vec<Conn> = (0..40)
        .map(|i| {
            let (method, path) = routes[i % routes.len()];
            let mut conn = Conn::open(server.addr);
            conn.send(&upload_head(method, path, None, BODY));
            conn.read_response().assert_error(401, "unauthorized");
            conn
        })
        .collect();
    // Then all of them send their bodies at once: the server reads none of it into memory.
    let senders: Vec<_> = conns
        .iter_mut()
        .map(|c| c.stream.try_clone().unwrap())
        .map(|mut stream| std::thread::spawn(move || send_filler(&mut stream, BODY)))
        .collect();
    let sent: usize = senders.into_iter().map(|s| s.join().unwrap()).sum();
    let (peak, _) = peak_and_rss_kib(&server);
    eprintln!("40 unauthenticated 16 MiB uploads: idle RSS {idle_rss} KiB, peak {peak} KiB");
    assert!(
        peak <= idle_rss + 20 * 1024,
        "peak RSS {peak} KiB against {idle_rss} KiB idle, after {sent} bytes offered"
    );
    // The server closed every one of them.
    for conn in &mut conns {
        assert!(conn.closed_within(Duration::from_secs(10)), "left open");
    }
    server.assert_healthy();
}

#[test]
fn a_webhook_body_without_the_secret_is_refused_from_its_head() {
    let server = Server::start(&[("WEBHOOK_SECRET", "hook-secret-1")]);
    for path in [
        "/voicebot/connect",
        "/api/v1/exotel/status",
        "/api/v1/exotel/passthru",
    ] {
        let mut conn = Conn::open(server.addr);
        conn.send(&upload_head("POST", path, None, 60_000));
        conn.read_response().assert_error(401, "unauthorized");
    }
    // With the secret in the query, the same head is admitted and the body read.
    let r = request(
        server.addr,
        "POST",
        "/api/v1/exotel/status?secret=hook-secret-1",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"CallSid=CA-unknown&Status=completed",
    );
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn allowed_uploads_past_the_held_bytes_cap_are_told_to_retry() {
    const MIB: usize = 1 << 20;
    let server = Server::start(&[
        ("API_TOKEN", TOKEN),
        ("HTTP_MAX_UPLOAD_BYTES", "1048576"),
        ("HTTP_MAX_UPLOADS_HELD_BYTES", "1572864"),
    ]);
    // One upload of 1 MiB, half sent: it holds its whole announced length.
    let mut first = Conn::open(server.addr);
    first.send(&upload_head("POST", "/dnc", Some(BEARER), MIB));
    assert_eq!(send_filler(&mut first.stream, MIB / 2), MIB / 2);
    wait_for_held(&server, MIB);
    // A second of 1 MiB would pass 1.5 MiB: 503 with Retry-After, before its body.
    let mut second = Conn::open(server.addr);
    second.send(&upload_head("POST", "/dnc", Some(BEARER), MIB));
    let busy = second.read_response();
    busy.assert_error(503, "uploads_busy");
    let retry: u64 = busy
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(retry >= 1, "{busy:?}");
    // One that fits beside it (0.5 MiB, chunked or not) is taken.
    let small = b"+919800000001\n".repeat(20_000);
    let r = request(
        server.addr,
        "POST",
        "/dnc",
        &[("Authorization", BEARER), ("Content-Type", "text/csv")],
        &small,
    );
    assert_ne!(r.status, 503, "{r:?}");
    // The first finishes and is answered; its bytes come back, and the second's retry fits.
    let mut rest = b"+919800000002\n".repeat(MIB / 2 / 14 + 1);
    rest.truncate(MIB / 2);
    first.send(&rest);
    let answered = first.read_response();
    assert_ne!(answered.status, 503, "{answered:?}");
    let mut retried = b"+919800000003\n".repeat(MIB / 14 + 1);
    retried.truncate(MIB);
    let r = request(
        server.addr,
        "POST",
        "/dnc",
        &[("Authorization", BEARER), ("Content-Type", "text/csv")],
        &retried,
    );
    assert_ne!(r.status, 503, "{r:?}");
    // A chunked upload holds as it arrives: past the cap beside a held one, 503 too.
    wait_for_held(&server, 0);
    let mut held = Conn::open(server.addr);
    held.send(&upload_head("POST", "/dnc", Some(BEARER), MIB));
    send_filler(&mut held.stream, 1000);
    wait_for_held(&server, MIB);
    let mut chunked = Conn::open(server.addr);
    chunked.send(
        format!("POST /dnc HTTP/1.1\r\nHost: x\r\nAuthorization: {BEARER}\r\nTransfer-Encoding: chunked\r\n\r\n")
            .as_bytes(),
    );
    let piece = vec![b'1'; 64 * 1024];
    for _ in 0..16 {
        let mut frame = format!("{:x}\r\n", piece.len()).into_bytes();
        frame.extend_from_slice(&piece);
        frame.extend_from_slice(b"\r\n");
        if chunked.stream.write_all(&frame).is_err() {
            break;
        }
    }
    chunked
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    chunked
        .try_read_response()
        .expect("an answer to the chunked upload")
        .assert_error(503, "uploads_busy");
    drop(held);
    wait_for_held(&server, 0);
    server.assert_healthy();
}

/// Waits until `/metrics` says the server holds `bytes` of uploads.
fn wait_for_held(server: &Server, bytes: usize) {
    let held = || {
        let text = request(server.addr, "GET", "/metrics", &[], b"");
        let text = String::from_utf8(text.body).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("exotel_voicebot_http_uploads_held_bytes "))
            .and_then(|v| v.parse::<usize>().ok())
            .expect("the held-bytes gauge")
    };
    wait_until(
        &format!("{bytes} upload bytes held"),
        Duration::from_secs(10),
        || held() == bytes,
    );
}

#[test]
fn the_held_bytes_cap_below_one_upload_is_refused_by_name_at_start() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"))
        .arg("serve")
        .env_clear()
        .env("PORT", "0")
        .env("BIND", "127.0.0.1")
        .env("HTTP_MAX_UPLOAD_BYTES", "2097152")
        .env("HTTP_MAX_UPLOADS_HELD_BYTES", "1048576")
        .current_dir(support::temp_dir("held-cap"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A configuration error ends the process at once; one that serves is killed and fails.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the server started with a held-bytes cap below one upload");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("HTTP_MAX_UPLOADS_HELD_BYTES"), "{err}");
}
