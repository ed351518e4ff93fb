//! Graceful shutdown on the real binary: SIGTERM stops new calls, lets live ones finish within
//! SHUTDOWN_GRACE_S, closes the rest, writes every row and exits 0.

use crate::support;

use exotel_voicebot::sim::EndedBy;
use std::time::{Duration, Instant};
use support::Server;

/// The rows, read by the same binary restarted on the same data.
fn rows_after_restart(dir: std::path::PathBuf) -> Vec<serde_json::Value> {
    let server = Server::start_in(dir, &[]);
    server.get("/calls?limit=100").json()["calls"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn sigterm_lets_live_calls_finish_then_exits_0_with_rows_complete() {
    let server = Server::start(&[("SHUTDOWN_GRACE_S", "20")]);
    let calls = support::start_live_calls(&server, 3, 2500);
    server.signal("TERM");
    server.wait_for_log(&["server.draining", "liveCalls=3"]);
    // No new calls meanwhile, on either door.
    server
        .get("/voicebot/connect?CallSid=late")
        .assert_error(503, "shutting_down");
    server
        .post_json("/call", r#"{"to": "+919876543210"}"#)
        .assert_error(503, "shutting_down");
    // Probes see it too, so a load balancer stops sending calls here.
    let health = server.get("/health");
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["status"], "draining");
    assert_eq!(health.json()["activeCalls"], 3);
    for call in calls {
        let report = call.join().unwrap();
        assert!(
            report.is_clean(),
            "a live call finished normally: {report:#?}"
        );
        assert_eq!(report.ended_by, EndedBy::Caller);
    }
    let (code, dir) = server.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    let rows = rows_after_restart(dir);
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|r| r["status"] == "completed" && r["endReason"] == "callended"),
        "{rows:#?}"
    );
}

#[test]
fn calls_still_live_after_the_grace_period_are_closed_and_written() {
    let server = Server::start(&[("SHUTDOWN_GRACE_S", "1")]);
    let calls = support::start_live_calls(&server, 2, 20_000);
    let signalled = Instant::now();
    server.signal("TERM");
    for call in calls {
        let report = call.join().unwrap();
        assert_eq!(
            report.ended_by,
            EndedBy::Server(1001),
            "closed as going away"
        );
        assert_eq!(
            report.echo_mismatched, 0,
            "what came back before the close was exact"
        );
    }
    let (code, dir) = server.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(8),
        "the grace period was kept short"
    );
    let rows = rows_after_restart(dir);
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(row["status"], "completed", "{row}");
        assert_eq!(row["endReason"], "server-shutdown");
        assert!(
            row["framesIn"].as_i64().unwrap() > 5,
            "counts written: {row}"
        );
    }
}

#[test]
fn sigint_on_an_idle_server_exits_0_at_once() {
    let server = Server::start(&[]);
    let started = Instant::now();
    server.signal("INT");
    let (code, _) = server.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_placed_call_still_ringing_at_sigterm_is_served_to_its_end_and_counted() {
    use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-ringing".into(),
    });
    let base = fake.base_url();
    let server = Server::start(&[
        ("EXOTEL_API_KEY", "k"),
        ("EXOTEL_API_TOKEN", "t"),
        ("EXOTEL_SID", "acme"),
        ("EXOTEL_APP_ID", "77"),
        ("EXOTEL_CALLER_ID", "08047112233"),
        ("EXOTEL_API_BASE_URL", &base),
        ("SHUTDOWN_GRACE_S", "20"),
    ]);
    let placed = server.post_json(
        "/call",
        r#"{"to": "+919876543210", "callLogId": "ringing-1"}"#,
    );
    assert_eq!(placed.status, 200, "{placed:?}");
    server.signal("TERM");
    // No media yet, but the call holds its slot: the shutdown counts it and waits for it.
    server.wait_for_log(&["server.draining", "liveCalls=0", "callsHoldingSlots=1"]);
    // A new call is refused; ours, answered by the customer now, is still served.
    server
        .get("/voicebot/connect?CallSid=CA-stranger")
        .assert_error(503, "shutting_down");
    let r = server.get("/voicebot/connect?CallSid=CA-ringing&CustomField=ringing-1");
    assert_eq!(r.status, 200, "{r:?}");
    let url = r.json()["url"].as_str().unwrap().to_owned();
    let mut ws = support::ws_connect(server.addr, &url[url.find("/media").unwrap()..]).unwrap();
    ws.send(tungstenite::Message::text(
        r#"{"event":"start","stream_sid":"S-r","start":{"stream_sid":"S-r","call_sid":"CA-ringing"}}"#,
    ))
    .unwrap();
    server.wait_for_log(&["media.start", "callLogId=ringing-1"]);
    ws.send(tungstenite::Message::text(
        r#"{"event":"stop","stop":{"reason":"callended"}}"#,
    ))
    .unwrap();
    while ws.read().is_ok() {}
    // Its end frees the slot, and the server stops well within its grace.
    let (code, dir) = server.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    let rows = rows_after_restart(dir);
    let row = rows
        .iter()
        .find(|r| r["callLogId"] == "ringing-1")
        .expect("its row");
    assert_eq!(row["status"], "completed", "{row}");
}
