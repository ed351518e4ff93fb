//! The surfaces an attacker reaches, tried from outside against the real binary: bodies that
//! the server must refuse from their head, credentials that must not be sent elsewhere, files
//! and their modes, Passthru requests about other calls, numbers in other spellings, answers
//! bounded whatever the upload. Each test names the class of attack it keeps shut.

#[path = "../support/mod.rs"]
mod support;

mod bodies;
mod credentials;
mod dates;
mod files;
mod numbers;
mod outage;
mod passthru;
mod relay_agents;
mod uploads;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{json_request, request, Conn, Server};

const TOKEN: &str = "operator-token-0123456789";
const BEARER: &str = "Bearer operator-token-0123456789";

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

/// The environment of a server whose default line is `fake`.
fn line_env(fake: &exotel_voicebot::sim::fake_exotel::FakeExotel) -> Vec<(&'static str, String)> {
    support::exotel_line_env(&fake.base_url())
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
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
