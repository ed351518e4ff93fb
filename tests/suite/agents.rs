//! `/agents` on the real binary: named bots (echo, or a relay with its URL and headers) with a
//! greeting; a call's agent comes from its request, else its phone, else `BOT`; a changed agent
//! changes new calls only. Calls are placed in stream mode against a fake Exotel, whose record
//! gives each call's media URL; `simulate` plays the customer on it and records what the bot
//! said, and a test bot stands upstream for the relay agent.

use crate::support;

use exotel_voicebot::media::audio::{read_wav, tone, write_wav};
use exotel_voicebot::sim::bot::TestBot;
use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
use std::time::Duration;
use support::{request, Server};

/// 300 ms of 1 kHz at 8 kHz: unmistakable at the start of a recording.
fn greeting() -> Vec<i16> {
    tone(8000, 1000.0, 300, 12_000)
}

fn wav(samples: &[i16], rate: u32) -> Vec<u8> {
    let mut out = Vec::new();
    write_wav(&mut out, rate, 1, samples).unwrap();
    out
}

/// Places a call and plays the customer on its media URL for a second; answers what the bot
/// sent the customer.
fn call_and_listen(
    server: &Server,
    fake: &FakeExotel,
    body: &str,
    dir: &std::path::Path,
) -> Vec<i16> {
    let placed = server.post_json("/call", body);
    assert_eq!(placed.status, 200, "{}", placed.json());
    let id = placed.json()["callLogId"].as_str().unwrap().to_owned();
    listen(fake, &id, dir)
}

fn listen(fake: &FakeExotel, id: &str, dir: &std::path::Path) -> Vec<i16> {
    let url = fake
        .call_for(id)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == "StreamUrl")
        .unwrap()
        .1;
    let out = dir.join(format!("{id}.wav"));
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"))
        .args([
            "simulate",
            "--url",
            &url,
            "--seconds",
            "1",
            "--no-echo-check",
            "--record",
        ])
        .arg(&out)
        .env_clear()
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    read_wav(&mut std::fs::File::open(&out).unwrap())
        .unwrap()
        .samples
}

/// The newest call's row: its agent and who answered its stream.
fn newest_call(server: &Server) -> (serde_json::Value, serde_json::Value) {
    let page = server.get("/calls?limit=1").json();
    let call = &page["calls"][0];
    (call["agent"].clone(), call["bot"].clone())
}

fn greeted(heard: &[i16]) -> bool {
    let g = greeting();
    heard.len() >= g.len() && heard[..g.len()] == g[..]
}

#[test]
fn a_calls_agent_is_its_requests_else_its_phones_else_bot() {
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-agents".into(),
    });
    let upstream = TestBot::start(0);
    let dir = support::temp_dir("agents");
    let base = fake.base_url();
    let server = Server::start_in(
        dir.clone(),
        &[
            ("EXOTEL_API_KEY", "k"),
            ("EXOTEL_API_TOKEN", "t"),
            ("EXOTEL_SID", "acme"),
            ("EXOTEL_CALLER_ID", "08047112233"),
            ("EXOTEL_API_BASE_URL", &base),
            ("CAMPAIGN_CLOCK_START", "2026-11-26T12:00:00+05:30"),
        ],
    );
    let mut answers = Vec::new();
    let created = support::json_request(
        &server,
        "POST",
        "/agents",
        r#"{"name": "greeter", "bot": "echo"}"#,
    );
    assert_eq!(created.status, 201, "{}", created.json());
    let put = request(
        server.addr,
        "PUT",
        "/agents/greeter/greeting",
        &[("Content-Type", "audio/wav")],
        &wav(&greeting(), 8000),
    );
    assert_eq!(put.status, 200, "{}", put.json());
    assert_eq!(put.json()["greeting"]["sampleRate"], 8000);
    let relay = support::json_request(
        &server,
        "POST",
        "/agents",
        &format!(
            r#"{{"name": "upstream", "bot": "relay", "url": "{}", "headers": {{"Authorization": "Bearer agent-s3cret"}}}}"#,
            upstream.url()
        ),
    );
    assert_eq!(relay.status, 201, "{}", relay.json());
    assert_eq!(
        relay.json()["headers"],
        serde_json::json!(["Authorization"])
    );
    answers.push(relay.json().to_string());
    answers.push(server.get("/agents").json().to_string());
    let phone = support::json_request(
        &server,
        "POST",
        "/phones",
        &format!(
            r#"{{"number": "08047112244", "apiKey": "k2", "apiToken": "t2", "sid": "acme", "apiBaseUrl": "{base}", "agent": "upstream"}}"#
        ),
    );
    assert_eq!(phone.status, 201, "{}", phone.json());

    // The request's agent: greeted by the echo agent.
    let heard = call_and_listen(
        &server,
        &fake,
        r#"{"to": "+919800000001", "agent": "greeter"}"#,
        &dir,
    );
    assert!(greeted(&heard), "the greeting did not open the call");
    // The log says which bot answered.
    server.wait_for_log(&["media.connected", "bot=agent:greeter/echo"]);
    // And so does the call's row.
    assert_eq!(
        newest_call(&server),
        (
            serde_json::json!("greeter"),
            serde_json::json!("agent:greeter/echo")
        )
    );
    // The phone's agent: the upstream bot gets the call, with the agent's headers.
    let heard = call_and_listen(
        &server,
        &fake,
        r#"{"to": "+919800000002", "from": "08047112244"}"#,
        &dir,
    );
    assert!(!greeted(&heard));
    // The phone's agent, not BOT, answered, and the log says so.
    server.wait_for_log(&["media.connected", "bot=agent:upstream/relay"]);
    assert_eq!(
        newest_call(&server),
        (
            serde_json::json!("upstream"),
            serde_json::json!("agent:upstream/relay")
        )
    );
    let upstream_calls = upstream.wait_ended(1, Duration::from_secs(5));
    assert_eq!(upstream_calls.len(), 1);
    assert_eq!(
        upstream_calls[0].header("authorization"),
        Some("Bearer agent-s3cret")
    );
    // The request beats the phone.
    let heard = call_and_listen(
        &server,
        &fake,
        r#"{"to": "+919800000003", "from": "08047112244", "agent": "greeter"}"#,
        &dir,
    );
    assert!(greeted(&heard));
    assert_eq!(upstream.calls().len(), 1, "the phone's agent was not used");
    // Neither: BOT (echo, no greeting).
    let heard = call_and_listen(&server, &fake, r#"{"to": "+919800000004"}"#, &dir);
    assert!(!greeted(&heard));
    server.wait_for_log(&["media.connected", "bot=server-bot"]);
    assert_eq!(
        newest_call(&server),
        (serde_json::Value::Null, serde_json::json!("server-bot"))
    );
    // An agent that does not exist is named.
    server
        .post_json("/call", r#"{"to": "+919800000005", "agent": "nobody"}"#)
        .assert_error(400, "unknown_agent");

    // A changed agent changes new calls only: this call was dialed greeted, then the greeting
    // went; it is still greeted, the next call is not.
    let placed = server.post_json("/call", r#"{"to": "+919800000006", "agent": "greeter"}"#);
    let before = placed.json()["callLogId"].as_str().unwrap().to_owned();
    let removed = request(server.addr, "DELETE", "/agents/greeter/greeting", &[], b"");
    assert_eq!(removed.status, 200, "{}", removed.json());
    assert!(removed.json()["greeting"].is_null());
    assert!(greeted(&listen(&fake, &before, &dir)));
    let heard = call_and_listen(
        &server,
        &fake,
        r#"{"to": "+919800000007", "agent": "greeter"}"#,
        &dir,
    );
    assert!(!greeted(&heard));

    // A campaign's agent, and its contact's columns in the relayed bot's start.
    server
        .post_json(
            "/campaigns",
            r#"{"contacts": ["+919800000008"], "agent": "nobody"}"#,
        )
        .assert_error(400, "unknown_agent");
    let campaign = server.post_json(
        "/campaigns",
        r#"{"contacts": [{"to": "+919800000009", "params": {"name": "Asha", "due": "1200"}}], "agent": "upstream"}"#,
    );
    assert_eq!(campaign.status, 201, "{}", campaign.json());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let dialed = loop {
        let calls = server.get("/calls?limit=1").json();
        let newest = calls["calls"][0].clone();
        if newest["to"] == "+919800000009" {
            break newest["callLogId"].as_str().unwrap().to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the campaign did not dial"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    listen(&fake, &dialed, &dir);
    let upstream_calls = upstream.wait_ended(2, Duration::from_secs(5));
    let start = upstream_calls[1]
        .frames
        .iter()
        .find(|f| f.contains("\"start\""))
        .expect("the start frame");
    let start: serde_json::Value = serde_json::from_str(start).unwrap();
    assert_eq!(
        start["start"]["custom_parameters"]["name"], "Asha",
        "{start}"
    );
    assert_eq!(start["start"]["custom_parameters"]["due"], "1200");

    // The relay's header value is never shown nor logged.
    let log = server.settled_log().join("\n");
    assert!(!log.contains("agent-s3cret"));
    for answer in &answers {
        assert!(!answer.contains("agent-s3cret"), "{answer}");
    }
}

#[test]
fn agents_are_checked_kept_and_guarded() {
    let dir = support::temp_dir("agents-api");
    let server = Server::start_in(dir.clone(), &[("API_TOKEN", "op-token-123")]);
    let auth = [
        ("Authorization", "Bearer op-token-123"),
        ("Content-Type", "application/json"),
    ];
    let post = |body: &str| request(server.addr, "POST", "/agents", &auth, body.as_bytes());
    request(server.addr, "GET", "/agents", &[], b"").assert_error(401, "unauthorized");
    for (body, named) in [
        (r#"{"name": "a b", "bot": "echo"}"#, "name"),
        (r#"{"name": "x", "bot": "gpt"}"#, "bot"),
        (r#"{"name": "x", "bot": "relay"}"#, "url"),
        (
            r#"{"name": "x", "bot": "relay", "url": "http://bot"}"#,
            "ws://",
        ),
        (r#"{"name": "x", "bot": "echo", "voice": "asha"}"#, "voice"),
    ] {
        let e = post(body).assert_error(400, "bad_request");
        assert!(
            e["detail"].as_str().unwrap().contains(named),
            "{named}: {e}"
        );
    }
    assert_eq!(post(r#"{"name": "x", "bot": "echo"}"#).status, 201);
    post(r#"{"name": "x", "bot": "echo"}"#).assert_error(409, "agent_exists");
    // A greeting must be a WAV at a rate Exotel streams.
    let put = |body: &[u8]| request(server.addr, "PUT", "/agents/x/greeting", &auth, body);
    put(b"not a wav").assert_error(400, "bad_request");
    let e = put(&wav(&tone(11_025, 440.0, 100, 1000), 11_025)).assert_error(400, "bad_request");
    assert!(e["detail"].as_str().unwrap().contains("11025"), "{e}");
    assert_eq!(
        put(&wav(&tone(16_000, 440.0, 100, 1000), 16_000)).status,
        200
    );
    // Kept across a restart, greeting and all.
    server.signal("TERM");
    let (_, _) = server.wait_exit(Duration::from_secs(10));
    let server = Server::start_in(dir, &[("API_TOKEN", "op-token-123")]);
    let shown = request(server.addr, "GET", "/agents/x", &auth, b"").json();
    assert_eq!(shown["greeting"]["sampleRate"], 16000, "{shown}");
    let deleted = request(server.addr, "DELETE", "/agents/x", &auth, b"");
    assert_eq!(deleted.status, 200);
    request(server.addr, "GET", "/agents/x", &auth, b"").assert_error(404, "not_found");
}
