//! `/phones` on the real binary: ExoPhones with their own Exotel accounts, kept across a
//! restart, guarded like `/call`, and their API tokens never in an answer or a log line.

use crate::support;

use std::time::Duration;
use support::{request, Server};

const TOKEN_A: &str = "tok-A-9f8e7d6c5b4a39281716";
const TOKEN_B: &str = "tok-B-0a1b2c3d4e5f60718293";
const TOKEN_B2: &str = "tok-B2-aa55aa55aa55aa55aa55";

#[test]
fn phones_are_kept_shown_masked_and_their_tokens_never_leave() {
    let dir = support::temp_dir("phones");
    let server = Server::start_in(dir.clone(), &[]);
    let mut answers = Vec::new();

    let a = support::json_request(
        &server,
        "POST",
        "/phones",
        &format!(
            r#"{{"number": "08047112233", "apiKey": "key-a", "apiToken": "{TOKEN_A}", "sid": "acme", "appId": "4242", "maxConcurrent": 5, "agent": "reminders"}}"#
        ),
    );
    assert_eq!(a.status, 201, "{}", a.json());
    let a = a.json();
    assert_eq!(a["number"], "+918047112233");
    assert_eq!(a["mode"], "applet");
    // Masked: four characters of a long token say which one it is, nothing more.
    assert_eq!(a["apiToken"], "****1716");
    answers.push(a.to_string());

    let b = support::json_request(
        &server,
        "POST",
        "/phones",
        &format!(
            r#"{{"number": "+918047112244", "apiKey": "key-b", "apiToken": "{TOKEN_B}", "sid": "other-co", "subdomain": "api.in.exotel.com"}}"#
        ),
    );
    assert_eq!(b.status, 201, "{}", b.json());
    assert_eq!(b.json()["mode"], "stream");
    answers.push(b.json().to_string());

    // The same number again, in another spelling: 409.
    let again = support::json_request(
        &server,
        "POST",
        "/phones",
        &format!(
            r#"{{"number": "8047112233", "apiKey": "k", "apiToken": "{TOKEN_A}", "sid": "acme"}}"#
        ),
    );
    answers.push(again.assert_error(409, "phone_exists").to_string());
    // Missing, unknown and unsafe fields are named.
    for (body, named) in [
        (
            r#"{"number": "08047112255", "apiKey": "k", "sid": "s"}"#,
            "apiToken",
        ),
        (
            r#"{"number": "08047112255", "apiKey": "k", "apiToken": "t", "sid": "s", "callerId": "x"}"#,
            "callerId",
        ),
        (
            r#"{"number": "08047112255", "apiKey": "k", "apiToken": "t", "sid": "../x"}"#,
            "sid",
        ),
        (
            r#"{"number": "12", "apiKey": "k", "apiToken": "t", "sid": "s"}"#,
            "number",
        ),
    ] {
        let error = support::json_request(&server, "POST", "/phones", body)
            .assert_error(400, "bad_request");
        assert!(
            error["detail"].as_str().unwrap().contains(named),
            "{named}: {error}"
        );
    }

    // A new token for B: taken, still not shown.
    let patched = support::json_request(
        &server,
        "PATCH",
        "/phones/+918047112244",
        &format!(r#"{{"apiToken": "{TOKEN_B2}", "maxConcurrent": 2}}"#),
    );
    assert_eq!(patched.status, 200, "{}", patched.json());
    assert_eq!(patched.json()["maxConcurrent"], 2);
    answers.push(patched.json().to_string());

    let list = server.get("/phones").json();
    assert_eq!(list["phones"].as_array().unwrap().len(), 2, "{list}");
    answers.push(list.to_string());
    answers.push(server.get("/phones/%2B918047112233").json().to_string());

    // Kept across a restart.
    let first_log = server.settled_log().join("\n");
    server.signal("TERM");
    let (_, _) = server.wait_exit(Duration::from_secs(10));
    let server = Server::start_in(dir.clone(), &[]);
    let b = server.get("/phones/08047112244").json();
    assert_eq!(b["sid"], "other-co", "{b}");
    assert_eq!(b["maxConcurrent"], 2, "{b}");
    answers.push(b.to_string());
    let deleted = request(server.addr, "DELETE", "/phones/+918047112233", &[], b"");
    assert_eq!(deleted.status, 200);
    server
        .get("/phones/08047112233")
        .assert_error(404, "not_found");
    answers.push(server.get("/phones").json().to_string());

    // No token in any answer, nor in either server's log.
    let log = server.settled_log().join("\n");
    for token in [TOKEN_A, TOKEN_B, TOKEN_B2] {
        for answer in &answers {
            assert!(!answer.contains(token), "a token in an answer: {answer}");
        }
        assert!(
            !first_log.contains(token),
            "a token in the first server's log"
        );
        assert!(!log.contains(token), "a token in the log");
    }
    // And the database that holds them is its owner's only.
    support::assert_stored_state_private(&dir);
}

#[test]
fn phones_are_guarded_like_call() {
    let server = Server::start(&[("API_TOKEN", "op-token-123")]);
    server.get("/phones").assert_error(401, "unauthorized");
    support::json_request(&server, "POST", "/phones", "{}").assert_error(401, "unauthorized");
    request(server.addr, "DELETE", "/phones/08047112233", &[], b"")
        .assert_error(401, "unauthorized");
    let r = request(
        server.addr,
        "GET",
        "/phones",
        &[("Authorization", "Bearer op-token-123")],
        b"",
    );
    assert_eq!(r.json(), serde_json::json!({"phones": []}));
    request(
        server.addr,
        "PUT",
        "/phones/08047112233",
        &[("Authorization", "Bearer op-token-123")],
        b"",
    )
    .assert_error(405, "method_not_allowed");
}

/// A fake Exotel account whose calls stay live (they ring for a minute), so that limits bind.
fn account() -> exotel_voicebot::sim::fake_exotel::FakeExotel {
    use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel, Network};
    FakeExotel::start(Behaviour::Network(Network {
        ring: Duration::from_secs(60),
        ..Network::default()
    }))
}

fn basic(key: &str, token: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:{token}"))
    )
}

#[test]
fn each_call_reaches_its_phones_account_within_its_own_and_the_server_limit() {
    let (fake_a, fake_b) = (account(), account());
    // A status callback that never comes is asked about one second after the ring time.
    let server = Server::start(&[("MAX_CONCURRENT_CALLS", "3"), ("CALL_CHECK_MARGIN_S", "1")]);
    let mut answers = Vec::new();
    for (number, key, token, sid, fake, limit) in [
        (
            "08047112233",
            "key-a",
            TOKEN_A,
            "acme",
            &fake_a,
            ", \"maxConcurrent\": 1",
        ),
        ("08047112244", "key-b", TOKEN_B, "other-co", &fake_b, ""),
    ] {
        let body = format!(
            r#"{{"number": "{number}", "apiKey": "{key}", "apiToken": "{token}", "sid": "{sid}", "apiBaseUrl": "{}"{limit}}}"#,
            fake.base_url()
        );
        let created = support::json_request(&server, "POST", "/phones", &body);
        assert_eq!(created.status, 201, "{}", created.json());
        answers.push(created.json().to_string());
    }
    let bodies = std::cell::RefCell::new(Vec::new());
    let call = |from: &str, to: &str| {
        let r = server.post_json(
            "/call",
            &format!(r#"{{"to": "{to}", "from": "{from}", "timeOut": 1}}"#),
        );
        bodies.borrow_mut().push(r.json().to_string());
        r
    };

    // Phone A allows one live call: the second is refused before Exotel is asked.
    let first = call("08047112233", "+919800000001");
    assert_eq!(first.status, 200, "{}", first.json());
    let second = call("+918047112233", "+919800000002");
    let refused = second.assert_error(429, "too_many_calls");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("+918047112233"),
        "{refused}"
    );
    // Phone B has no limit of its own; the server's (3) holds.
    for to in ["+919800000003", "+919800000004"] {
        let placed = call("8047112244", to);
        assert_eq!(placed.status, 200, "{}", placed.json());
    }
    let over = call("8047112244", "+919800000005");
    let refused = over.assert_error(429, "too_many_calls");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("MAX_CONCURRENT_CALLS"),
        "{refused}"
    );
    // A phone that is not one of /phones is named, not guessed.
    call("08047119999", "+919800000006").assert_error(400, "unknown_phone");

    // Each account saw its own calls, with its own credentials, sid and number.
    let (a, b) = (fake_a.network_calls(), fake_b.network_calls());
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(b.len(), 2, "{b:?}");
    assert_eq!(a[0].authorization, basic("key-a", TOKEN_A));
    assert_eq!(a[0].caller_id, "+918047112233");
    assert_eq!(a[0].to, "+919800000001");
    for call in &b {
        assert_eq!(call.authorization, basic("key-b", TOKEN_B));
        assert_eq!(call.caller_id, "+918047112244");
    }
    let paths = |fake: &exotel_voicebot::sim::fake_exotel::FakeExotel| -> Vec<String> {
        fake.received()
            .into_iter()
            .filter(|r| r.method == "POST")
            .map(|r| r.path)
            .collect()
    };
    assert!(paths(&fake_a)
        .iter()
        .all(|p| p == "/v1/Accounts/acme/Calls/connect.json"));
    assert!(paths(&fake_b)
        .iter()
        .all(|p| p == "/v1/Accounts/other-co/Calls/connect.json"));

    // No status callback came (the calls ring for a minute): the watchdog asks each call's
    // own account about it.
    let asked = |fake: &exotel_voicebot::sim::fake_exotel::FakeExotel, sid: &str| {
        fake.received()
            .iter()
            .any(|r| r.method == "GET" && r.path == format!("/v1/Accounts/{sid}/Calls/NET1.json"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !(asked(&fake_a, "acme") && asked(&fake_b, "other-co")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the watchdog did not ask each account: {:?} {:?}",
            fake_a.received(),
            fake_b.received()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for (fake, key, token) in [(&fake_a, "key-a", TOKEN_A), (&fake_b, "key-b", TOKEN_B)] {
        for r in fake.received() {
            assert_eq!(
                r.headers.get("authorization"),
                Some(&basic(key, token)),
                "{} {}",
                r.method,
                r.path
            );
        }
    }

    // Neither token, nor the header made from it, in any answer or the log.
    let log = server.settled_log().join("\n");
    answers.extend(bodies.into_inner());
    for secret in [
        TOKEN_A.to_owned(),
        TOKEN_B.to_owned(),
        basic("key-a", TOKEN_A)["Basic ".len()..].to_owned(),
        basic("key-b", TOKEN_B)["Basic ".len()..].to_owned(),
    ] {
        for answer in &answers {
            assert!(!answer.contains(&secret), "a secret in an answer: {answer}");
        }
        assert!(!log.contains(&secret), "a secret in the log");
    }
}

#[test]
fn an_inbound_call_to_a_phone_counts_against_its_limit() {
    let server = Server::start(&[]);
    let created = support::json_request(
        &server,
        "POST",
        "/phones",
        &format!(
            r#"{{"number": "08047112233", "apiKey": "k", "apiToken": "{TOKEN_A}", "sid": "acme", "maxConcurrent": 1}}"#
        ),
    );
    assert_eq!(created.status, 201);
    // Exotel's webhook for two inbound calls to the phone (its number in Exotel's spelling),
    // and one to another number.
    let first = server.get("/voicebot/connect?CallSid=IN1&CallTo=08047112233&Direction=incoming");
    assert_eq!(first.status, 200);
    let second =
        server.get("/voicebot/connect?CallSid=IN2&CallTo=%2B918047112233&Direction=incoming");
    assert_eq!(
        second.status, 200,
        "the caller still gets an answer: a tone and a hang-up"
    );
    server.wait_for_log(&[
        "webhook.over_capacity",
        "callSid=IN2",
        "phone=+918047112233",
    ]);
    let other = server.get("/voicebot/connect?CallSid=IN3&CallTo=08047119999&Direction=incoming");
    assert_eq!(other.status, 200);
    assert!(
        !server
            .log()
            .iter()
            .any(|l| l.contains("webhook.over_capacity") && l.contains("callSid=IN3")),
        "another number has no such limit"
    );
}
