//! `BOT=realtime` end to end: the real binary between the simulated Exotel caller and a fake
//! speech-to-speech service that speaks OpenAI's Realtime protocol
//! (`exotel_voicebot::sim::realtime_service`, a real WebSocket server on loopback).

use crate::support;

use exotel_voicebot::media::audio::speech_like;
use exotel_voicebot::sim::realtime_service::{
    FakeRealtime, Script, Then, CALLER_WORDS, GREETING_WORDS,
};
use exotel_voicebot::sim::{run_call, CallPlan, CallReport, EndedBy};
use serde_json::Value;
use std::time::Duration;
use support::Server;

const KEY: &str = "sk-test-realtime-key-7a9c";

fn realtime_server(service: &FakeRealtime, extra: &[(&str, &str)]) -> Server {
    let url = service.url();
    let mut env = vec![
        ("BOT", "realtime"),
        ("OPENAI_API_KEY", KEY),
        ("REALTIME_URL", url.as_str()),
        ("REALTIME_GREETING", "Hello, thanks for calling."),
    ];
    env.extend_from_slice(extra);
    Server::start(&env)
}

fn call(server: &Server, rate: u32, ms: u32, key_at_500_ms: Option<char>) -> CallReport {
    let mut plan = CallPlan::new(server.addr, speech_like(rate, ms, 3));
    plan.sample_rate = rate;
    plan.check_echo = false;
    plan.keep_bot_audio = true;
    plan.dtmf_during = key_at_500_ms.map(|k| (500, k)).into_iter().collect();
    plan.tail_ms = 500;
    run_call(&plan)
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// The key is in no answer and no log line.
fn key_kept(server: &Server) {
    let log = server.settled_log().join("\n");
    assert!(!log.contains(KEY), "the key was logged");
    assert!(!log.contains("7a9c"), "part of the key was logged");
}

#[test]
fn a_realtime_call_is_greeted_transcribed_and_ended_by_the_model() {
    let service = FakeRealtime::start(Script {
        greeting_ms: 1000,
        after_caller_ms: 1200,
        then: Then::EndCall,
    });
    let server = realtime_server(&service, &[]);
    let report = call(&server, 8000, 6000, Some('5'));
    // The model ended the call (its goodbye played first), long before the caller's 6 s.
    assert_eq!(report.ended_by, EndedBy::Server(1000), "{:?}", server.log());
    assert!(
        report.chunks_sent < 50,
        "{} chunks sent",
        report.chunks_sent
    );
    // The caller heard the greeting (1 s) and the goodbye (0.3 s) at 8 kHz.
    assert!(
        report.bot_samples >= 1300 * 8,
        "{} samples",
        report.bot_samples
    );

    let (path, auth) = service.handshake().unwrap();
    assert_eq!(path, "/v1/realtime?model=gpt-realtime");
    assert_eq!(auth, format!("Bearer {KEY}"));
    let events = service.events();
    let session = of_type(&events, "session.update");
    assert_eq!(
        session[0]["session"]["audio"]["input"]["format"]["type"], "audio/pcmu",
        "an 8 kHz call speaks μ-law"
    );
    assert!(
        !of_type(&events, "response.create").is_empty(),
        "the model speaks first"
    );
    let appended = of_type(&events, "input_audio_buffer.append");
    assert!(appended.len() >= 12, "{} appends", appended.len());
    // The key reached the model as words.
    let keyed = of_type(&events, "conversation.item.create");
    assert!(
        keyed
            .iter()
            .any(|e| e["item"]["content"][0]["text"] == "The caller pressed 5."),
        "{keyed:?}"
    );
    // The tool call was answered.
    let answered = service.wait_for("conversation.item.create", Duration::from_secs(5));
    assert!(
        answered
            .iter()
            .any(|e| e["item"]["type"] == "function_call_output"
                && e["item"]["call_id"] == "call-end")
    );

    // The row: ended by the bot, answered by the realtime bot, both sides' words in order.
    let id = &report.call_log_id;
    server.wait_for_log(&[
        "media.ended",
        &format!("callLogId={id}"),
        "reason=bot-hung-up",
    ]);
    let row = server.ended_row(id, &[]);
    assert_eq!(row["bot"], "BOT=realtime");
    let transcript = server.get(&format!("/calls/{id}/transcript")).json();
    let turns: Vec<(String, String)> = transcript["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["role"].as_str().unwrap().into(),
                t["text"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        turns,
        [
            ("bot".to_owned(), GREETING_WORDS.to_owned()),
            ("caller".to_owned(), CALLER_WORDS.to_owned())
        ]
    );
    key_kept(&server);
}

#[test]
fn the_caller_talking_over_the_bot_clears_its_audio_and_truncates_what_was_not_heard() {
    let service = FakeRealtime::start(Script {
        greeting_ms: 6000,
        after_caller_ms: 800,
        then: Then::BargeIn,
    });
    let server = realtime_server(&service, &[]);
    let report = call(&server, 16000, 2500, None);
    assert!(
        report.clears >= 1,
        "Exotel was told to drop the bot's audio"
    );
    // Much less than the 6 s greeting reached the caller.
    assert!(
        report.bot_samples < 16000 * 4,
        "{} samples",
        report.bot_samples
    );

    let events = service.wait_for("response.cancel", Duration::from_secs(5));
    let session = of_type(&events, "session.update");
    assert_eq!(
        session[0]["session"]["audio"]["output"]["format"],
        serde_json::json!({"type": "audio/pcm", "rate": 24000}),
        "a 16 kHz call speaks 24 kHz PCM"
    );
    let truncate = of_type(&events, "conversation.item.truncate");
    assert_eq!(truncate.len(), 1, "{events:?}");
    assert_eq!(truncate[0]["item_id"], "item-greet");
    let end_ms = truncate[0]["audio_end_ms"].as_u64().unwrap();
    // What had left for the caller: the greeting from the call's start until the caller had
    // spoken 800 ms (and the service heard it), never the whole greeting.
    assert!((500..4000).contains(&end_ms), "audio_end_ms {end_ms}");
    // Within one chunk (100 ms) of what the caller got before the clear.
    let received_ms = report.bot_samples as u64 * 1000 / 16000;
    eprintln!("truncated at {end_ms} ms; the caller got {received_ms} ms of the greeting");
    assert!(
        end_ms.abs_diff(received_ms) <= 100,
        "truncated at {end_ms} ms, the caller got {received_ms} ms"
    );
    assert!(!of_type(&events, "response.cancel").is_empty());
    key_kept(&server);
}

#[test]
fn a_transfer_asked_by_the_model_is_a_handoff_with_its_reason() {
    let service = FakeRealtime::start(Script {
        greeting_ms: 500,
        after_caller_ms: 600,
        then: Then::Transfer("billing dispute".into()),
    });
    let server = realtime_server(&service, &[]);
    let report = call(&server, 8000, 4000, None);
    let id = &report.call_log_id;
    server.wait_for_log(&[
        "media.ended",
        &format!("callLogId={id}"),
        "reason=handed-off",
    ]);
    let row = server.ended_row(id, &[]);
    assert_eq!(row["handoff"], "billing dispute", "{row}");
}

#[test]
fn a_refused_key_gets_the_fallback_and_the_key_is_never_shown() {
    let service = FakeRealtime::start(Script {
        greeting_ms: 500,
        after_caller_ms: 600,
        then: Then::EndCall,
    });
    service.refuse(401);
    let server = realtime_server(&service, &[]);
    let report = call(&server, 8000, 2000, None);
    let id = &report.call_log_id;
    server.wait_for_log(&["media.ended", &format!("callLogId={id}")]);
    let row = server.ended_row(id, &[]);
    assert_eq!(row["status"], "bot-unavailable", "{row}");
    assert_eq!(
        row["lastError"], "bot unavailable: refused the handshake with 401",
        "{row}"
    );
    assert!(!row.to_string().contains(KEY));
    key_kept(&server);
}

#[test]
fn a_service_failing_mid_call_is_dialed_once_more_then_falls_back_with_its_error_on_the_row() {
    let service = FakeRealtime::start(Script {
        greeting_ms: 300,
        after_caller_ms: 600,
        then: Then::Fail {
            code: "server_error".into(),
            refuse_after: 503,
        },
    });
    let server = realtime_server(&service, &[("BOT_FALLBACK", "hangup")]);
    let report = call(&server, 8000, 6000, None);
    // The fallback's tone and hang-up ended the call, long before the caller's 6 s.
    assert!(
        matches!(report.ended_by, EndedBy::Server(_)),
        "{:?}",
        report.ended_by
    );
    let id = &report.call_log_id;
    server.wait_for_log(&["media.ended", &format!("callLogId={id}")]);
    let row = server.ended_row(id, &[]);
    assert_eq!(row["status"], "bot-unavailable", "{row}");
    assert_eq!(
        row["lastError"],
        "the service's error server_error: The server had an error while processing your \
         request.; then bot dropped: the service closed the session; then bot unavailable: \
         refused the handshake with 503",
        "{row}"
    );
    let metrics = String::from_utf8(server.get("/metrics").body).unwrap();
    for line in [
        "exotel_voicebot_realtime_service_events_total{event=\"error\"} 1",
        "exotel_voicebot_realtime_service_events_total{event=\"rate_limits\"} 1",
        "exotel_voicebot_relay_connections_total{event=\"dropped\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    key_kept(&server);
}

#[test]
fn a_calls_variables_fill_the_instructions_and_a_missing_one_is_refused() {
    use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-realtime-vars".into(),
    });
    let service = FakeRealtime::start(Script {
        greeting_ms: 300,
        after_caller_ms: 400,
        then: Then::EndCall,
    });
    let base = fake.base_url();
    let server = realtime_server(
        &service,
        &[
            (
                "REALTIME_INSTRUCTIONS",
                "Collect {{amount}} rupees from {{name}}.",
            ),
            ("REALTIME_GREETING", "Hello {{name}}!"),
            ("EXOTEL_API_KEY", "k"),
            ("EXOTEL_API_TOKEN", "t"),
            ("EXOTEL_SID", "acme"),
            ("EXOTEL_CALLER_ID", "08047112233"),
            ("EXOTEL_API_BASE_URL", &base),
        ],
    );
    // Nothing reaches Exotel while a placeholder has no value, and the refusal names it.
    let refused = server.post_json(
        "/call",
        r#"{"to": "+919800000001", "variables": {"name": "Asha"}}"#,
    );
    let e = refused.assert_error(400, "missing_variable");
    assert!(e["detail"].as_str().unwrap().contains("{{amount}}"), "{e}");
    assert!(fake.received().is_empty(), "Exotel was asked");

    let (_, url) = support::place_stream_call(
        &server,
        &fake,
        r#"{"to": "+919800000001", "variables": {"name": "Asha", "amount": "1200"}}"#,
    );
    let mut plan = CallPlan::new(server.addr, speech_like(8000, 2000, 3));
    plan.check_echo = false;
    plan.connect = exotel_voicebot::sim::Connect::Url(url);
    run_call(&plan);
    let events = service.wait_for("response.create", Duration::from_secs(5));
    let session = of_type(&events, "session.update");
    assert_eq!(
        session[0]["session"]["instructions"],
        "Collect 1200 rupees from Asha."
    );
    let greet = of_type(&events, "response.create");
    assert!(greet[0]["response"]["instructions"]
        .as_str()
        .unwrap()
        .ends_with("Hello Asha!"));
}

#[test]
fn calls_at_16_and_24_khz_speak_24_khz_pcm_with_the_service_through_the_resampler() {
    for rate in [16000, 24000] {
        let service = FakeRealtime::start(Script {
            greeting_ms: 1000,
            after_caller_ms: 1500,
            then: Then::EndCall,
        });
        let server = realtime_server(&service, &[]);
        let report = call(&server, rate, 5000, None);
        assert_eq!(
            report.invalid_chunks, 0,
            "{rate}: Exotel's chunk rules kept"
        );
        // The greeting (1 s) and the goodbye (0.3 s), at the call's rate, whole.
        let heard_ms = report.bot_samples as u64 * 1000 / u64::from(rate);
        assert!(
            (1290..=1320).contains(&heard_ms),
            "{rate}: {heard_ms} ms heard"
        );
        let events = service.events();
        let session = of_type(&events, "session.update");
        assert_eq!(
            session[0]["session"]["audio"]["input"]["format"],
            serde_json::json!({"type": "audio/pcm", "rate": 24000})
        );
        // The caller's audio reached the service as 24 kHz 16-bit PCM: 48 bytes a ms.
        use base64::Engine as _;
        let appended: usize = of_type(&events, "input_audio_buffer.append")
            .iter()
            .map(|e| {
                base64::engine::general_purpose::STANDARD
                    .decode(e["audio"].as_str().unwrap())
                    .unwrap()
                    .len()
            })
            .sum();
        assert!(
            appended >= 1500 * 48 && appended % 2 == 0,
            "{rate}: {appended} bytes appended"
        );
    }
}
