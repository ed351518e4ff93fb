//! LOG_LEVEL and LOG_FORMAT on the real binary: JSON lines a log shipper can read, and levels
//! that drop what is below them.

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs the server with `env`, makes one request it logs (a webhook), stops it with SIGTERM,
/// and returns its stderr lines.
fn run_server(env: &[(&str, &str)]) -> Vec<String> {
    let dir = support::temp_dir("logs");
    // The port is chosen here: with LOG_LEVEL=warn the listening line is not written.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"))
        .current_dir(&dir)
        .env_clear()
        .env("PORT", port.to_string())
        .env("BIND", "127.0.0.1")
        // The webhook's call never opens its media: a drain waits for a call we answered until
        // the grace period ends, which a test of log lines need not wait out.
        .env("SHUTDOWN_GRACE_S", "1")
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = support::request(addr, "GET", "/voicebot/connect?CallSid=log-1", &[], b"");
    assert_eq!(r.status, 200);
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-s", "TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(child.wait().unwrap().success());
    reader.join().unwrap()
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let lines = run_server(&[("LOG_FORMAT", "json")]);
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for event in &events {
        assert!(event["ts"].as_str().unwrap().ends_with('Z'), "{event}");
        assert!(["INFO", "WARN", "ERROR"].contains(&event["level"].as_str().unwrap()));
    }
    let webhook = events
        .iter()
        .find(|e| e["event"] == "webhook.connect")
        .expect("the webhook's line");
    assert_eq!(webhook["callSid"], "log-1", "{webhook}");
    assert!(webhook["callLogId"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    assert!(events.iter().any(|e| e["event"] == "server.stopped"));
}

#[test]
fn log_level_drops_the_lines_below_it() {
    let all = run_server(&[]);
    assert!(all.iter().any(|l| l.contains(" INFO webhook.connect")));
    assert!(all.iter().any(|l| l.contains(" WARN config.")));

    let warn = run_server(&[("LOG_LEVEL", "warn")]);
    assert!(!warn.iter().any(|l| l.contains(" INFO ")), "{warn:#?}");
    assert!(
        warn.iter().any(|l| l.contains(" WARN config.")),
        "{warn:#?}"
    );

    let off = run_server(&[("LOG_LEVEL", "off")]);
    assert!(off.is_empty(), "{off:#?}");

    // A level that is not one is refused at start, naming the variable.
    let dir = support::temp_dir("logs");
    let out = Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"))
        .current_dir(&dir)
        .env_clear()
        .env("LOG_LEVEL", "loud")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LOG_LEVEL: \"loud\""));
}
