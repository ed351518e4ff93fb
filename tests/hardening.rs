//! The surfaces an attacker reaches, tried from outside against the real binary: bodies that
//! the server must refuse from their head, credentials that must not be sent elsewhere, files
//! and their modes, Passthru requests about other calls, numbers in other spellings, answers
//! bounded whatever the upload. Each test names the class of attack it keeps shut.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{json_request, request, Conn, Server};

const TOKEN: &str = "operator-token-0123456789";
const BEARER: &str = "Bearer operator-token-0123456789";

/// `VmHWM` (the process's peak resident memory) and `VmRSS`, in KiB.
fn peak_and_rss_kib(server: &Server) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .expect("the server's /proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc status"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

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

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[allow(dead_code)]
fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// The `Authorization` values a fake Exotel received.
fn authorizations(fake: &exotel_voicebot::sim::fake_exotel::FakeExotel) -> Vec<String> {
    fake.received()
        .into_iter()
        .filter_map(|r| r.headers.get("authorization").cloned())
        .collect()
}

#[test]
fn a_phones_token_goes_only_where_a_request_that_knew_it_pointed_it() {
    use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
    let accept = || Behaviour::Accept { sid: "CA-1".into() };
    let (home, elsewhere) = (FakeExotel::start(accept()), FakeExotel::start(accept()));
    let server = Server::start(&[]);
    let created = json_request(
        &server,
        "POST",
        "/phones",
        &format!(
            r#"{{"number": "08047112233", "apiKey": "k", "apiToken": "phone-token-secret-1", "sid": "acme", "apiBaseUrl": "{}"}}"#,
            home.base_url()
        ),
    );
    assert_eq!(created.status, 201, "{}", created.json());
    // Moving the phone's requests without its token: refused, naming the field and the rule.
    for body in [
        format!(r#"{{"apiBaseUrl": "{}"}}"#, elsewhere.base_url()),
        r#"{"subdomain": "api.elsewhere.example"}"#.to_owned(),
    ] {
        let refused = json_request(&server, "PATCH", "/phones/08047112233", &body)
            .assert_error(400, "bad_request");
        assert!(
            refused["detail"]
                .as_str()
                .unwrap()
                .contains("send apiToken"),
            "{refused}"
        );
    }
    let call = r#"{"to": "+919800000001", "from": "08047112233"}"#;
    assert_eq!(server.post_json("/call", call).status, 200);
    assert_eq!(authorizations(&elsewhere), Vec::<String>::new());
    assert_eq!(authorizations(&home).len(), 1);
    // With the token in the same request it moves, and that token goes there.
    let moved = json_request(
        &server,
        "PATCH",
        "/phones/08047112233",
        &format!(
            r#"{{"apiBaseUrl": "{}", "apiToken": "phone-token-secret-2"}}"#,
            elsewhere.base_url()
        ),
    );
    assert_eq!(moved.status, 200, "{}", moved.json());
    assert_eq!(server.post_json("/call", call).status, 200);
    let sent = authorizations(&elsewhere);
    assert_eq!(sent.len(), 1, "{sent:?}");
    use base64::Engine as _;
    let expected = base64::engine::general_purpose::STANDARD.encode("k:phone-token-secret-2");
    assert_eq!(sent[0], format!("Basic {expected}"));
}

#[test]
fn urls_a_secret_is_sent_to_are_parsed_strictly_and_refused_by_name() {
    let server = Server::start(&[]);
    let phone = |extra: &str| {
        json_request(
            &server,
            "POST",
            "/phones",
            &format!(
                r#"{{"number": "08047112233", "apiKey": "k", "apiToken": "t0k", "sid": "acme"{extra}}}"#
            ),
        )
    };
    for (extra, field) in [
        (
            r#", "apiBaseUrl": "https://evil.example/\r\nX-Injected: 1""#,
            "apiBaseUrl",
        ),
        (
            r#", "apiBaseUrl": "https://evil.example/x y""#,
            "apiBaseUrl",
        ),
        (r#", "apiBaseUrl": "http://203.0.113.7""#, "apiBaseUrl"),
        (
            r#", "apiBaseUrl": "https://user:pw@evil.example""#,
            "apiBaseUrl",
        ),
        (
            r#", "apiBaseUrl": "https://evil.example/?x=1""#,
            "apiBaseUrl",
        ),
        (r#", "subdomain": "evil.example/path""#, "subdomain"),
        (r#", "subdomain": "evil.example\t""#, "subdomain"),
    ] {
        let refused = phone(extra).assert_error(400, "bad_request");
        assert!(
            refused["detail"].as_str().unwrap().starts_with(field),
            "{extra}: {refused}"
        );
    }
    assert_eq!(
        phone(r#", "apiBaseUrl": "https://api.in.exotel.com""#).status,
        201
    );
    let agent = |body: &str| json_request(&server, "POST", "/agents", body);
    for url in [
        "ws://203.0.113.7/bot",
        "wss://bot.example/x?token=1",
        "wss://bot.example/\\r\\nX: 1",
        "https://bot.example/",
    ] {
        let body = format!(r#"{{"name": "a", "bot": "relay", "url": "{url}"}}"#);
        let refused = agent(&body).assert_error(400, "bad_request");
        assert!(
            refused["detail"].as_str().unwrap().starts_with("url "),
            "{url}: {refused}"
        );
    }
    let created = agent(
        r#"{"name": "a", "bot": "relay", "url": "wss://bot.example/talk", "headers": {"Authorization": "Bearer agent-secret"}}"#,
    );
    assert_eq!(created.status, 201, "{}", created.json());
    // The agent's headers follow its url only when the request sends them again.
    let refused = json_request(
        &server,
        "PATCH",
        "/agents/a",
        r#"{"url": "wss://elsewhere.example/talk"}"#,
    )
    .assert_error(400, "bad_request");
    assert!(
        refused["detail"].as_str().unwrap().contains("send headers"),
        "{refused}"
    );
    let moved = json_request(
        &server,
        "PATCH",
        "/agents/a",
        r#"{"url": "wss://elsewhere.example/talk", "headers": {"Authorization": "Bearer new"}}"#,
    );
    assert_eq!(moved.status, 200, "{}", moved.json());
}

/// Every file and directory under `root`, with its permission bits, links not followed.
fn modes_under(root: &std::path::Path) -> Vec<(std::path::PathBuf, u32, bool)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            let is_dir = meta.is_dir();
            out.push((entry.path(), meta.permissions().mode() & 0o777, is_dir));
            if is_dir {
                stack.push(entry.path());
            }
        }
    }
    out
}

/// A 16-bit PCM WAV of a quarter second of tone.
fn tone_wav(rate: u32) -> Vec<u8> {
    let samples = exotel_voicebot::media::audio::tone(rate, 440.0, 250, 8000);
    let mut out = Vec::new();
    exotel_voicebot::media::audio::write_wav(&mut out, rate, 1, &samples).unwrap();
    out
}

/// Runs the binary's `backup` under a shell's usual umask (022), in `dir`.
fn backup_to(dir: &std::path::Path, file: &str) -> std::process::Output {
    std::process::Command::new("sh")
        .args(["-c", "umask 022 && exec \"$0\" backup \"$1\""])
        .arg(env!("CARGO_BIN_EXE_exotel-voicebot"))
        .arg(file)
        .current_dir(dir)
        .env_clear()
        .output()
        .unwrap()
}

#[test]
fn every_file_the_binary_creates_is_its_users_alone_and_backups_too() {
    let dir = support::temp_dir("modes");
    // Under a shell's usual umask, as a service manager or a login shell would start it.
    let mut command = std::process::Command::new("sh");
    command.args([
        "-c",
        "umask 022 && exec \"$0\" serve",
        env!("CARGO_BIN_EXE_exotel-voicebot"),
    ]);
    let server = Server::start_command(command, dir.clone(), &[("RECORD", "on")]);
    let phone = json_request(
        &server,
        "POST",
        "/phones",
        r#"{"number": "08047112233", "apiKey": "k", "apiToken": "phone-token-on-disk", "sid": "acme"}"#,
    );
    assert_eq!(phone.status, 201, "{}", phone.json());
    let agent = json_request(
        &server,
        "POST",
        "/agents",
        r#"{"name": "greeter", "bot": "echo"}"#,
    );
    assert_eq!(agent.status, 201);
    let greeting = request(
        server.addr,
        "PUT",
        "/agents/greeter/greeting",
        &[("Content-Type", "audio/wav")],
        &tone_wav(8000),
    );
    assert_eq!(greeting.status, 200, "{}", greeting.json());
    for call in support::start_live_calls(&server, 1, 300) {
        call.join().unwrap();
    }
    let data = dir.join("data");
    wait_until("the call's recording", Duration::from_secs(10), || {
        std::fs::read_dir(data.join("recordings")).is_ok_and(|d| d.count() > 0)
    });
    // While the server runs, with the WAL holding the token.
    let seen = modes_under(&data);
    let names: Vec<String> = seen
        .iter()
        .map(|(p, _, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "calls.db",
        "calls.db-wal",
        "calls.db-shm",
        "recordings",
        "agents",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "no {expected} in {names:?}"
        );
    }
    for (path, mode, is_dir) in &seen {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:o}", path.display());
    }
    assert_eq!(modes_under(&dir.join("data")).len(), seen.len());
    let out = backup_to(&dir, "copy.db");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = modes_under(&dir)
        .into_iter()
        .find(|(p, _, _)| p.ends_with("copy.db"))
        .expect("the backup");
    assert_eq!(copy.1, 0o600, "the backup is {:o}", copy.1);
}

#[test]
fn a_backup_never_writes_through_a_link() {
    let server = Server::start(&[]);
    server.assert_healthy();
    let dir = server.dir.clone();
    let target = dir.join("elsewhere.db");
    std::os::unix::fs::symlink(&target, dir.join("dangling.db")).unwrap();
    let out = backup_to(&dir, "dangling.db");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the file exists (or is a link)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!target.exists(), "the backup wrote through the link");
    assert!(std::fs::symlink_metadata(dir.join("dangling.db"))
        .unwrap()
        .file_type()
        .is_symlink());
}

/// The environment of a server whose default line is `fake`.
fn line_env(fake: &exotel_voicebot::sim::fake_exotel::FakeExotel) -> Vec<(&'static str, String)> {
    support::exotel_line_env(&fake.base_url())
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Leaves ended rows `ids` in `dir`'s call log, made ten days old, each naming the recording
/// path given; answers the time ten days ago.
fn old_rows_naming(
    dir: &std::path::Path,
    rows: &[(&str, &std::path::Path)],
) -> std::time::SystemTime {
    use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-ret".into(),
    });
    let mut env = line_env(&fake);
    // The placed calls stay ringing: no grace for them at this shutdown.
    env.push(("SHUTDOWN_GRACE_S", "0".into()));
    {
        let server = Server::start_in(dir.to_path_buf(), &as_refs(&env));
        for (id, _) in rows {
            let placed = server.post_json(
                "/call",
                &format!(r#"{{"to": "+919876543210", "callLogId": "{id}"}}"#),
            );
            assert_eq!(placed.status, 200, "{placed:?}");
        }
        server.signal("TERM");
        let (code, _) = server.wait_exit(Duration::from_secs(10));
        assert_eq!(code, Some(0));
    }
    let ten_days_ago = std::time::SystemTime::now() - Duration::from_secs(10 * 86_400);
    let old_ms = ten_days_ago
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let db = rusqlite::Connection::open(dir.join("data/calls.db")).unwrap();
    for (id, path) in rows {
        let changed = db
            .execute(
                "UPDATE calls SET created_at = ?1, status = 'completed', recording_path = ?2 WHERE call_log_id = ?3",
                rusqlite::params![old_ms, path.to_str().unwrap(), id],
            )
            .unwrap();
        assert_eq!(changed, 1, "row {id}");
    }
    ten_days_ago
}

fn make_old(path: &std::path::Path, when: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

#[test]
fn retention_deletes_only_its_own_wav_files_never_through_a_link() {
    let dir = support::temp_dir("retention-links");
    let outside = dir.join("shared");
    std::fs::create_dir_all(&outside).unwrap();
    let victim = outside.join("victim.wav");
    let linked = outside.join("linked.wav");
    let recordings = dir.join("data/recordings");
    let link = recordings.join("link.wav");
    let ours = recordings.join("ours.wav");
    let old = old_rows_naming(
        &dir,
        &[
            ("points-outside", &victim),
            ("points-at-link", &link),
            ("ours", &ours),
        ],
    );
    std::fs::create_dir_all(&recordings).unwrap();
    for file in [&victim, &linked, &ours] {
        std::fs::write(file, b"RIFF").unwrap();
        make_old(file, old);
    }
    std::os::unix::fs::symlink(&linked, &link).unwrap();
    let notes = recordings.join("notes.txt");
    std::fs::write(&notes, b"kept").unwrap();
    make_old(&notes, old);
    let server = Server::start_in(dir.clone(), &[("RETENTION_DAYS", "7")]);
    server.wait_for_log(&["retention.pruned", "calls=3", "recordings=1"]);
    server.wait_for_log(&["retention.left_alone", "files=2"]);
    assert!(!ours.exists(), "its own recording goes");
    assert!(
        victim.exists() && linked.exists(),
        "files outside DATA_DIR stay"
    );
    assert!(
        std::fs::symlink_metadata(&link).is_ok(),
        "a link is not followed or removed"
    );
    assert!(notes.exists(), "only *.wav files are recordings");
}

#[test]
fn retention_never_follows_a_linked_recordings_directory() {
    let dir = support::temp_dir("retention-linked-dir");
    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let theirs = shared.join("theirs.wav");
    let named = shared.join("named.wav");
    let old = old_rows_naming(&dir, &[("named", &dir.join("data/recordings/named.wav"))]);
    for file in [&theirs, &named] {
        std::fs::write(file, b"RIFF").unwrap();
        make_old(file, old);
    }
    let _ = std::fs::remove_dir_all(dir.join("data/recordings"));
    std::os::unix::fs::symlink(&shared, dir.join("data/recordings")).unwrap();
    let server = Server::start_in(dir.clone(), &[("RETENTION_DAYS", "7")]);
    server.wait_for_log(&["retention.left_alone", "is a link"]);
    server.wait_for_log(&["retention.pruned", "calls=1", "recordings=0"]);
    assert!(
        theirs.exists() && named.exists(),
        "nothing deleted through the link"
    );
}

const PASSTHRU: &str = "/api/v1/exotel/passthru";

/// A Passthru naming `call_log_id` with `call_sid`, carrying a stream end and a recording URL.
fn passthru(
    server: &Server,
    call_log_id: &str,
    call_sid: &str,
    stream_status: &str,
    recording: &str,
) -> support::TestResponse {
    let mut recording_encoded = String::new();
    exotel_voicebot::http::form::encode_into(&mut recording_encoded, recording);
    let query = format!(
        "CallSid={call_sid}&CustomField={call_log_id}&Stream%5BStatus%5D={stream_status}&Stream%5BDuration%5D=99&Stream%5BRecordingUrl%5D={recording_encoded}&Stream%5BDisconnectedBy%5D=user"
    );
    request(server.addr, "GET", &format!("{PASSTHRU}?{query}"), &[], b"")
}

#[test]
fn a_passthru_under_another_calls_id_learns_nothing_and_writes_nothing() {
    use exotel_voicebot::sim::{run_call, CallPlan};
    let server = Server::start(&[]);
    // A call the echo bot hands off (its caller pressed 0).
    let mut plan = CallPlan::new(
        server.addr,
        exotel_voicebot::media::audio::speech_like(8000, 1000, 3),
    );
    plan.dtmf = "0".into();
    plan.check_echo = false;
    plan.tail_ms = 1500;
    let report = run_call(&plan);
    let id = report.call_log_id.clone();
    // A stranger names it with a made-up CallSid: "no handoff", no reason, nothing on the row.
    let stranger = passthru(
        &server,
        &id,
        "CA-made-up",
        "failed",
        "https://phish.example/rec.mp3",
    );
    assert_eq!(stranger.status, 302, "{stranger:?}");
    assert_eq!(
        stranger.json(),
        serde_json::json!({"handoff": false, "reason": null})
    );
    let location = stranger.header("location").unwrap_or_default().to_owned();
    assert!(!location.contains('?'), "{location}");
    server.wait_for_log(&["passthru.call_sid_mismatch", &id, "CA-made-up"]);
    // Exotel, with the call's own CallSid, is answered and recorded.
    let exotel = passthru(
        &server,
        &id,
        &report.call_sid,
        "failed",
        "http://plain.example/rec.mp3",
    );
    assert_eq!(exotel.status, 200, "{exotel:?}");
    assert_eq!(exotel.json()["reason"], "caller-asked");
    let row = wait_for_row(&server, &id, |r| !r["handoffAnswer"].is_null());
    assert_eq!(row["streamStatus"], "failed", "{row}");
    assert_eq!(row["disconnectedBy"], "user", "{row}");
    assert!(
        row["exotelRecordingUrl"].is_null(),
        "only https:// is kept: {row}"
    );
    // The recording URL is written once, from a request that names the call rightly.
    let first = passthru(
        &server,
        &id,
        &report.call_sid,
        "failed",
        "https://recordings.example/1.mp3",
    );
    assert_eq!(first.status, 200);
    let row = wait_for_row(&server, &id, |r| !r["exotelRecordingUrl"].is_null());
    assert_eq!(
        row["exotelRecordingUrl"],
        "https://recordings.example/1.mp3"
    );
    let status = format!(
        "CallSid={}&CustomField={id}&Status=completed&RecordingUrl=https%3A%2F%2Fother.example%2F3.mp3",
        report.call_sid
    );
    assert_eq!(
        server.post_form("/api/v1/exotel/status", &status).status,
        200
    );
    // The call log applies events in order: once this last one shows, both were applied, and
    // neither changed the URL.
    let last = passthru(
        &server,
        &id,
        &report.call_sid,
        "completed",
        "https://recordings.example/2.mp3",
    );
    assert_eq!(last.status, 200);
    let row = wait_for_row(&server, &id, |r| r["streamStatus"] == "completed");
    assert_eq!(
        row["exotelRecordingUrl"], "https://recordings.example/1.mp3",
        "{row}"
    );
}

/// The call's row once `done` holds (the call log writes behind the answers).
fn wait_for_row(
    server: &Server,
    id: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut row = serde_json::Value::Null;
    wait_until(&format!("row {id}"), Duration::from_secs(5), || {
        let r = server.get(&format!("/calls/{id}"));
        row = if r.status == 200 {
            r.json()
        } else {
            serde_json::Value::Null
        };
        r.status == 200 && done(&row)
    });
    row
}

#[test]
fn a_passthru_for_a_call_not_in_memory_writes_only_with_the_calls_own_call_sid() {
    use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-placed".into(),
    });
    let env = line_env(&fake);
    let server = Server::start(&as_refs(&env));
    let placed = server.post_json(
        "/call",
        r#"{"to": "+919876543210", "callLogId": "placed-1"}"#,
    );
    assert_eq!(placed.status, 200, "{placed:?}");
    wait_for_row(&server, "placed-1", |r| r["callSid"] == "CA-placed");
    let stranger = passthru(
        &server,
        "placed-1",
        "CA-made-up",
        "failed",
        "https://phish.example/r.mp3",
    );
    assert_eq!(
        stranger.json(),
        serde_json::json!({"handoff": false, "reason": null})
    );
    server.wait_for_log(&["calllog.passthru_call_sid_mismatch", "placed-1"]);
    let exotel = passthru(
        &server,
        "placed-1",
        "CA-placed",
        "completed",
        "https://recordings.example/ok.mp3",
    );
    assert_eq!(exotel.json()["handoff"], false);
    let row = wait_for_row(&server, "placed-1", |r| r["streamStatus"] == "completed");
    assert_eq!(
        row["exotelRecordingUrl"], "https://recordings.example/ok.mp3",
        "{row}"
    );
}

/// Spellings of +91 98765 43210 as people write them: with or without +91 or 0091, a
/// trunk 0 before or after the country code, and separators anywhere. Deterministic.
fn spellings_of_one_number(n: usize) -> Vec<String> {
    let national = "9876543210";
    let prefixes = [
        "+91", "+91 0", "+910", "0091", "0091 0", "0", "", "+91 (0)", "(0)",
    ];
    let separators = ["", " ", "-", ".", " - "];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    (0..n)
        .map(|_| {
            let mut out = prefixes[next(prefixes.len())].to_owned();
            out.push_str(separators[next(separators.len())]);
            for (i, digit) in national.chars().enumerate() {
                if i > 0 && next(4) == 0 {
                    out.push_str(separators[next(separators.len())]);
                }
                out.push(digit);
            }
            out
        })
        .collect()
}

#[test]
fn a_listed_number_is_refused_in_every_spelling_by_call_dnc_and_campaigns() {
    use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-dnc".into(),
    });
    let mut env = line_env(&fake);
    env.push(("CAMPAIGN_CLOCK_START", "2026-12-07T12:00:00+05:30".into()));
    let server = Server::start(&as_refs(&env));
    let spellings = spellings_of_one_number(200);
    // Listed in one spelling (with the trunk 0 after +91, the one that used to slip through).
    let listed = json_request(
        &server,
        "POST",
        "/dnc",
        r#"{"numbers": ["+91 0 98765 43210"]}"#,
    );
    assert_eq!(listed.json()["added"], 1, "{}", listed.json());
    // Every other spelling is the same entry on the list...
    let body = serde_json::json!({ "numbers": spellings }).to_string();
    let again = json_request(&server, "POST", "/dnc", &body);
    assert_eq!(again.json()["added"], 0, "{}", again.json());
    assert_eq!(
        again.json()["alreadyListed"],
        spellings.len(),
        "{}",
        again.json()
    );
    assert_eq!(
        server.get("/dnc").json()["numbers"],
        serde_json::json!(["+919876543210"])
    );
    // ...and refused by /call, before Exotel hears of it.
    for spelling in &spellings {
        let body = serde_json::json!({ "to": spelling }).to_string();
        let r = server.post_json("/call", &body);
        r.assert_error(403, "do_not_call");
    }
    // A campaign's CSV: one contact (the rest are the same number), skipped at dial time.
    let mut csv = String::from("to\n");
    for spelling in &spellings {
        csv.push_str(&format!("\"{spelling}\"\n"));
    }
    let created = request(
        server.addr,
        "POST",
        "/campaigns?name=spellings&days=mon,tue,wed,thu,fri,sat,sun",
        &[("Content-Type", "text/csv")],
        csv.as_bytes(),
    );
    assert_eq!(created.status, 201, "{}", created.json());
    let created = created.json();
    assert_eq!(created["total"], 1, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let mut shown = serde_json::Value::Null;
    wait_until("the campaign completes", Duration::from_secs(20), || {
        shown = server.get(&format!("/campaigns/{id}")).json();
        shown["status"] == "completed"
    });
    assert_eq!(shown["outcomes"]["skipped-dnc"], 1, "{shown}");
    assert_eq!(fake.received().len(), 0, "Exotel heard of a listed number");
    // Taken off in yet another spelling.
    let removed = request(server.addr, "DELETE", "/dnc/0091-98765-43210", &[], b"");
    assert_eq!(removed.status, 200, "{removed:?}");
    assert_eq!(server.get("/dnc").json()["count"], 0);
}

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn a_caller_who_hangs_up_during_the_outage_tone_leaves_the_outage_on_the_row() {
    use tungstenite::Message;
    let port = closed_port();
    let server = support::relay_server(&format!("ws://127.0.0.1:{port}/bot"), &[]);
    let r = server.get("/voicebot/connect?CallSid=CA-out&CustomField=outage-1");
    let url = r.json()["url"].as_str().unwrap().to_owned();
    let mut ws = support::ws_connect(server.addr, &url[url.find("/media").unwrap()..]).unwrap();
    ws.send(Message::text(r#"{"event":"connected"}"#)).unwrap();
    ws.send(Message::text(
        r#"{"event":"start","sequence_number":"1","stream_sid":"S-out","start":{"stream_sid":"S-out","call_sid":"CA-out","custom_parameters":{},"media_format":{"encoding":"base64","sample_rate":"8000"}}}"#,
    ))
    .unwrap();
    // The tone's first chunk: the bot could not be reached and the fallback is speaking.
    loop {
        let Message::Text(text) = ws.read().expect("the tone") else {
            continue;
        };
        if text.contains("\"media\"") {
            break;
        }
    }
    // The caller hangs up before the tone ends.
    ws.send(Message::text(
        r#"{"event":"stop","stop":{"call_sid":"CA-out","reason":"callended"}}"#,
    ))
    .unwrap();
    let _ = ws.close(None);
    while ws.read().is_ok() {}
    let row = wait_for_row(&server, "outage-1", |r| r["status"] != "in-progress");
    assert_eq!(row["status"], "bot-unavailable", "{row}");
}

#[test]
fn a_relay_agent_may_not_point_at_the_server_itself_or_outside_the_allow_list() {
    let server = Server::start(&[]);
    let own = server.addr.port();
    for url in [
        format!("ws://127.0.0.1:{own}/media"),
        format!("ws://localhost:{own}/"),
        format!("ws://[::1]:{own}/x"),
    ] {
        let body = format!(r#"{{"name": "loop", "bot": "relay", "url": "{url}"}}"#);
        let refused =
            json_request(&server, "POST", "/agents", &body).assert_error(400, "bad_request");
        assert!(
            refused["detail"]
                .as_str()
                .unwrap()
                .contains("this server itself"),
            "{url}: {refused}"
        );
    }
    // Another port on loopback is another server: allowed.
    let other = format!(
        r#"{{"name": "ok", "bot": "relay", "url": "ws://127.0.0.1:{}/bot"}}"#,
        closed_port()
    );
    assert_eq!(json_request(&server, "POST", "/agents", &other).status, 201);
    // With RELAY_ALLOWED_HOSTS, only those hosts.
    let listed = Server::start(&[("RELAY_ALLOWED_HOSTS", "bots.example.com, 127.0.0.1")]);
    let refused = json_request(
        &listed,
        "POST",
        "/agents",
        r#"{"name": "x", "bot": "relay", "url": "wss://elsewhere.example/bot"}"#,
    )
    .assert_error(400, "bad_request");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("RELAY_ALLOWED_HOSTS"),
        "{refused}"
    );
    let allowed = json_request(
        &listed,
        "POST",
        "/agents",
        r#"{"name": "x", "bot": "relay", "url": "wss://bots.example.com/bot"}"#,
    );
    assert_eq!(allowed.status, 201, "{}", allowed.json());
}

#[test]
fn a_campaign_starting_on_a_day_its_month_lacks_is_refused() {
    let server = Server::start(&[]);
    for date in [
        "2026-02-30T10:00:00+05:30",
        "2026-04-31T10:00:00+05:30",
        "2025-02-29T10:00:00Z",
    ] {
        let body = format!(r#"{{"contacts": ["+919876543211"], "startAt": "{date}"}}"#);
        let refused = server
            .post_json("/campaigns", &body)
            .assert_error(400, "bad_request");
        assert!(
            refused["detail"]
                .as_str()
                .unwrap()
                .contains("does not have"),
            "{date}: {refused}"
        );
    }
    let leap = server.post_json(
        "/campaigns",
        r#"{"contacts": ["+919876543211"], "startAt": "2028-02-29T10:00:00+05:30"}"#,
    );
    assert_eq!(leap.status, 201, "{}", leap.json());
}

/// A CSV of about `bytes` bytes: a `to` header, then `row(i)` per line.
fn csv_of(bytes: usize, row: impl Fn(usize) -> String) -> Vec<u8> {
    let mut out = b"to\n".to_vec();
    let mut i = 0;
    while out.len() < bytes {
        out.extend_from_slice(row(i).as_bytes());
        out.push(b'\n');
        i += 1;
    }
    out
}

/// Posts `body` with the operator's token and answers the answer and the server's peak RSS
/// growth over its RSS before, in KiB.
fn upload_peak(server: &Server, path: &str, body: &[u8]) -> (support::TestResponse, u64) {
    let (_, before) = peak_and_rss_kib(server);
    let r = request(
        server.addr,
        "POST",
        path,
        &[("Content-Type", "text/csv"), ("Authorization", BEARER)],
        body,
    );
    let (peak, _) = peak_and_rss_kib(server);
    (r, peak.saturating_sub(before))
}

#[test]
fn one_upload_gives_a_bounded_answer_and_a_bounded_peak() {
    const SIZE: usize = 16 << 20;
    let repeated_bad = csv_of(SIZE - 64, |_| "12345".to_owned());
    let repeated_good = csv_of(SIZE - 64, |_| "+919876543210".to_owned());
    let distinct = csv_of(SIZE - 64, |i| format!("+9198{:08}", i));
    let mut report = Vec::new();
    for (name, body) in [
        ("repeated-invalid", &repeated_bad),
        ("repeated", &repeated_good),
        ("distinct", &distinct),
    ] {
        for path in [
            "/dnc",
            "/campaigns?name=big&days=mon,tue,wed,thu,fri,sat,sun",
        ] {
            // A fresh server each time, so that one upload's peak is its own.
            let server = Server::start(&[("API_TOKEN", TOKEN)]);
            server.assert_healthy();
            let (r, grew_kib) = upload_peak(&server, path, body);
            assert!(
                r.status == 200 || r.status == 201 || r.status == 400,
                "{path} {name}: {r:?}"
            );
            assert!(
                r.body.len() < 64 * 1024,
                "{path} {name}: a {} byte answer",
                r.body.len()
            );
            let json = r.json();
            let summary = if path == "/dnc" {
                &json["invalidSummary"]
            } else {
                &json["rejectedSummary"]
            };
            let listed = if path == "/dnc" {
                &json["invalid"]
            } else {
                &json["rejected"]
            };
            assert!(listed.as_array().unwrap().len() <= 100, "{json}");
            assert_eq!(
                summary["listed"],
                listed.as_array().unwrap().len(),
                "{summary}"
            );
            if name == "repeated-invalid" {
                let rows = body.iter().filter(|b| **b == b'\n').count() - 1;
                assert_eq!(summary["count"], rows, "{path}: {summary}");
                assert_eq!(summary["byReason"]["number"], rows, "{path}: {summary}");
            }
            report.push(format!("{path} {name}: peak +{} MiB", grew_kib / 1024));
            // A multiple of the upload's size: the body itself, and for distinct numbers the
            // list kept (do-not-call, as 8-byte keys), or every contact held until the
            // campaign's one transaction commits (docs/ARCHITECTURE.md says why).
            let times = if path == "/dnc" { 4 } else { 12 };
            assert!(grew_kib < times * (SIZE as u64 / 1024), "{report:?}");
        }
    }
    eprintln!("{}", report.join("\n"));
}
