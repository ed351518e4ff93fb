//! HTTPS and `wss://` served by the binary itself (`TLS_CERT`/`TLS_KEY`), with certificates
//! made here: curl reaches `/health`, `simulate` completes calls over `wss://` on the main port
//! and on `MEDIA_PORT`, HTTP's limits and errors hold under TLS, and SIGHUP swaps the
//! certificate while a call goes on.

use crate::support;

use exotel_voicebot::sim::{run_call, CallPlan};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{make_pki, Pki, Server};

fn tls_server(pki: &Pki, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![
        ("TLS_CERT", pki.cert.to_str().unwrap()),
        ("TLS_KEY", pki.key.to_str().unwrap()),
    ];
    env.extend_from_slice(extra);
    Server::start(&env)
}

/// `curl --cacert ca https://localhost:port/health`: its exit code and body.
fn curl_health(port: u16, ca: &Path) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .arg(format!("https://localhost:{port}/health"))
        .output()
        .expect("curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn client_roots(ca: &Path) -> std::sync::Arc<rustls::ClientConfig> {
    exotel_voicebot::tls::client_config(&exotel_voicebot::tls::trust_anchors(ca).unwrap())
}

fn tls_plan(server: &Server, ca: &Path, ms: u32) -> CallPlan {
    let mut plan = CallPlan::new(
        server.addr,
        exotel_voicebot::media::audio::speech_like(8000, ms, 1),
    );
    plan.tls = Some(client_roots(ca));
    plan
}

#[test]
fn curl_reaches_health_over_https_and_the_media_url_is_wss() {
    let dir = support::temp_dir("tls");
    let pki = make_pki(&dir, "a");
    let server = tls_server(&pki, &[]);
    let (code, body) = curl_health(server.addr.port(), &pki.ca);
    assert_eq!(code, 0, "curl failed: {body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    server.wait_for_log(&["server.listening", "tls=true"]);

    // The webhook's answer points Exotel at wss:// on this server.
    let target = exotel_voicebot::sim::client::Server {
        addr: server.addr,
        tls: Some(client_roots(&pki.ca)),
    };
    let (status, answer) = target
        .fetch("GET", "/voicebot/connect?CallSid=tls-1", None)
        .unwrap();
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    let url = answer["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("wss://localhost:{}/media?", server.addr.port())),
        "{url}"
    );

    // A client that does not trust the certificate is refused by its own TLS, and the server
    // goes on.
    let stranger = make_pki(&dir, "stranger");
    let (code, _) = curl_health(server.addr.port(), &stranger.ca);
    assert_eq!(code, 60, "curl must reject a certificate from another CA");
    // Plain HTTP on the TLS port: closed, not answered, and the server goes on.
    let mut plain = std::net::TcpStream::connect(server.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain.write_all(b"GET /health HTTP/1.1\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let read = plain.read_to_end(&mut got);
    assert_closed(&read);
    assert!(
        !got.starts_with(b"HTTP/"),
        "plain HTTP was answered: {got:?}"
    );
    assert_eq!(curl_health(server.addr.port(), &pki.ca).0, 0);
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// The server closed the connection: the read ended (cleanly, by a reset, or without TLS's
/// close_notify), and did not merely time out on a connection left hanging.
fn assert_closed(read: &std::io::Result<usize>) {
    if let Err(e) = read {
        assert!(!is_timeout(e), "the connection was left open: {e}");
    }
}

#[test]
fn http_limits_and_errors_hold_under_tls() {
    let dir = support::temp_dir("tls");
    let pki = make_pki(&dir, "a");
    let server = tls_server(&pki, &[("HTTP_HEAD_TIMEOUT_MS", "500")]);
    let target = exotel_voicebot::sim::client::Server {
        addr: server.addr,
        tls: Some(client_roots(&pki.ca)),
    };
    // A malformed body: the JSON error, over TLS.
    let (status, body) = target.fetch("POST", "/call", Some("{not json")).unwrap();
    assert_eq!(status, 400);
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"], "bad_request", "{error}");

    // A head that never ends: 408 within the head timeout, trickled bytes or not.
    let mut socket = target.connect(server.addr).unwrap();
    socket
        .write_all(b"GET /health HTTP/1.1\r\nX-Slow: ")
        .unwrap();
    socket.flush().unwrap();
    let started = std::time::Instant::now();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(150));
        if socket
            .write_all(b"a")
            .and_then(|()| socket.flush())
            .is_err()
        {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(curl_health(server.addr.port(), &pki.ca).0, 0);
}

#[test]
fn simulate_completes_calls_over_wss_on_the_main_port_and_the_media_port() {
    let dir = support::temp_dir("tls");
    let pki = make_pki(&dir, "a");
    let media_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = tls_server(
        &pki,
        &[
            ("MEDIA_PORT", &media_port.to_string()),
            ("MEDIA_SECRET", "media-secret-1234"),
        ],
    );
    // The binary's own simulate, as the README shows it.
    let out = Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"))
        .args(["simulate", "--server", &server.addr.to_string(), "--tls-ca"])
        .arg(&pki.ca)
        .args(["--calls", "3", "--seconds", "2"])
        .env_clear()
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("calls: 3 run, 3 clean"), "{stdout}");

    // MEDIA_PORT speaks wss:// too.
    let mut plan = tls_plan(&server, &pki.ca, 1500);
    plan.connect = exotel_voicebot::sim::Connect::Url(format!(
        "wss://localhost:{media_port}/stream?secret=media-secret-1234"
    ));
    let report = run_call(&plan);
    assert!(report.is_clean(), "{report:#?}");
}

#[test]
fn sighup_swaps_the_certificate_while_a_call_goes_on() {
    let dir = support::temp_dir("tls");
    let first = make_pki(&dir, "first");
    let second = make_pki(&dir, "second");
    // The server reads the files at these paths, which are replaced under it.
    let (cert, key) = (dir.join("live-cert.pem"), dir.join("live-key.pem"));
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let live = Pki {
        ca: first.ca.clone(),
        cert: cert.clone(),
        key: key.clone(),
    };
    let server = tls_server(&live, &[]);
    let port = server.addr.port();
    assert_eq!(curl_health(port, &first.ca).0, 0);

    // A 6-second call over wss:// on the first certificate.
    let plan = tls_plan(&server, &first.ca, 6000);
    let call = std::thread::spawn(move || run_call(&plan));
    server.wait_for_log(&["media.connected"]);

    // A broken file: the reload fails and the certificate in use stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    server.signal("HUP");
    server.wait_for_log(&["tls.reload_failed", "TLS_CERT"]);
    assert_eq!(curl_health(port, &first.ca).0, 0);

    // The second certificate: new connections get it, the live call keeps its own.
    std::fs::copy(&second.cert, &cert).unwrap();
    std::fs::copy(&second.key, &key).unwrap();
    server.signal("HUP");
    server.wait_for_log(&["tls.reloaded"]);
    assert_eq!(curl_health(port, &second.ca).0, 0);
    assert_eq!(curl_health(port, &first.ca).0, 60);

    let report = call.join().unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert!(report.echoed > 0);
    // And a new call trusts only the second CA.
    let report = run_call(&tls_plan(&server, &second.ca, 1000));
    assert!(report.is_clean(), "{report:#?}");
}

#[test]
fn a_broken_pair_stops_the_start_naming_the_variable() {
    let dir = support::temp_dir("tls");
    let a = make_pki(&dir, "a");
    let b = make_pki(&dir, "b");
    let missing = dir.join("missing.pem");
    let cases: [(&[(&str, &Path)], &str); 4] = [
        (&[("TLS_CERT", &a.cert)], "TLS_KEY: is needed with TLS_CERT"),
        (&[("TLS_CERT", &missing), ("TLS_KEY", &a.key)], "TLS_CERT: "),
        (&[("TLS_CERT", &a.cert), ("TLS_KEY", &a.cert)], "TLS_KEY: "),
        (
            &[("TLS_CERT", &a.cert), ("TLS_KEY", &b.key)],
            "do not make a usable pair",
        ),
    ];
    for (env, expected) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"))
            .env_clear()
            .current_dir(&dir)
            .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn a_relayed_call_over_wss_both_ways() {
    // Exotel's socket under TLS is then pumped (both sockets wake the session), and the bot is
    // reached over wss:// too.
    let dir = support::temp_dir("tls");
    let pki = make_pki(&dir, "a");
    let bot_cert = std::fs::read_to_string(&pki.cert).unwrap();
    let bot_key = std::fs::read_to_string(&pki.key).unwrap();
    let bot = exotel_voicebot::sim::bot::TestBot::start_tls(
        support::RELAY_ECHO_DELAY_MS,
        &bot_cert,
        &bot_key,
    );
    let server = support::relay_server(
        &bot.url(),
        &[
            ("TLS_CERT", pki.cert.to_str().unwrap()),
            ("TLS_KEY", pki.key.to_str().unwrap()),
            ("BOT_CA_FILE", pki.ca.to_str().unwrap()),
        ],
    );
    let mut plan = support::relay_plan(&server, 8000, 2000);
    plan.tls = Some(client_roots(&pki.ca));
    let report = run_call(&plan);
    assert!(report.is_clean(), "{report:#?}");
    assert!(report.echoed > 0);
}

#[test]
fn over_http_max_connections_a_tls_client_is_closed_and_the_rest_go_on() {
    let dir = support::temp_dir("tls");
    let pki = make_pki(&dir, "a");
    let server = tls_server(&pki, &[("HTTP_MAX_CONNECTIONS", "2")]);
    let target = exotel_voicebot::sim::client::Server {
        addr: server.addr,
        tls: Some(client_roots(&pki.ca)),
    };
    // Two clients hold the two connections, each through its handshake and one request.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut socket = target.connect(server.addr).unwrap();
        socket
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut head = [0u8; 12];
        socket.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        held.push(socket);
    }
    // The third is closed without a handshake: no 503 can be written before TLS.
    let mut third = target.connect(server.addr).unwrap();
    let wrote = third
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .and_then(|()| third.flush());
    let mut answer = Vec::new();
    let read = third.read_to_end(&mut answer);
    if let Err(e) = &wrote {
        assert!(!is_timeout(e), "the write hung: {e}");
    } else {
        assert_closed(&read);
    }
    assert!(
        answer.is_empty(),
        "the third connection was served: {}",
        String::from_utf8_lossy(&answer)
    );
    // One held connection goes; a new client is served again.
    drop(held.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok((200, _)) = target.fetch("GET", "/health", None) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no connection came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `exotel-voicebot call` against `server`, with `extra` arguments; its exit code and stderr.
fn call_command(server: &Server, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"))
        .args(["call", "+919876543210", "--server"])
        .arg(format!("localhost:{}", server.addr.port()))
        .args(extra)
        .env_clear()
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_client_that_disagrees_about_tls_is_told_what_is_wrong() {
    let dir = support::temp_dir("tls");
    let pki = make_pki(&dir, "a");
    let server = tls_server(&pki, &[]);
    // Plain HTTP at the TLS port: not "is the server running?", but the flag to pass.
    let (code, stderr) = call_command(&server, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("pass --tls-ca"), "{stderr}");
    assert!(!stderr.contains("is the server running"), "{stderr}");

    // A certificate made as `openssl req -x509` makes it (a self-signed CA, used as the
    // server's own): curl takes it, rustls refuses it, and the error says why and what to do.
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_file, key_file) = (dir.join("x509-cert.pem"), dir.join("x509-key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let x509 = Server::start(&[
        ("TLS_CERT", cert_file.to_str().unwrap()),
        ("TLS_KEY", key_file.to_str().unwrap()),
    ]);
    let (code, stderr) = call_command(&x509, &["--tls-ca", cert_file.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("is a CA certificate"), "{stderr}");
    assert!(stderr.contains("CA:FALSE"), "{stderr}");
}

#[test]
fn the_guides_openssl_recipe_makes_a_certificate_our_clients_accept() {
    let guide =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/GUIDE.md")).unwrap();
    let recipe = guide
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("openssl req -x509"))
        .expect("the guide's openssl recipe")
        .to_owned();
    let dir = support::temp_dir("tls-recipe");
    let made = Command::new("sh")
        .args(["-c", &recipe])
        .current_dir(&dir)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let server = Server::start(&[
        ("TLS_CERT", cert.to_str().unwrap()),
        ("TLS_KEY", key.to_str().unwrap()),
    ]);
    let target = exotel_voicebot::sim::client::Server {
        addr: server.addr,
        tls: Some(client_roots(&cert)),
    };
    let (status, _) = target.fetch("GET", "/health", None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        curl_health(server.addr.port(), &cert).0,
        0,
        "curl takes it too"
    );
}
