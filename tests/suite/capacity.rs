//! Capacity that always comes back, on the real binary: media tokens of replaced sessions are
//! freed and never revived, a placed call whose status callback never comes is asked about and
//! closed, a webhook call whose media never connects is ended, a stream-mode token outlives the
//! ringing, and every content type `/call` lets a user ask Exotel for is read by our status
//! endpoint.

use crate::support;

use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{request, ws_connect, Server};
use tungstenite::{Message, WebSocket};

/// Asks the webhook for `id`'s media path, as Exotel would for CallSid `call_sid`.
fn webhook(server: &Server, id: &str, call_sid: &str) -> support::TestResponse {
    server.get(&format!(
        "/voicebot/connect?CallSid={call_sid}&CustomField={id}"
    ))
}

fn media_path_of(r: &support::TestResponse) -> String {
    let url = r.json()["url"].as_str().unwrap().to_owned();
    url[url.find("/media").unwrap()..].to_owned()
}

/// Opens the media socket and sends `start` for `call_sid`; waits until the server has it.
fn stream(server: &Server, path: &str, call_sid: &str) -> WebSocket<TcpStream> {
    let mut ws = ws_connect(server.addr, path).unwrap();
    let start = format!(
        r#"{{"event":"start","stream_sid":"S-{call_sid}","start":{{"call_sid":"{call_sid}"}}}}"#
    );
    ws.send(Message::text(start)).unwrap();
    ws
}

fn row(server: &Server, id: &str) -> serde_json::Value {
    server.get(&format!("/calls/{id}")).json()
}

fn wait_for_status(server: &Server, id: &str, status: &str, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let r = row(server, id);
        if r["status"] == status {
            return r;
        }
        assert!(Instant::now() < deadline, "{id} never became {status}: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn reconnecting_one_call_many_times_never_fills_the_token_limit() {
    let server = Server::start(&[("MAX_PENDING_MEDIA_TOKENS", "3")]);
    let mut sockets = Vec::new();
    let mut paths = Vec::new();
    for round in 0..8 {
        let r = webhook(&server, "flappy", "CA-flappy");
        assert_eq!(r.status, 200, "connect {round}: {r:?}");
        let path = media_path_of(&r);
        sockets.push(stream(&server, &path, "CA-flappy"));
        server.wait_for_log(&["media.start", "callLogId=flappy"]);
        paths.push(path);
        std::thread::sleep(Duration::from_millis(300));
    }
    // The replaced sessions' tokens are gone: only the last one opens the call.
    let first = ws_connect(server.addr, &paths[0]);
    assert!(
        matches!(first, Err(tungstenite::Error::Http(ref r)) if r.status() == 401),
        "a replaced session's token is void"
    );
    // Other calls still get tokens.
    assert_eq!(webhook(&server, "other", "CA-other").status, 200);

    // The call ends; a later call reusing the callLogId cannot be opened with its old tokens.
    let mut last = sockets.pop().unwrap();
    last.send(Message::text(r#"{"event":"stop"}"#)).unwrap();
    while last.read().is_ok() {}
    server.wait_for_log(&["media.ended", "callLogId=flappy", "reason=unspecified"]);
    let again = webhook(&server, "flappy", "CA-flappy-2");
    assert_eq!(again.status, 200);
    for old in &paths {
        support::assert_refused_401(
            ws_connect(server.addr, old),
            "an old token never comes back to life",
        );
    }
}

fn placing_env(fake: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("EXOTEL_API_KEY", "k"),
        ("EXOTEL_API_TOKEN", "t"),
        ("EXOTEL_SID", "acme1"),
        ("EXOTEL_APP_ID", "4242"),
        ("EXOTEL_CALLER_ID", "08047112233"),
        ("EXOTEL_API_BASE_URL", fake),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.dedup_by(|a, b| a.0 == b.0);
    env
}

fn start_with(env: &[(String, String)]) -> Server {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start(&pairs)
}

#[test]
fn a_placed_call_whose_callback_never_comes_is_asked_about_and_closed() {
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-lost".into(),
    });
    fake.set_call_status("CA-lost", "no-answer");
    let base = fake.base_url();
    let server = start_with(&placing_env(
        &base,
        &[("MAX_CONCURRENT_CALLS", "1"), ("CALL_CHECK_MARGIN_S", "1")],
    ));
    let placed = server.post_json(
        "/call",
        r#"{"to":"+919876543210","callLogId":"lost-1","timeOut":1}"#,
    );
    assert_eq!(placed.status, 200, "{placed:?}");
    // The one slot is held; the 429 says when it is really expected back: at the check.
    let busy = server.post_json("/call", r#"{"to":"+919876543210","callLogId":"lost-2"}"#);
    assert_eq!(busy.status, 429);
    let retry: u64 = busy.header("retry-after").unwrap().parse().unwrap();
    assert!(retry <= 2, "Retry-After {retry}");
    // No callback comes: after 1 s of ringing and 1 s of margin Exotel is asked.
    let r = wait_for_status(&server, "lost-1", "no-answer", Duration::from_secs(6));
    assert_eq!(
        r["durationS"], 7,
        "Exotel's duration from the call details: {r}"
    );
    server.wait_for_log(&["call.checked", "callLogId=lost-1", "status=no-answer"]);
    let asked = fake
        .received()
        .into_iter()
        .find(|q| q.method == "GET")
        .expect("the call-details request");
    assert_eq!(asked.path, "/v1/Accounts/acme1/Calls/CA-lost.json");
    assert!(asked.headers["authorization"].starts_with("Basic "));
    // Its slot is back.
    assert_eq!(server.get("/health").json()["activeCalls"], 0);
    let next = server.post_json("/call", r#"{"to":"+919876543210","callLogId":"lost-3"}"#);
    assert_eq!(next.status, 200, "{next:?}");
}

#[test]
fn a_call_still_ringing_is_asked_about_again_not_closed() {
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-ring".into(),
    });
    fake.set_call_status("CA-ring", "ringing");
    let base = fake.base_url();
    let server = start_with(&placing_env(&base, &[("CALL_CHECK_MARGIN_S", "1")]));
    let placed = server.post_json(
        "/call",
        r#"{"to":"+919876543210","callLogId":"ring-1","timeOut":1}"#,
    );
    assert_eq!(placed.status, 200);
    server.wait_for_log(&["call.checked", "callLogId=ring-1", "asked again"]);
    assert_eq!(row(&server, "ring-1")["status"], "initiated");
    assert_eq!(server.get("/health").json()["activeCalls"], 1);
}

#[test]
fn a_webhook_call_whose_media_never_connects_is_ended_no_media() {
    let server = Server::start(&[("MEDIA_TOKEN_TTL_S", "1")]);
    let r = server.get("/voicebot/connect?CallSid=CA-nm&CustomField=no-media-1&Direction=incoming");
    assert_eq!(r.status, 200);
    assert_eq!(server.get("/health").json()["activeCalls"], 1);
    let r = wait_for_status(&server, "no-media-1", "failed", Duration::from_secs(5));
    assert_eq!(r["endReason"], "no-media", "{r}");
    assert_eq!(server.get("/health").json()["activeCalls"], 0);
}

#[test]
fn a_stream_mode_token_lives_as_long_as_exotel_may_ring() {
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-late".into(),
    });
    let base = fake.base_url();
    let mut env = placing_env(
        &base,
        &[("MEDIA_TOKEN_TTL_S", "1"), ("CALL_CHECK_MARGIN_S", "1")],
    );
    env.retain(|(k, _)| k != "EXOTEL_APP_ID");
    let server = start_with(&env);
    let placed = server.post_json(
        "/call",
        r#"{"to":"+919876543210","callLogId":"late-1","timeOut":4}"#,
    );
    assert_eq!(placed.status, 200, "{placed:?}");
    let form = fake.call_for("late-1").unwrap();
    let url = &form.iter().find(|(k, _)| k == "StreamUrl").unwrap().1;
    // The customer answers 2.5 s later: past MEDIA_TOKEN_TTL_S, within the 4 s of ringing.
    std::thread::sleep(Duration::from_millis(2500));
    let mut ws = stream(&server, &url[url.find("/media").unwrap()..], "CA-late");
    ws.send(Message::text(r#"{"event":"stop"}"#)).unwrap();
    while ws.read().is_ok() {}
    wait_for_status(&server, "late-1", "completed", Duration::from_secs(5));
    // A webhook token under the same TTL is void by then: the lifetime was the ring time's.
    let r = webhook(&server, "short-1", "CA-short");
    std::thread::sleep(Duration::from_millis(1500));
    support::assert_refused_401(
        ws_connect(server.addr, &media_path_of(&r)),
        "a token past its TTL",
    );
}

#[test]
fn status_callbacks_are_read_in_every_content_type_call_can_ask_for() {
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-multi".into(),
    });
    let base = fake.base_url();
    let server = start_with(&placing_env(&base, &[]));
    let placed = server.post_json(
        "/call",
        r#"{"to":"+919876543210","callLogId":"multi-1","statusCallbackContentType":"multipart/form-data"}"#,
    );
    assert_eq!(placed.status, 200, "{placed:?}");
    let boundary = "----exotel7MA4YWxkTrZu0gW";
    let mut body = String::new();
    for (k, v) in [
        ("CallSid", "CA-multi"),
        ("Status", "busy"),
        ("CustomField", "multi-1"),
        ("ConversationDuration", "0"),
    ] {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let r = request(
        server.addr,
        "POST",
        "/api/v1/exotel/status",
        &[("Content-Type", &content_type)],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(row(&server, "multi-1")["status"], "busy");
    assert_eq!(server.get("/health").json()["activeCalls"], 0);
    // A multipart body without its boundary is a clear 400, not a 415 or a hang.
    let r = request(
        server.addr,
        "POST",
        "/api/v1/exotel/status",
        &[("Content-Type", "multipart/form-data")],
        body.as_bytes(),
    );
    r.assert_error(400, "bad_request");
}
