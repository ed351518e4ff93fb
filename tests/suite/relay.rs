//! `BOT=relay` end to end: the real binary between the simulated Exotel caller and an upstream
//! bot that is a real WebSocket server on loopback (`exotel_voicebot::sim::bot::TestBot`,
//! written only from docs/exotel.md).

use crate::support;

use exotel_voicebot::media::audio::{speech_like, ChunkRules};
use exotel_voicebot::sim::bot::{BotCall, TestBot};
use exotel_voicebot::sim::{run_call, EndedBy};
use std::time::{Duration, Instant};
use support::{chunks_between_key_and_clear, ws_connect};
use tungstenite::Message;

use support::{relay_plan as plan, relay_server, RELAY_ECHO_DELAY_MS as ECHO_DELAY_MS};

/// A loopback port with nothing listening.
/// Where a relayed call runs, each shown: on a media loop with its bot's socket beside the
/// caller's (the default), and on the caller's coroutine with a pump per socket (`MEDIA_LOOPS=0`,
/// as a TLS caller's call runs).
const HOMES: [(&str, &str); 2] = [("1", "runsOn=loop"), ("0", "runsOn=coroutine")];

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn only_call(bot: &TestBot) -> BotCall {
    let calls = bot.wait_ended(1, Duration::from_secs(5));
    assert_eq!(calls.len(), 1, "one connection to the bot: {calls:#?}");
    calls.into_iter().next().unwrap()
}

#[test]
fn audio_goes_both_ways_bit_exact_and_frames_arrive_as_exotel_sent_them() {
    for (loops, runs_on) in HOMES {
        let bot = TestBot::start(ECHO_DELAY_MS);
        let server = relay_server(
            &format!("{}?tenant=a", bot.url()),
            &[
                ("BOT_HEADERS", r#"{"Authorization": "Bearer bot-secret"}"#),
                ("MEDIA_LOOPS", loops),
            ],
        );
        let p = plan(&server, 8000, 3000);
        let report = run_call(&p);
        assert!(report.is_clean(), "{report:#?}");
        assert_eq!(report.echoed, p.audio.len(), "every sample came back");
        assert_eq!(report.echo_mismatched, 0);
        assert_eq!(
            report.chunk_sizes.keys().copied().collect::<Vec<_>>(),
            [3200],
            "the bot's 100 ms frames were re-chunked to Exotel's 200 ms"
        );
        assert_eq!(report.ended_by, EndedBy::Caller);

        let call = only_call(&bot);
        assert!(
            call.caller_audio == *p.audio,
            "the bot heard the caller sample for sample ({} of {} samples)",
            call.caller_audio.len(),
            p.audio.len()
        );
        assert_eq!(
            call.frames[0], r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
            "connected is forwarded as Exotel sent it"
        );
        let start: serde_json::Value = serde_json::from_str(&call.frames[1]).unwrap();
        assert_eq!(start["start"]["call_sid"], p.call_sid.as_str());
        assert_eq!(start["start"]["media_format"]["sample_rate"], "8000");
        assert_eq!(call.events.first().map(String::as_str), Some("connected"));
        assert_eq!(call.events.last().map(String::as_str), Some("stop"));
        assert_eq!(
            call.events.iter().filter(|e| *e == "media").count(),
            30,
            "one media frame per caller frame, none batched or lost"
        );
        assert_eq!(call.stop_reason.as_deref(), Some("callended"));
        assert!(
            call.closed_cleanly,
            "the relay closed the bot's socket with a close frame"
        );
        assert_eq!(call.header("authorization"), Some("Bearer bot-secret"));
        assert_eq!(call.query("tenant").as_deref(), Some("a"));
        assert_eq!(call.query("callLogId"), Some(report.call_log_id.clone()));
        assert_eq!(call.query("CallSid"), Some(p.call_sid.clone()));
        assert_eq!(call.query("from").as_deref(), Some("+919876543210"));
        assert_eq!(call.query("to").as_deref(), Some("08047112233"));
        server.wait_for_log(&[
            "relay.connected",
            &format!("callLogId={}", report.call_log_id),
        ]);
        server.wait_for_log(&[
            "media.ended",
            &format!("callLogId={}", report.call_log_id),
            "reason=callended",
            "relayDroppedToBot=0",
            "relayBadFrames=0",
        ]);
        server.wait_for_log(&["media.connected", runs_on]);
    }
}

#[test]
fn a_bot_sending_20_ms_frames_at_16_and_24_khz_is_re_chunked_to_exotels_rules() {
    let bot = TestBot::start(ECHO_DELAY_MS);
    let server = relay_server(&bot.url(), &[]);
    for rate in [16000u32, 24000] {
        let mut p = plan(&server, rate, 1500);
        p.chunk_ms = 20;
        let report = run_call(&p);
        assert!(report.is_clean(), "{rate} Hz: {report:#?}");
        assert_eq!(report.echoed, p.audio.len());
        let rules = ChunkRules::for_rate(rate);
        assert!(
            report.chunk_sizes.keys().all(|&s| rules.is_valid_chunk(s)),
            "{rate} Hz: {:?}",
            report.chunk_sizes
        );
    }
}

#[test]
fn marks_and_dtmf_reach_the_bot_and_its_close_hangs_up() {
    let bot = TestBot::start(ECHO_DELAY_MS);
    let server = relay_server(&bot.url(), &[]);
    let mut p = plan(&server, 8000, 1000);
    p.dtmf = "1#".into();
    let report = run_call(&p);
    assert_eq!(
        report.marks_received,
        ["m1", "goodbye"],
        "the bot's marks reached the caller after the audio queued before them"
    );
    assert_eq!(report.marks_echoed, 2);
    assert_eq!(report.clears, 1, "the bot's clear before its goodbye");
    assert_eq!(report.invalid_chunks, 0);
    assert_eq!(
        report.ended_by,
        EndedBy::Server(1000),
        "the bot closed its socket, which hangs the call up: {:#?} {:#?}",
        report.events.iter().rev().take(8).collect::<Vec<_>>(),
        server.log()
    );
    let call = only_call(&bot);
    assert_eq!(call.dtmf, "1#", "the caller's keys reached the bot");
    assert_eq!(
        call.marks,
        ["m1", "goodbye"],
        "Exotel's echoed marks reached the bot with their names"
    );
    server.wait_for_log(&[
        "media.ended",
        &format!("callLogId={}", report.call_log_id),
        "reason=bot-hung-up",
        "marksOut=2",
        "marksIn=2",
    ]);
}

#[test]
fn a_bots_transcript_turns_are_kept_with_the_call_in_order() {
    let bot = TestBot::start(ECHO_DELAY_MS);
    let server = relay_server(&bot.url(), &[]);
    let mut p = plan(&server, 8000, 1000);
    p.dtmf = "3".into();
    let report = run_call(&p);
    assert_eq!(report.invalid_chunks, 0);
    let id = &report.call_log_id;
    // The turn whose role is neither bot nor caller is a bad frame, logged, not kept.
    server.wait_for_log(&["relay.bad_frame", "transcript.role"]);
    server.wait_for_log(&["media.ended", &format!("callLogId={id}")]);
    let answer = server.get(&format!("/calls/{id}/transcript"));
    assert_eq!(answer.status, 200, "{answer:?}");
    let json = answer.json();
    assert_eq!(json["callLogId"], id.as_str());
    let turns: Vec<(String, String)> = json["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert!(t["at"].as_i64().unwrap() > 0 && t["atIso"].as_str().unwrap().ends_with('Z'));
            (
                t["role"].as_str().unwrap().to_owned(),
                t["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        turns,
        [
            ("caller".to_owned(), "I pressed three".to_owned()),
            ("bot".to_owned(), "You pressed three.".to_owned())
        ]
    );
    // No such call, no such transcript.
    server
        .get("/calls/no-such-call/transcript")
        .assert_error(404, "not_found");
    server
        .get(&format!("/calls/{id}/other"))
        .assert_error(404, "not_found");
}

#[test]
fn a_calls_variables_reach_its_relayed_bot_in_the_starts_custom_parameters() {
    use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-vars".into(),
    });
    let bot = TestBot::start(ECHO_DELAY_MS);
    let base = fake.base_url();
    let server = relay_server(
        &bot.url(),
        &[
            ("EXOTEL_API_KEY", "k"),
            ("EXOTEL_API_TOKEN", "t"),
            ("EXOTEL_SID", "acme"),
            ("EXOTEL_CALLER_ID", "08047112233"),
            ("EXOTEL_API_BASE_URL", &base),
        ],
    );
    let (id, url) = support::place_stream_call(
        &server,
        &fake,
        r#"{"to": "+919800000001", "variables": {"name": "Asha", "amount": "1200"}}"#,
    );
    let mut p = plan(&server, 8000, 600);
    p.connect = exotel_voicebot::sim::Connect::Url(url);
    let report = run_call(&p);
    assert_eq!(report.call_log_id, id);
    let call = only_call(&bot);
    let start = call
        .frames
        .iter()
        .map(|f| serde_json::from_str::<serde_json::Value>(f).unwrap())
        .find(|f| f["event"] == "start")
        .expect("the bot's start");
    let custom = &start["start"]["custom_parameters"];
    assert_eq!(custom["name"], "Asha", "{start}");
    assert_eq!(custom["amount"], "1200", "{start}");

    // What is not an object of strings with plain names is refused, naming the problem.
    for (variables, problem) in [
        (r#"["Asha"]"#, "variables must be an object of strings"),
        (r#"{"name": 7}"#, "variables.name must be a string"),
        (r#"{"first name": "Asha"}"#, "must be 1 to 64 letters"),
    ] {
        let refused = server.post_json(
            "/call",
            &format!(r#"{{"to": "+919800000002", "variables": {variables}}}"#),
        );
        let e = refused.assert_error(400, "bad_request");
        assert!(e["detail"].as_str().unwrap().contains(problem), "{e}");
    }
}

#[test]
fn a_clear_from_the_bot_drops_what_is_queued() {
    let bot = TestBot::start(ECHO_DELAY_MS);
    let server = relay_server(&bot.url(), &[]);
    let mut p = plan(&server, 8000, 3000);
    p.dtmf_during = vec![(1500, '*')];
    let report = run_call(&p);
    let media_between = chunks_between_key_and_clear(&report, '*');
    assert!(
        media_between <= 1,
        "{media_between} chunks arrived between * and clear"
    );
    assert_eq!(
        report.echo_mismatched, 0,
        "audio before the clear was exact"
    );
}

#[test]
fn an_unreachable_bot_gets_the_caller_a_tone_and_a_hang_up() {
    let port = closed_port();
    let server = relay_server(&format!("ws://127.0.0.1:{port}/bot"), &[]);
    let p = plan(&server, 8000, 3000);
    let report = run_call(&p);
    assert_eq!(report.ended_by, EndedBy::Server(1000), "{report:#?}");
    assert!(
        report.bot_audio.iter().any(|&s| s != 0),
        "the caller heard a tone"
    );
    assert_eq!(report.marks_received, ["bot-unavailable-tone-played"]);
    assert_eq!(report.invalid_chunks, 0);
    server.wait_for_log(&["relay.unavailable", "unreachable", "fallback=hangup"]);
    server.wait_for_log(&[
        "media.ended",
        &format!("callLogId={}", report.call_log_id),
        "reason=bot-unavailable",
    ]);
    let row = server.ended_row(&report.call_log_id, &[]);
    assert_eq!(row["status"], "bot-unavailable", "{row}");
    let metrics = String::from_utf8_lossy(&server.get("/metrics").body).into_owned();
    assert!(
        metrics.contains("exotel_voicebot_relay_connections_total{event=\"unavailable\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_bot_refusing_the_handshake_is_unavailable_too() {
    let bot = TestBot::start(ECHO_DELAY_MS);
    bot.refuse(503);
    let server = relay_server(&bot.url(), &[]);
    let report = run_call(&plan(&server, 8000, 2000));
    assert_eq!(report.ended_by, EndedBy::Server(1000), "{report:#?}");
    server.wait_for_log(&["relay.unavailable", "refused the handshake with 503"]);
}

#[test]
fn with_the_echo_fallback_an_unreachable_bot_is_replaced_by_the_echo_bot() {
    let port = closed_port();
    let server = relay_server(
        &format!("ws://127.0.0.1:{port}/bot"),
        &[("BOT_FALLBACK", "echo")],
    );
    let p = plan(&server, 8000, 2000);
    let report = run_call(&p);
    assert!(report.is_clean(), "the echo bot answered: {report:#?}");
    assert_eq!(report.echoed, p.audio.len());
    server.wait_for_log(&["relay.unavailable", "fallback=echo"]);
}

#[test]
fn a_bot_that_drops_mid_call_is_reconnected_with_a_fresh_start() {
    for (loops, runs_on) in HOMES {
        let bot = TestBot::start(ECHO_DELAY_MS);
        let server = relay_server(&bot.url(), &[("MEDIA_LOOPS", loops)]);
        let p = plan(&server, 8000, 4000);
        let call = std::thread::spawn(move || run_call(&p));
        std::thread::sleep(Duration::from_millis(1500));
        bot.drop_all();
        let report = call.join().unwrap();
        assert_eq!(report.ended_by, EndedBy::Caller, "{report:#?}");
        let calls = bot.wait_ended(2, Duration::from_secs(5));
        assert_eq!(calls.len(), 2, "one reconnect: {calls:#?}");
        let again = &calls[1];
        assert_eq!(
            again.events[..2],
            ["connected", "start"],
            "the new connection starts afresh"
        );
        assert!(
            again.events.iter().filter(|e| *e == "media").count() >= 10,
            "the caller's audio went on to the new connection: {:?}",
            again.events
        );
        assert_eq!(again.stop_reason.as_deref(), Some("callended"));
        assert!(
            report.bot_audio.len() > 3 * 8000,
            "the new connection's echo reached the caller"
        );
        server.wait_for_log(&[
            "relay.dropped",
            &format!("callLogId={}", report.call_log_id),
        ]);
        server.wait_for_log(&[
            "relay.reconnected",
            &format!("callLogId={}", report.call_log_id),
        ]);
        server.wait_for_log(&["media.connected", runs_on]);
    }
}

#[test]
fn a_bot_that_drops_and_cannot_come_back_gets_the_fallback() {
    let bot = TestBot::start(ECHO_DELAY_MS);
    let server = relay_server(&bot.url(), &[("BOT_RECONNECT_MS", "300")]);
    let p = plan(&server, 8000, 4000);
    let call = std::thread::spawn(move || run_call(&p));
    std::thread::sleep(Duration::from_millis(1500));
    bot.refuse(503);
    bot.drop_all();
    let report = call.join().unwrap();
    assert_eq!(
        report.ended_by,
        EndedBy::Server(1000),
        "tone, then hang-up: {report:#?}"
    );
    server.wait_for_log(&["relay.dropped"]);
    server.wait_for_log(&["relay.unavailable", "refused the handshake with 503"]);
    server.wait_for_log(&[
        "media.ended",
        &format!("callLogId={}", report.call_log_id),
        "reason=bot-unavailable",
    ]);
}

#[test]
fn a_caller_that_vanishes_still_gets_the_bot_a_stop_and_a_clean_close() {
    for (loops, runs_on) in HOMES {
        let bot = TestBot::start(ECHO_DELAY_MS);
        let server = relay_server(&bot.url(), &[("MEDIA_LOOPS", loops)]);
        let mut ws = ws_connect(server.addr, &server.media_path("CAgone")).unwrap();
        ws.send(Message::text(r#"{"event":"connected"}"#)).unwrap();
        ws.send(Message::text(
            r#"{"event":"start","stream_sid":"MZgone","start":{"call_sid":"CAgone","account_sid":"A","from":"1","to":"2","media_format":{"encoding":"base64","sample_rate":"8000"}}}"#,
        ))
        .unwrap();
        ws.send(Message::text(
            r#"{"event":"media","stream_sid":"MZgone","media":{"payload":"AAABAAIA"}}"#,
        ))
        .unwrap();
        ws.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(ws); // no stop, no close: the connection just ends
        let call = only_call(&bot);
        assert_eq!(call.caller_audio, [0, 1, 2]);
        assert_eq!(
            call.stop_reason.as_deref(),
            Some("socket-closed"),
            "{call:#?}"
        );
        let stop: serde_json::Value = serde_json::from_str(call.frames.last().unwrap()).unwrap();
        assert_eq!(stop["stream_sid"], "MZgone");
        assert_eq!(stop["stop"]["call_sid"], "CAgone");
        assert!(call.closed_cleanly);
        server.wait_for_log(&["media.connected", runs_on]);
    }
}

#[test]
fn garbage_from_the_bot_is_logged_and_skipped() {
    let bot = TestBot::start(ECHO_DELAY_MS);
    let server = relay_server(&bot.url(), &[]);
    let mut p = plan(&server, 8000, 3000);
    p.dtmf_during = vec![(1000, '9')];
    let report = run_call(&p);
    assert!(report.is_clean(), "the call went on untouched: {report:#?}");
    assert_eq!(report.echoed, p.audio.len());
    server.wait_for_log(&[
        "relay.bad_frame",
        &format!("callLogId={}", report.call_log_id),
    ]);
    server.wait_for_log(&[
        "media.ended",
        &format!("callLogId={}", report.call_log_id),
        "relayBadFrames=2",
    ]);
    let metrics = String::from_utf8_lossy(&server.get("/metrics").body).into_owned();
    assert!(
        metrics.contains("exotel_voicebot_relay_bad_frames_total 2"),
        "{metrics}"
    );
}

#[test]
fn a_bot_that_stops_reading_never_holds_up_the_caller() {
    let bot = TestBot::start(ECHO_DELAY_MS);
    // A caller this far ahead of real time is held back by design (MEDIA_MAX_AHEAD_S,
    // tests/chaos.rs); lifted here, where the flood is only the means to fill every buffer.
    let server = relay_server(
        &bot.url(),
        &[
            ("BOT_SEND_BUFFER_BYTES", "16384"),
            ("MEDIA_MAX_AHEAD_S", "86400"),
            ("MEDIA_MAX_FRAMES_PER_S", "1000000"),
        ],
    );
    let mut ws = ws_connect(server.addr, &server.media_path("CAflood")).unwrap();
    ws.send(Message::text(
        r#"{"event":"start","stream_sid":"MZf","start":{"call_sid":"CAflood","media_format":{"sample_rate":"8000"}}}"#,
    ))
    .unwrap();
    // `5` makes the test bot stop reading for 15 s: sending must end long before.
    ws.send(Message::text(
        r#"{"event":"dtmf","stream_sid":"MZf","dtmf":{"digit":"5"}}"#,
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Far more than the kernel's buffers and the relay's 16 KiB hold, as fast as possible.
    let payload = base64_of(&speech_like(8000, 100, 1));
    let frame =
        format!(r#"{{"event":"media","stream_sid":"MZf","media":{{"payload":"{payload}"}}}}"#);
    let started = Instant::now();
    for _ in 0..12_000 {
        ws.write(Message::text(frame.clone())).unwrap();
    }
    ws.flush().unwrap();
    let took = started.elapsed();
    eprintln!("12,000 frames sent in {took:?} while the bot did not read");
    assert!(
        took < Duration::from_secs(12),
        "the server kept reading the caller while the bot did not read ({took:?})"
    );
    ws.send(Message::text(
        r#"{"event":"stop","stream_sid":"MZf","stop":{"reason":"callended"}}"#,
    ))
    .unwrap();
    let line = server.wait_for_log(&["media.ended", "framesIn=12000"]);
    let dropped: u64 = line
        .split("relayDroppedToBot=")
        .nth(1)
        .and_then(|v| v.split(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("relayDroppedToBot in the log line");
    assert!(
        dropped > 0,
        "frames beyond the send buffer were dropped and counted: {line}"
    );
    let metrics = String::from_utf8_lossy(&server.get("/metrics").body).into_owned();
    assert!(
        metrics.contains(&format!(
            "exotel_voicebot_relay_frames_dropped_total{{direction=\"to_bot\"}} {dropped}"
        )),
        "{metrics}"
    );
}

fn base64_of(samples: &[i16]) -> String {
    use base64::Engine as _;
    let mut pcm = Vec::new();
    exotel_voicebot::media::audio::samples_to_pcm(samples, &mut pcm);
    base64::engine::general_purpose::STANDARD.encode(pcm)
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn tls_bot() -> TestBot {
    let read = |name: &str| std::fs::read_to_string(fixture(name)).unwrap();
    TestBot::start_tls(ECHO_DELAY_MS, &read("bot-cert.pem"), &read("bot-key.pem"))
}

#[test]
fn a_wss_bot_behind_a_private_ca_is_relayed_bit_exact() {
    for (loops, runs_on) in HOMES {
        // tests/fixtures: a test-only CA and a certificate for localhost signed by it.
        let bot = tls_bot();
        let ca = fixture("ca.pem");
        let server = relay_server(&bot.url(), &[("BOT_CA_FILE", &ca), ("MEDIA_LOOPS", loops)]);
        let p = plan(&server, 8000, 2000);
        let report = run_call(&p);
        assert!(report.is_clean(), "{report:#?}");
        assert_eq!(report.echoed, p.audio.len());
        let call = only_call(&bot);
        assert!(
            call.caller_audio == *p.audio,
            "the bot heard the caller exactly"
        );
        assert!(call.closed_cleanly);
        server.wait_for_log(&["media.connected", runs_on]);
    }
}

#[test]
fn a_wss_bot_whose_certificate_is_not_trusted_is_unavailable() {
    let bot = tls_bot();
    let server = relay_server(&bot.url(), &[]);
    let report = run_call(&plan(&server, 8000, 1000));
    assert_eq!(report.ended_by, EndedBy::Server(1000), "{report:#?}");
    server.wait_for_log(&["relay.unavailable", "TLS"]);
}
