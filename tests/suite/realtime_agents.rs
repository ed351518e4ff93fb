//! `bot: "realtime"` agents of `/agents`: each its own instructions, voice, model, greeting,
//! turn detection, transcription model and write-only API key, over the environment's; and a
//! relay agent's own `protocol`. The real binary, the simulated Exotel, the fake Realtime
//! service and the Twilio test bot, all on loopback.

use crate::support;

use exotel_voicebot::media::audio::speech_like;
use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
use exotel_voicebot::sim::realtime_service::{FakeRealtime, Script, Then};
use exotel_voicebot::sim::{run_call, CallPlan, Connect};
use serde_json::{json, Value};
use std::time::Duration;
use support::{request, Server};

const AGENT_KEY: &str = "sk-agent-own-key-91f3";
const TOKEN: &str = "op-token-123";

fn server_with_exotel(fake: &FakeExotel, extra: &[(&str, &str)]) -> Server {
    let base = fake.base_url();
    let mut env = vec![
        ("API_TOKEN", TOKEN),
        ("EXOTEL_API_KEY", "k"),
        ("EXOTEL_API_TOKEN", "t"),
        ("EXOTEL_SID", "acme"),
        ("EXOTEL_CALLER_ID", "08047112233"),
        ("EXOTEL_API_BASE_URL", base.as_str()),
    ];
    env.extend_from_slice(extra);
    Server::start(&env)
}

fn send(server: &Server, method: &str, path: &str, body: &Value) -> support::TestResponse {
    let auth = [
        ("Authorization", "Bearer op-token-123"),
        ("Content-Type", "application/json"),
    ];
    request(
        server.addr,
        method,
        path,
        &auth,
        body.to_string().as_bytes(),
    )
}

/// `POST /call` with `body` (with the operator's token), answered by `fake` in stream mode: the
/// call's callLogId and the media URL Exotel was given.
fn place(server: &Server, fake: &FakeExotel, body: &Value) -> (String, String) {
    let token = [("Authorization", "Bearer op-token-123")];
    support::place_stream_call_as(server, fake, &token, &body.to_string())
}

fn service() -> FakeRealtime {
    FakeRealtime::start(Script {
        greeting_ms: 400,
        after_caller_ms: 600,
        then: Then::EndCall,
    })
}

#[test]
fn a_realtime_agent_brings_its_own_settings_and_key_and_shows_the_key_masked() {
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-agent-rt".into(),
    });
    let service = service();
    // BOT is the echo bot, and the environment has no key: the agent brings everything.
    let server = server_with_exotel(&fake, &[]);
    let agent = json!({
        "name": "collector",
        "bot": "realtime",
        "url": service.url(),
        "model": "gpt-realtime-mini",
        "instructions": "Collect {{amount}} rupees from {{name}}.",
        "voice": "cedar",
        "greeting": "Namaste {{name}}!",
        "turnDetection": "semantic_vad",
        "eagerness": "high",
        "transcriptionModel": "whisper-1",
        "apiKey": AGENT_KEY,
    });
    let created = send(&server, "POST", "/agents", &agent);
    assert_eq!(created.status, 201, "{}", created.json());
    for shown in [
        created.json(),
        send(&server, "GET", "/agents/collector", &Value::Null).json(),
    ] {
        assert_eq!(shown["apiKey"], "****91f3", "{shown}");
        assert_eq!(shown["voice"], "cedar");
        assert_eq!(shown["turnDetection"], "semantic_vad");
        assert_eq!(shown["eagerness"], "high");
        assert_eq!(shown["headers"], json!([]), "the key is not a header shown");
        assert!(!shown.to_string().contains(AGENT_KEY), "{shown}");
    }

    // A call missing a variable the agent's words use is refused before Exotel is asked.
    let missing = send(
        &server,
        "POST",
        "/call",
        &json!({"to": "+919800000001", "agent": "collector", "variables": {"name": "Asha"}}),
    );
    let e = missing.assert_error(400, "missing_variable");
    assert!(e["detail"].as_str().unwrap().contains("{{amount}}"), "{e}");
    assert!(fake.received().is_empty(), "Exotel was asked");

    let (id, url) = place(
        &server,
        &fake,
        &json!({"to": "+919800000001", "agent": "collector",
                "variables": {"name": "Asha", "amount": "1200"}}),
    );
    let mut plan = CallPlan::new(server.addr, speech_like(8000, 3000, 3));
    plan.check_echo = false;
    plan.keep_bot_audio = true;
    plan.connect = Connect::Url(url);
    let report = run_call(&plan);
    assert!(
        report.bot_samples >= 400 * 8,
        "the caller heard the greeting"
    );

    let (path, auth) = service.handshake().unwrap();
    assert_eq!(path, "/v1/realtime?model=gpt-realtime-mini");
    assert_eq!(auth, format!("Bearer {AGENT_KEY}"));
    let events = service.wait_for("response.create", Duration::from_secs(5));
    let session = &events
        .iter()
        .find(|e| e["type"] == "session.update")
        .unwrap()["session"];
    assert_eq!(session["instructions"], "Collect 1200 rupees from Asha.");
    assert_eq!(session["audio"]["output"]["voice"], "cedar");
    assert_eq!(
        session["audio"]["input"]["turn_detection"],
        json!({"type": "semantic_vad", "eagerness": "high"})
    );
    assert_eq!(
        session["audio"]["input"]["transcription"]["model"],
        "whisper-1"
    );
    let greet = events
        .iter()
        .find(|e| e["type"] == "response.create")
        .unwrap();
    assert!(greet["response"]["instructions"]
        .as_str()
        .unwrap()
        .ends_with("Namaste Asha!"));

    server.wait_for_log(&["media.ended", &format!("callLogId={id}")]);
    let row = send(&server, "GET", &format!("/calls/{id}"), &Value::Null).json();
    assert_eq!(row["bot"], "agent:collector/realtime", "{row}");
    let log = server.settled_log().join("\n");
    assert!(
        !log.contains(AGENT_KEY) && !log.contains("91f3"),
        "the key was logged"
    );
}

#[test]
fn realtime_agent_fields_are_checked_and_the_key_is_write_only() {
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-agent-fields".into(),
    });
    let server = server_with_exotel(&fake, &[]);
    for (body, named) in [
        // No key of its own, and none in the environment.
        (json!({"name": "a", "bot": "realtime"}), "OPENAI_API_KEY"),
        (
            json!({"name": "a", "bot": "realtime", "apiKey": "sk x"}),
            "apiKey",
        ),
        (
            json!({"name": "a", "bot": "realtime", "apiKey": AGENT_KEY, "turnDetection": "push_to_talk"}),
            "push_to_talk",
        ),
        (
            json!({"name": "a", "bot": "realtime", "apiKey": AGENT_KEY, "eagerness": "high"}),
            "semantic_vad",
        ),
        (
            json!({"name": "a", "bot": "realtime", "apiKey": AGENT_KEY, "voice": "a voice"}),
            "voice",
        ),
        (
            json!({"name": "a", "bot": "realtime", "apiKey": AGENT_KEY,
                   "instructions": "x".repeat(32 * 1024 + 1)}),
            "instructions",
        ),
        (
            json!({"name": "a", "bot": "realtime", "apiKey": AGENT_KEY, "protocol": "twilio"}),
            "protocol",
        ),
        (
            json!({"name": "a", "bot": "echo", "greeting": "Hello"}),
            "PUT /agents/{name}/greeting",
        ),
        (
            json!({"name": "a", "bot": "relay", "url": "ws://127.0.0.1:9/", "apiKey": AGENT_KEY}),
            "apiKey",
        ),
        (
            json!({"name": "a", "bot": "relay", "url": "ws://127.0.0.1:9/", "protocol": "sip"}),
            "protocol",
        ),
    ] {
        let e = send(&server, "POST", "/agents", &body).assert_error(400, "bad_request");
        let detail = e["detail"].as_str().unwrap();
        assert!(detail.contains(named), "{named}: {e}");
        assert!(!detail.contains(AGENT_KEY), "{e}");
    }
    // A PATCH changes what it names and keeps the rest; an empty apiKey is the environment's
    // (none here, so refused); the key is never given back.
    let created = send(
        &server,
        "POST",
        "/agents",
        &json!({"name": "a", "bot": "realtime", "apiKey": AGENT_KEY, "voice": "cedar"}),
    );
    assert_eq!(created.status, 201, "{}", created.json());
    let patched = send(
        &server,
        "PATCH",
        "/agents/a",
        &json!({"instructions": "Be brief."}),
    );
    assert_eq!(patched.status, 200, "{}", patched.json());
    let shown = patched.json();
    assert_eq!(
        (&shown["voice"], &shown["instructions"], &shown["apiKey"]),
        (&json!("cedar"), &json!("Be brief."), &json!("****91f3"))
    );
    send(&server, "PATCH", "/agents/a", &json!({"apiKey": ""})).assert_error(400, "bad_request");
    // A realtime agent speaks its own greeting: no WAV.
    let auth = [("Authorization", "Bearer op-token-123")];
    let wav = request(server.addr, "PUT", "/agents/a/greeting", &auth, b"RIFF");
    wav.assert_error(400, "bad_request");
}

#[test]
fn a_campaign_for_a_realtime_agent_refuses_contacts_missing_a_variable() {
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-agent-campaign".into(),
    });
    let service = service();
    let server = server_with_exotel(&fake, &[("OPENAI_API_KEY", AGENT_KEY)]);
    let agent = json!({
        "name": "collector", "bot": "realtime", "url": service.url(),
        "instructions": "Collect {{amount}} from {{name}}.",
    });
    assert_eq!(send(&server, "POST", "/agents", &agent).status, 201);
    let created = send(
        &server,
        "POST",
        "/campaigns",
        &json!({
            "name": "dues",
            "agent": "collector",
            "contacts": [
                {"to": "+919800000001", "params": {"name": "Asha", "amount": "1200"}},
                {"to": "+919800000002", "params": {"name": "Ravi"}},
                {"to": "+919800000003", "params": {"name": "Mira", "amount": ""}},
            ],
        }),
    );
    assert_eq!(created.status, 201, "{}", created.json());
    let created = created.json();
    assert_eq!(created["total"], 1, "{created}");
    let rejected: Vec<(u64, String)> = created["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["row"].as_u64().unwrap(),
                r["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(rejected.len(), 2, "{created}");
    assert_eq!((rejected[0].0, rejected[1].0), (2, 3));
    assert!(
        rejected.iter().all(|(_, e)| e.contains("{{amount}}")),
        "{rejected:?}"
    );
}

#[test]
fn a_relay_agent_may_speak_twilio_while_bot_speaks_exotel() {
    use exotel_voicebot::sim::twilio_bot::TwilioBot;
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-agent-twilio".into(),
    });
    let bot = TwilioBot::start();
    let server = server_with_exotel(&fake, &[]);
    let agent = json!({"name": "tw", "bot": "relay", "url": bot.url(), "protocol": "twilio"});
    let created = send(&server, "POST", "/agents", &agent);
    assert_eq!(created.status, 201, "{}", created.json());
    assert_eq!(created.json()["protocol"], "twilio");
    let (_, url) = place(
        &server,
        &fake,
        &json!({"to": "+919800000001", "agent": "tw"}),
    );
    let mut plan = CallPlan::new(server.addr, speech_like(8000, 1000, 3));
    plan.check_echo = false;
    plan.connect = Connect::Url(url);
    run_call(&plan);
    let seen = bot.wait_stopped(Duration::from_secs(10));
    assert_eq!(seen[1]["event"], "start", "{seen:?}");
    assert_eq!(
        seen[1]["start"]["mediaFormat"]["encoding"], "audio/x-mulaw",
        "the agent's bot got Twilio's frames"
    );
}

#[test]
fn simulate_plays_a_wav_at_a_realtime_agent_and_saves_what_it_answered() {
    let service = service();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let exotel_port = free.local_addr().unwrap().port();
    drop(free);
    let base = format!("http://127.0.0.1:{exotel_port}");
    // No API_TOKEN: the agent is made and the call placed from this machine, as the README's.
    let server = Server::start(&[
        ("EXOTEL_API_KEY", "k"),
        ("EXOTEL_API_TOKEN", "t"),
        ("EXOTEL_SID", "acme"),
        ("EXOTEL_CALLER_ID", "08047112233"),
        ("EXOTEL_API_BASE_URL", &base),
        ("OPENAI_API_KEY", AGENT_KEY),
    ]);
    let agent = json!({
        "name": "collector", "bot": "realtime", "url": service.url(),
        "greeting": "Namaste {{name}}.",
    });
    assert_eq!(server.post_json("/agents", &agent.to_string()).status, 201);
    let dir = support::temp_dir("simulate-realtime");
    let caller = speech_like(8000, 2500, 3);
    let mut wav = std::fs::File::create(dir.join("caller.wav")).unwrap();
    exotel_voicebot::media::audio::write_wav(&mut wav, 8000, 1, &caller).unwrap();
    drop(wav);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"))
        .args([
            "simulate",
            "--server",
            &server.addr.to_string(),
            "--outbound",
        ])
        .args(["--exotel-port", &exotel_port.to_string()])
        .args(["--agent", "collector", "--var", "name=Asha"])
        .args([
            "--wav",
            "caller.wav",
            "--record",
            "answer.wav",
            "--no-echo-check",
        ])
        .current_dir(&dir)
        .env_clear()
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("bot: agent:collector/realtime"), "{stdout}");
    // What the agent answered, saved: its greeting's 400 ms tone and its goodbye.
    let answer = exotel_voicebot::media::audio::read_wav(
        &mut std::fs::File::open(dir.join("answer.wav")).unwrap(),
    )
    .unwrap();
    assert_eq!(answer.sample_rate, 8000);
    let loud = answer
        .samples
        .iter()
        .filter(|s| s.unsigned_abs() > 1000)
        .count();
    assert!(
        loud >= 300 * 8,
        "{loud} loud samples of {}",
        answer.samples.len()
    );
    let events = service.wait_for("response.create", Duration::from_secs(5));
    let greet = events
        .iter()
        .find(|e| e["type"] == "response.create")
        .unwrap();
    assert!(greet["response"]["instructions"]
        .as_str()
        .unwrap()
        .ends_with("Namaste Asha."));
}

#[test]
fn an_agents_bot_gets_bot_fallback_whatever_bot_is() {
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-agent-fallback".into(),
    });
    let service = service();
    service.refuse(401);
    // BOT stays the echo bot; BOT_FALLBACK still says what an agent's unreachable bot gets.
    let server = server_with_exotel(&fake, &[("BOT_FALLBACK", "echo")]);
    let agent = json!({"name": "collector", "bot": "realtime", "url": service.url(),
                       "apiKey": AGENT_KEY});
    assert_eq!(send(&server, "POST", "/agents", &agent).status, 201);
    let (id, url) = place(
        &server,
        &fake,
        &json!({"to": "+919800000001", "agent": "collector"}),
    );
    let mut plan = CallPlan::new(server.addr, speech_like(8000, 2000, 3));
    plan.connect = Connect::Url(url);
    let report = run_call(&plan);
    assert!(report.is_clean(), "the echo bot answered: {report:?}");
    server.wait_for_log(&[
        "relay.unavailable",
        &format!("callLogId={id}"),
        "fallback=echo",
    ]);
    server.wait_for_log(&["media.ended", &format!("callLogId={id}")]);
    let row = server.ended_row(&id, &[("Authorization", "Bearer op-token-123")]);
    assert_ne!(row["status"], "bot-unavailable", "{row}");
    assert_eq!(
        row["lastError"],
        "bot unavailable: refused the handshake with 401"
    );
}
