//! The command line: help, version, configuration errors, and `call` through the same client.

use crate::support;

use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
use std::process::Command;

fn binary(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"));
    c.current_dir(dir).env_clear();
    c
}

#[test]
fn help_and_version() {
    let dir = support::temp_dir("cli");
    let out = binary(&dir).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("exotel-voicebot {}", env!("CARGO_PKG_VERSION"))
    );
    let out = binary(&dir).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("call <to>"));
    let out = binary(&dir).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_wrong_value_stops_the_start_with_one_line_naming_the_variable() {
    let dir = support::temp_dir("cli");
    for (var, value) in [
        ("PORT", "abc"),
        ("WEBHOOK_BASE_URL", "voice.example.com"),
        ("SAMPLE_RATE", "44100"),
        ("EXOTEL_TIMEOUT_MS", "ten"),
    ] {
        let out = binary(&dir).env(var, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&format!("{var}: ")), "{stderr}");
        assert!(stderr.contains(value), "{stderr}");
    }
}

#[test]
fn a_taken_port_is_a_clear_failure() {
    let dir = support::temp_dir("cli");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = binary(&dir)
        .env("BIND", "127.0.0.1")
        .env("PORT", &port)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot serve"), "{stderr}");
    // The message names the variable and the port, so the fix is plain.
    assert!(stderr.contains(&format!("PORT={port}")), "{stderr}");
    assert!(stderr.contains("set PORT to a free port"), "{stderr}");
}

#[test]
fn a_port_another_exotel_voicebot_serves_is_taken_too() {
    // may binds with SO_REUSEPORT; two servers on one port would share its connections.
    let first = support::Server::start(&[("BIND", "127.0.0.1")]);
    let dir = support::temp_dir("cli");
    let mut second = binary(&dir)
        .env("BIND", "127.0.0.1")
        .env("PORT", first.addr.port().to_string())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second server started on the port the first one serves");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("cannot serve"), "{stderr}");
    assert_eq!(first.get("/health").status, 200);
}

/// The variables of a server that places calls through `fake` (applet flow unless `stream`).
fn exotel_env(fake: &FakeExotel, stream: bool) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("EXOTEL_API_KEY", "k".to_string()),
        ("EXOTEL_API_TOKEN", "t".into()),
        ("EXOTEL_SID", "acme".into()),
        ("EXOTEL_CALLER_ID", "0801".into()),
        ("EXOTEL_API_BASE_URL", fake.base_url()),
    ];
    if !stream {
        env.push(("EXOTEL_APP_ID", "77".into()));
    }
    env
}

fn call_cli(
    dir: &std::path::Path,
    server: &support::Server,
    args: &[&str],
) -> std::process::Output {
    binary(dir)
        .arg("call")
        .args(args)
        .args(["--server", &server.addr.to_string()])
        .output()
        .unwrap()
}

#[test]
fn call_goes_through_the_running_server_in_both_flows_and_is_logged() {
    for stream in [false, true] {
        let fake = FakeExotel::start(Behaviour::Accept {
            sid: "cli-sid".into(),
        });
        let env = exotel_env(&fake, stream);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = support::Server::start(&env);
        let dir = support::temp_dir("cli");
        let out = call_cli(&dir, &server, &["+919876543210", "--call-log-id", "cli-1"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(answer["callLogId"], "cli-1");
        assert_eq!(answer["callSid"], "cli-sid");
        // Through POST /call: the fake Exotel got the call with our id, and the log has its row.
        let got = fake.received();
        let fields = support::form_pairs(&got[0].body);
        assert!(
            fields.contains(&("CustomField".into(), "cli-1".into())),
            "{fields:?}"
        );
        let has_stream_url = fields.iter().any(|(k, _)| k == "StreamUrl");
        assert_eq!(has_stream_url, stream, "{fields:?}");
        let row = server.get("/calls/cli-1").json();
        assert_eq!(row["callSid"], "cli-sid", "{row}");

        // A used callLogId is refused by the server, exit 2, with its answer on stdout.
        let again = call_cli(&dir, &server, &["+919876543210", "--call-log-id", "cli-1"]);
        assert_eq!(again.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&again.stderr).contains("answered 409"));
        assert!(String::from_utf8_lossy(&again.stdout).contains("cli-1"));

        // A bad number never reaches Exotel.
        let before = fake.received().len();
        let bad = call_cli(&dir, &server, &["12"]);
        assert_eq!(bad.status.code(), Some(2));
        assert_eq!(fake.received().len(), before);
    }
}

#[test]
fn call_without_a_server_says_so() {
    let dir = support::temp_dir("cli");
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let out = binary(&dir)
        .args(["call", "+919876543210", "--server", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is the server running?"), "{stderr}");
}

#[test]
fn every_command_prints_its_own_help_on_stdout() {
    let dir = support::temp_dir("cli");
    for command in [
        "serve",
        "call",
        "campaign",
        "simulate",
        "test-bot",
        "fake-exotel",
        "backup",
    ] {
        for flag in ["--help", "-h"] {
            let out = binary(&dir).args([command, flag]).output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{command} {flag}");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.starts_with(&format!(
                    "usage: exotel-voicebot {}",
                    if command == "serve" {
                        "[serve]"
                    } else {
                        command
                    }
                )),
                "{command} {flag}: {stdout}"
            );
            assert!(out.stderr.is_empty(), "{command} {flag}");
        }
    }
}

#[test]
fn the_fake_exotel_and_simulates_own_want_different_ports_and_say_what_the_server_needs() {
    let dir = support::temp_dir("cli");
    let help = |command: &str| {
        let out = binary(&dir).args([command, "--help"]).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let fake = help("fake-exotel");
    for variable in [
        "EXOTEL_API_BASE_URL",
        "EXOTEL_API_KEY",
        "EXOTEL_API_TOKEN",
        "EXOTEL_SID",
        "EXOTEL_CALLER_ID",
    ] {
        assert!(
            fake.contains(variable),
            "fake-exotel --help omits {variable}: {fake}"
        );
    }
    assert!(fake.contains("(default 3001)"), "{fake}");
    assert!(
        help("simulate").contains("(default 3002"),
        "simulate's own fake Exotel"
    );
}

#[test]
fn unknown_flags_and_missing_values_are_errors_naming_the_flag() {
    let dir = support::temp_dir("cli");
    let cases: [(&[&str], &str); 10] = [
        (&["campaign", "status", "x", "--onse"], "--onse"),
        (&["campaign", "stats", "x"], "stats"),
        (&["fake-exotel", "--ring-ms", "soon"], "--ring-ms"),
        (&["simulate", "--call", "5"], "--call"),
        (&["simulate", "--calls"], "--calls"),
        (&["simulate", "--calls", "many"], "--calls"),
        (&["call", "+919876543210", "--sever", "x"], "--sever"),
        (&["test-bot", "--prot", "1"], "--prot"),
        (&["serve", "--port", "1"], "--port"),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, named) in cases {
        let out = binary(&dir).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{args:?}: {stderr}");
        assert!(stderr.contains("--help"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// Runs `simulate` with `args`, requires success, returns its report.
fn simulate_ok(dir: &std::path::Path, args: &[&str]) -> String {
    let out = binary(dir).arg("simulate").args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn simulate_runs_an_echo_call_and_prints_its_report() {
    let server = support::Server::start(&[]);
    let dir = support::temp_dir("sim");
    let addr = server.addr.to_string();
    let stdout = simulate_ok(
        &dir,
        &[
            "--server",
            &addr,
            "--seconds",
            "1",
            "--dtmf",
            "1#",
            "--record",
            "bot.wav",
        ],
    );
    assert!(stdout.contains("calls: 1 run, 1 clean"), "{stdout}");
    assert!(stdout.contains("marks: 1 received, 1 echoed"), "{stdout}");
    // Which bot answered, from the server's own row of the call.
    assert!(stdout.contains("\nbot: server-bot\n"), "{stdout}");
    assert!(
        stdout.contains("ended: closed by the server (1000) x1"),
        "{stdout}"
    );
    let wav = exotel_voicebot::media::audio::read_wav(
        &mut std::fs::File::open(dir.join("bot.wav")).unwrap(),
    )
    .unwrap();
    assert_eq!(wav.sample_rate, 8000);
    assert!(
        wav.samples.len() >= 8000,
        "the echo and the goodbye: {} samples",
        wav.samples.len()
    );

    // The caller's audio from a WAV file (16 kHz here) comes back unchanged.
    let caller = exotel_voicebot::media::audio::speech_like(16000, 1200, 4);
    let mut file = std::fs::File::create(dir.join("caller.wav")).unwrap();
    exotel_voicebot::media::audio::write_wav(&mut file, 16000, 1, &caller).unwrap();
    let stdout = simulate_ok(&dir, &["--server", &addr, "--wav", "caller.wav"]);
    let expected = format!(
        "echo: {} samples back unchanged, 0 changed, 0 lost",
        caller.len()
    );
    assert!(stdout.contains(&expected), "{stdout}");
}

#[test]
fn simulate_names_the_bot_that_answered_when_the_call_log_lets_it() {
    let server = support::Server::start(&[("API_TOKEN", "sim-token")]);
    let dir = support::temp_dir("sim-bot");
    let addr = server.addr.to_string();
    // Without the token the call still runs; the report says why the bot is not known.
    let stdout = simulate_ok(&dir, &["--server", &addr, "--seconds", "1"]);
    assert!(stdout.contains("calls: 1 run, 1 clean"), "{stdout}");
    assert!(
        stdout.contains("bot: not known (GET /calls/")
            && stdout.contains("answered 401: set API_TOKEN"),
        "{stdout}"
    );
    // With it, the bot is named.
    let out = binary(&dir)
        .env("API_TOKEN", "sim-token")
        .args(["simulate", "--server", &addr, "--seconds", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("\nbot: server-bot\n"), "{stdout}");
}

#[test]
fn simulate_outbound_goes_through_post_call_and_its_own_fake_exotel() {
    let exotel_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{exotel_port}");
    let server = support::Server::start(&[
        ("EXOTEL_API_KEY", "k"),
        ("EXOTEL_API_TOKEN", "t"),
        ("EXOTEL_SID", "sim"),
        ("EXOTEL_CALLER_ID", "0801"),
        ("EXOTEL_API_BASE_URL", &base),
    ]);
    let dir = support::temp_dir("sim");
    let (port, addr) = (exotel_port.to_string(), server.addr.to_string());
    let stdout = simulate_ok(
        &dir,
        &[
            "--outbound",
            "--exotel-port",
            &port,
            "--server",
            &addr,
            "--seconds",
            "1",
        ],
    );
    assert!(stdout.contains("1 clean"), "{stdout}");
    server.wait_for_log(&["call.placed", "callSid=sim-call"]);
    // A call that cannot connect is reported and fails the command.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = binary(&dir)
        .args([
            "simulate",
            "--server",
            &closed.to_string(),
            "--seconds",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 clean, 1 with problems"));
}

#[test]
fn simulate_refuses_a_number_of_calls_outside_its_limit_naming_the_flag() {
    let dir = support::temp_dir("cli-calls");
    for calls in ["0", "100001", "18446744073709551615"] {
        let out = binary(&dir)
            .args(["simulate", "--server", "127.0.0.1:1", "--calls", calls])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--calls {calls}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("--calls {calls}: from 1 to 100000")),
            "--calls {calls}: {stderr}"
        );
    }
}
