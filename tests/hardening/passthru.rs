//! The Passthru about other calls: it learns nothing and writes nothing for a CallSid that is not the call's.

use super::*;

const PASSTHRU: &str = "/api/v1/exotel/passthru";

/// A Passthru naming `call_log_id` with `call_sid`, carrying a stream end and a recording URL.
fn passthru(
    server: &Server,
    call_log_id: &str,
    call_sid: &str,
    stream_status: &str,
    recording: &str,
) -> support::TestResponse {
    let mut recording_encoded = String::new();
    exotel_voicebot::http::form::encode_into(&mut recording_encoded, recording);
    let query = format!(
        "CallSid={call_sid}&CustomField={call_log_id}&Stream%5BStatus%5D={stream_status}&Stream%5BDuration%5D=99&Stream%5BRecordingUrl%5D={recording_encoded}&Stream%5BDisconnectedBy%5D=user"
    );
    request(server.addr, "GET", &format!("{PASSTHRU}?{query}"), &[], b"")
}

#[test]
fn a_passthru_under_another_calls_id_learns_nothing_and_writes_nothing() {
    use exotel_voicebot::sim::{run_call, CallPlan};
    let server = Server::start(&[]);
    // A call the echo bot hands off (its caller pressed 0).
    let mut plan = CallPlan::new(
        server.addr,
        exotel_voicebot::media::audio::speech_like(8000, 1000, 3),
    );
    plan.dtmf = "0".into();
    plan.check_echo = false;
    plan.tail_ms = 1500;
    let report = run_call(&plan);
    let id = report.call_log_id.clone();
    // A stranger names it with a made-up CallSid: "no handoff", no reason, nothing on the row.
    let stranger = passthru(
        &server,
        &id,
        "CA-made-up",
        "failed",
        "https://phish.example/rec.mp3",
    );
    assert_eq!(stranger.status, 302, "{stranger:?}");
    assert_eq!(
        stranger.json(),
        serde_json::json!({"handoff": false, "reason": null})
    );
    let location = stranger.header("location").unwrap_or_default().to_owned();
    assert!(!location.contains('?'), "{location}");
    server.wait_for_log(&["passthru.call_sid_mismatch", &id, "CA-made-up"]);
    // Exotel, with the call's own CallSid, is answered and recorded.
    let exotel = passthru(
        &server,
        &id,
        &report.call_sid,
        "failed",
        "http://plain.example/rec.mp3",
    );
    assert_eq!(exotel.status, 200, "{exotel:?}");
    assert_eq!(exotel.json()["reason"], "caller-asked");
    let row = wait_for_row(&server, &id, |r| !r["handoffAnswer"].is_null());
    assert_eq!(row["streamStatus"], "failed", "{row}");
    assert_eq!(row["disconnectedBy"], "user", "{row}");
    assert!(
        row["exotelRecordingUrl"].is_null(),
        "only https:// is kept: {row}"
    );
    // The recording URL is written once, from a request that names the call rightly.
    let first = passthru(
        &server,
        &id,
        &report.call_sid,
        "failed",
        "https://recordings.example/1.mp3",
    );
    assert_eq!(first.status, 200);
    let row = wait_for_row(&server, &id, |r| !r["exotelRecordingUrl"].is_null());
    assert_eq!(
        row["exotelRecordingUrl"],
        "https://recordings.example/1.mp3"
    );
    let status = format!(
        "CallSid={}&CustomField={id}&Status=completed&RecordingUrl=https%3A%2F%2Fother.example%2F3.mp3",
        report.call_sid
    );
    assert_eq!(
        server.post_form("/api/v1/exotel/status", &status).status,
        200
    );
    // The call log applies events in order: once this last one shows, both were applied, and
    // neither changed the URL.
    let last = passthru(
        &server,
        &id,
        &report.call_sid,
        "completed",
        "https://recordings.example/2.mp3",
    );
    assert_eq!(last.status, 200);
    let row = wait_for_row(&server, &id, |r| r["streamStatus"] == "completed");
    assert_eq!(
        row["exotelRecordingUrl"], "https://recordings.example/1.mp3",
        "{row}"
    );
}

#[test]
fn a_passthru_for_a_call_not_in_memory_writes_only_with_the_calls_own_call_sid() {
    use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-placed".into(),
    });
    let env = line_env(&fake);
    let server = Server::start(&as_refs(&env));
    let placed = server.post_json(
        "/call",
        r#"{"to": "+919876543210", "callLogId": "placed-1"}"#,
    );
    assert_eq!(placed.status, 200, "{placed:?}");
    wait_for_row(&server, "placed-1", |r| r["callSid"] == "CA-placed");
    let stranger = passthru(
        &server,
        "placed-1",
        "CA-made-up",
        "failed",
        "https://phish.example/r.mp3",
    );
    assert_eq!(
        stranger.json(),
        serde_json::json!({"handoff": false, "reason": null})
    );
    server.wait_for_log(&["calllog.passthru_call_sid_mismatch", "placed-1"]);
    let exotel = passthru(
        &server,
        "placed-1",
        "CA-placed",
        "completed",
        "https://recordings.example/ok.mp3",
    );
    assert_eq!(exotel.json()["handoff"], false);
    let row = wait_for_row(&server, "placed-1", |r| r["streamStatus"] == "completed");
    assert_eq!(
        row["exotelRecordingUrl"], "https://recordings.example/ok.mp3",
        "{row}"
    );
}
