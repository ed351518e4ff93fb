//! Handing a caller to a person through Exotel's Passthru applet, on the real binary: every
//! shape of the Passthru request read and recorded, the answers as configured, and a handoff
//! from each kind of bot (a Rust bot through the library, a relayed bot's `handoff` event, the
//! caller's key, a bot that could not be reached, an agent's policy), while a bot that simply
//! hung up hands no one off. Calls are played by `sim` over real WebSockets.

mod support;

use exotel_voicebot::bot::{Bot, CallStart, Outbox};
use exotel_voicebot::media::audio::{speech_like, tone};
use exotel_voicebot::sim::{run_call, CallPlan, CallReport, EndedBy};
use std::net::SocketAddr;
use std::time::Duration;
use support::{request, Server};

const PASSTHRU: &str = "/api/v1/exotel/passthru";

/// One simulated call through the connect webhook, pressing `keys` after a second of audio.
fn call(addr: SocketAddr, keys: &str) -> CallReport {
    let mut plan = CallPlan::new(addr, speech_like(8000, 1000, 3));
    plan.dtmf = keys.into();
    plan.check_echo = false;
    plan.tail_ms = 1500;
    run_call(&plan)
}

/// The Passthru after `report`'s stream, with the stream fields as nested keys.
fn passthru_nested(addr: SocketAddr, report: &CallReport, by: &str) -> support::TestResponse {
    let query = format!(
        "CallSid={}&CustomField={}&Direction=inbound&Stream%5BStreamSID%5D=S-{}&Stream%5BStatus%5D=completed&Stream%5BDuration%5D=28&Stream%5BRecordingUrl%5D=https%3A%2F%2Frecordings.example%2F1.mp3&Stream%5BDisconnectedBy%5D={by}",
        report.call_sid, report.call_log_id, report.call_sid
    );
    request(addr, "GET", &format!("{PASSTHRU}?{query}"), &[], b"")
}

fn row(server: &Server, id: &str) -> serde_json::Value {
    // The row is written by the call log's thread a moment after the answer.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let row = server.get(&format!("/calls/{id}")).json();
        if !row["handoffAnswer"].is_null() || std::time::Instant::now() > deadline {
            return row;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_passthru_form_is_read_recorded_and_answered_as_configured() {
    let server = Server::start(&[]);
    // The echo bot hands off on 0.
    let handed = call(server.addr, "0");
    assert_eq!(
        handed.ended_by,
        EndedBy::Server(1000),
        "{:?}",
        handed.ended_by
    );
    let answer = passthru_nested(server.addr, &handed, "bot");
    assert_eq!(answer.status, 200, "{}", answer.json());
    assert_eq!(
        answer.json(),
        serde_json::json!({"handoff": true, "reason": "caller-asked"})
    );
    let r = row(&server, &handed.call_log_id);
    assert_eq!(r["handoff"], "caller-asked", "{r}");
    assert_eq!(r["handoffAnswer"], 200, "{r}");
    assert_eq!(r["streamStatus"], "completed", "{r}");
    assert_eq!(r["streamDurationS"], 28, "{r}");
    assert_eq!(r["disconnectedBy"], "bot", "{r}");
    assert_eq!(
        r["exotelRecordingUrl"], "https://recordings.example/1.mp3",
        "{r}"
    );

    // A call whose bot did not hand off: the flat form (no stream fields) finds it by
    // CustomField, the JSON-string form by CallSid alone; both answer "no handoff".
    let plain = call(server.addr, "");
    let flat = request(
        server.addr,
        "GET",
        &format!("{PASSTHRU}?CustomField={}", plain.call_log_id),
        &[],
        b"",
    );
    assert_eq!(flat.status, 302);
    assert_eq!(flat.header("location"), Some(PASSTHRU));
    assert_eq!(flat.json()["handoff"], false);
    let stream = serde_json::json!({"StreamSID": "S9", "Status": "completed", "Duration": "4", "DisconnectedBy": "user"});
    let mut query = String::new();
    exotel_voicebot::http::form::append_pair(&mut query, "CallSid", &plain.call_sid);
    exotel_voicebot::http::form::append_pair(&mut query, "Stream", &stream.to_string());
    let json_string = request(server.addr, "GET", &format!("{PASSTHRU}?{query}"), &[], b"");
    assert_eq!(json_string.status, 302);
    let r = row(&server, &plain.call_log_id);
    assert!(r["handoff"].is_null(), "{r}");
    assert_eq!(r["disconnectedBy"], "user", "{r}");
    assert_eq!(r["streamDurationS"], 4, "{r}");

    // The Passthru before the stream: a JSON body, answered "continue".
    let before = request(
        server.addr,
        "POST",
        PASSTHRU,
        &[("Content-Type", "application/json")],
        br#"{"CallSid": "CA-new", "StreamSid": "S-new", "StreamUrl": "wss://x/media", "AccountSid": "acme", "EventType": "stream-start", "From": "+919876543210", "To": "08047112233", "Direction": "inbound"}"#,
    );
    assert_eq!(before.status, 200);
    assert_eq!(before.json(), serde_json::json!({"continue": true}));

    // An unknown call: "no handoff" and a log line, never a 4xx.
    let unknown = request(
        server.addr,
        "GET",
        &format!("{PASSTHRU}?CallSid=CA-nobody"),
        &[],
        b"",
    );
    assert_eq!(unknown.status, 302);
    server.wait_for_log(&["passthru.unknown_call", "callSid=CA-nobody"]);

    // GET /calls?handoff=1 lists the handed-off call only.
    let listed = server.get("/calls?handoff=1").json();
    let ids: Vec<&str> = listed["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str_id())
        .collect();
    assert_eq!(ids, [handed.call_log_id.as_str()]);

    // And /metrics counts them.
    let metrics = String::from_utf8(server.get("/metrics").body).unwrap();
    assert!(
        metrics.contains("exotel_voicebot_handoffs_total{source=\"bot\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("exotel_voicebot_passthru_answers_total{answer=\"handoff\"} 1"));
    assert!(metrics.contains("exotel_voicebot_passthru_answers_total{answer=\"no-handoff\"} 3"));
    assert!(metrics.contains("exotel_voicebot_passthru_answers_total{answer=\"stream-start\"} 1"));

    // Flows drawn the other way round: PASSTHRU_HANDOFF_STATUS=302.
    let swapped = Server::start(&[("PASSTHRU_HANDOFF_STATUS", "302")]);
    let handed = call(swapped.addr, "0");
    assert_eq!(passthru_nested(swapped.addr, &handed, "bot").status, 302);
    let plain = call(swapped.addr, "");
    assert_eq!(passthru_nested(swapped.addr, &plain, "user").status, 200);

    // Guarded like the other webhooks.
    let guarded = Server::start(&[("WEBHOOK_SECRET", "hook-secret-1")]);
    request(
        guarded.addr,
        "GET",
        &format!("{PASSTHRU}?CallSid=CA1"),
        &[],
        b"",
    )
    .assert_error(401, "unauthorized");
    let with_secret = request(
        guarded.addr,
        "GET",
        &format!("{PASSTHRU}?CallSid=CA1&secret=hook-secret-1"),
        &[],
        b"",
    );
    assert_eq!(with_secret.status, 302);
}

trait Id {
    fn as_str_id(&self) -> &str;
}

impl Id for serde_json::Value {
    fn as_str_id(&self) -> &str {
        self["callLogId"].as_str().unwrap_or("")
    }
}

/// An upstream bot that says a little, then hands the caller off with our extension event.
fn handing_off_bot() -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let bot = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut ws = tungstenite::accept(stream).unwrap();
        let mut seen = Vec::new();
        loop {
            match ws.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    let started = t.contains("\"start\"");
                    seen.push(t.to_string());
                    if started {
                        use base64::Engine as _;
                        let pcm: Vec<u8> = tone(8000, 440.0, 400, 6000)
                            .iter()
                            .flat_map(|s| s.to_le_bytes())
                            .collect();
                        let payload = base64::engine::general_purpose::STANDARD.encode(pcm);
                        let media =
                            format!(r#"{{"event":"media","media":{{"payload":"{payload}"}}}}"#);
                        ws.send(tungstenite::Message::text(media)).unwrap();
                        ws.send(tungstenite::Message::text(
                            r#"{"event":"handoff","handoff":{"reason":"billing"}}"#,
                        ))
                        .unwrap();
                    }
                }
                Ok(tungstenite::Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        seen
    });
    (addr, bot)
}

#[test]
fn a_relayed_bot_a_key_and_a_failed_bot_each_hand_off_and_a_hang_up_does_not() {
    // The relayed bot's `handoff` event: its audio plays out, then the stream ends.
    let (bot_addr, bot) = handing_off_bot();
    let url = format!("ws://{bot_addr}/bot");
    let relayed = Server::start(&[("BOT", "relay"), ("BOT_URL", &url)]);
    let report = call(relayed.addr, "");
    assert_eq!(
        report.ended_by,
        EndedBy::Server(1000),
        "{:?}",
        report.ended_by
    );
    assert!(
        report.bot_audio.len() >= 3200,
        "the bot's last words were cut: {} samples",
        report.bot_audio.len()
    );
    let answer = passthru_nested(relayed.addr, &report, "bot");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["reason"], "billing");
    assert_eq!(row(&relayed, &report.call_log_id)["handoff"], "billing");
    let _ = bot.join();

    // HANDOFF_DTMF, whatever the bot: the caller presses 5.
    let keyed = Server::start(&[("HANDOFF_DTMF", "5")]);
    let report = call(keyed.addr, "5");
    assert_eq!(
        passthru_nested(keyed.addr, &report, "bot").json()["reason"],
        "dtmf"
    );

    // A bot that cannot be reached, with BOT_FALLBACK=handoff: people still answer.
    let unreachable = Server::start(&[
        ("BOT", "relay"),
        ("BOT_URL", "ws://127.0.0.1:9/bot"),
        ("BOT_FALLBACK", "handoff"),
        ("BOT_CONNECT_TIMEOUT_MS", "300"),
    ]);
    let report = call(unreachable.addr, "");
    let answer = passthru_nested(unreachable.addr, &report, "bot");
    assert_eq!(answer.status, 200, "{}", answer.json());
    assert_eq!(answer.json()["reason"], "bot-unavailable");
    let r = row(&unreachable, &report.call_log_id);
    assert_eq!(r["status"], "bot-unavailable", "{r}");
    assert_eq!(r["handoff"], "bot-unavailable", "{r}");

    // A bot that simply hung up (the echo bot's #): no handoff.
    let plain = Server::start(&[]);
    let report = call(plain.addr, "#");
    assert_eq!(report.ended_by, EndedBy::Server(1000));
    assert_eq!(passthru_nested(plain.addr, &report, "bot").status, 302);
    assert!(row(&plain, &report.call_log_id)["handoff"].is_null());
}

#[test]
fn an_agents_policy_decides_after_its_bot() {
    let server = Server::start(&[]);
    let post = |path: &str, body: &str| {
        request(
            server.addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    };
    // Inbound calls to this phone (the simulator's CallTo) get the agent.
    let phone = |agent: &str| {
        let r = request(
            server.addr,
            "PATCH",
            "/phones/08047112233",
            &[("Content-Type", "application/json")],
            format!(r#"{{"agent": "{agent}"}}"#).as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.json());
    };
    assert_eq!(
        post(
            "/agents",
            r#"{"name": "never", "bot": "echo", "handoff": "never"}"#
        )
        .status,
        201
    );
    assert_eq!(
        post(
            "/agents",
            r#"{"name": "always", "bot": "echo", "handoff": "always"}"#
        )
        .status,
        201
    );
    post(
        "/agents",
        r#"{"name": "x", "bot": "echo", "handoff": "sometimes"}"#,
    )
    .assert_error(400, "bad_request");
    let created = post(
        "/phones",
        r#"{"number": "08047112233", "apiKey": "k", "apiToken": "t", "sid": "acme", "agent": "never"}"#,
    );
    assert_eq!(created.status, 201);
    // never: the caller asked (0), the agent says no.
    let report = call(server.addr, "0");
    assert_eq!(passthru_nested(server.addr, &report, "bot").status, 302);
    // always: the bot hung up (#), the agent hands off anyway.
    phone("always");
    let report = call(server.addr, "#");
    let answer = passthru_nested(server.addr, &report, "bot");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["reason"], "agent");
}

/// A bot of the user's own that greets and hands off at once: the greeting still plays.
struct Transfer;

impl Bot for Transfer {
    fn on_start(&mut self, call: &CallStart<'_>, out: &mut Outbox) {
        out.play(&tone(call.start.sample_rate, 523.0, 500, 6000));
        out.hand_off("sales");
    }
    fn on_audio(&mut self, _samples: &[i16], _out: &mut Outbox) {}
}

#[test]
fn a_rust_bot_hands_off_after_its_last_words() {
    let _logs = exotel_voicebot::log::Captured::start();
    let data_dir = support::temp_dir("handoff-lib");
    let config = exotel_voicebot::config::Config::from_lookup(|var| match var {
        "PORT" => Some("0".into()),
        "BIND" => Some("127.0.0.1".into()),
        "DATA_DIR" => Some(data_dir.display().to_string()),
        _ => None,
    })
    .unwrap();
    let bots = |_: &CallStart<'_>| -> Box<dyn Bot> { Box::new(Transfer) };
    let running = exotel_voicebot::start(config, Box::new(bots)).unwrap();
    let report = call(running.addr, "");
    assert_eq!(
        report.ended_by,
        EndedBy::Server(1000),
        "{:?}",
        report.ended_by
    );
    assert!(
        report.bot_audio.len() >= 4000,
        "the greeting was cut: {} samples",
        report.bot_audio.len()
    );
    let answer = passthru_nested(running.addr, &report, "bot");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["reason"], "sales");
}

#[test]
fn simulate_plays_the_flow_and_reports_the_branch() {
    let server = Server::start(&[]);
    let addr = server.addr.to_string();
    for (keys, form, branch) in [
        ("0", "nested", "passthru (nested): 200 handoff: the flow hands the caller to a person (reason caller-asked)"),
        ("0", "json", "passthru (json): 200 handoff"),
        ("", "flat", "passthru (flat): 302 no handoff: the flow ends the call"),
        ("", "body", "passthru (body): 200 the flow goes on to the stream"),
    ] {
        let mut args = vec!["simulate", "--server", &addr, "--no-echo-check", "--passthru", form];
        if !keys.is_empty() {
            args.extend(["--dtmf", keys]);
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"))
            .args(&args)
            .env_clear()
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(stdout.contains(branch), "{form}: {stdout}");
    }
}
