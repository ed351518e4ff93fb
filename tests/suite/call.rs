//! `POST /call` end to end: the real binary, a fake Exotel on loopback, and what arrives there.

use crate::support;

use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
use support::{form_pairs, request, Server};

const SID: &str = "acme1";
const KEY: &str = "key-abc";
const TOKEN: &str = "tok-xyz";

fn accepting() -> FakeExotel {
    FakeExotel::start(Behaviour::Accept {
        sid: "c0ffee".into(),
    })
}

/// Credentials for the applet flow, plus `extra`.
fn applet_env<'a>(fake: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("EXOTEL_API_KEY", KEY),
        ("EXOTEL_API_TOKEN", TOKEN),
        ("EXOTEL_SID", SID),
        ("EXOTEL_APP_ID", "4242"),
        ("EXOTEL_CALLER_ID", "08047112233"),
        ("EXOTEL_API_BASE_URL", fake),
    ];
    env.extend_from_slice(extra);
    env
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, val)| (k.to_string(), val.to_string()))
        .collect()
}

#[test]
fn readme_curl_example_sends_exactly_the_original_servers_request() {
    let fake = accepting();
    let base = fake.base_url();
    let server = Server::start(&applet_env(&base, &[]));
    let r = server.post_json(
        "/call",
        r#"{"to": "+919876543210", "callLogId": "test-call-123"}"#,
    );
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json(),
        serde_json::json!({"callLogId": "test-call-123", "callSid": "c0ffee", "status": "queued"})
    );

    let got = fake.received();
    assert_eq!(got.len(), 1);
    let call = &got[0];
    assert_eq!(call.method, "POST");
    assert_eq!(call.path, format!("/v1/Accounts/{SID}/Calls/connect.json"));
    assert_eq!(call.headers["authorization"], basic(KEY, TOKEN));
    assert_eq!(
        call.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        form_pairs(&call.body),
        pairs(&[
            ("From", "+919876543210"),
            ("CallerId", "08047112233"),
            ("Url", "http://my.exotel.com/acme1/exoml/start_voice/4242"),
            ("CustomField", "test-call-123"),
            // Added for the call log : Exotel reports how the call ended.
            (
                "StatusCallback",
                &format!(
                    "http://localhost:{}/api/v1/exotel/status",
                    server.addr.port()
                )
            ),
            ("StatusCallbackEvents[]", "terminal"),
            ("StatusCallbackEvents[]", "answered"),
        ])
    );
    server.wait_for_log(&["call.placed", "callLogId=test-call-123", "callSid=c0ffee"]);
}

#[test]
fn without_call_log_id_one_is_generated_and_sent_as_custom_field() {
    let fake = accepting();
    let base = fake.base_url();
    let server = Server::start(&applet_env(&base, &[]));
    // The same request as a form, the other encoding /call takes.
    let r = request(
        server.addr,
        "POST",
        "/call",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"to=%2B919876543210",
    );
    assert_eq!(r.status, 200);
    let id = r.json()["callLogId"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 29, "generated ids are time-sortable hex: {id}");
    let got = fake.received();
    let fields = form_pairs(&got[0].body);
    assert_eq!(
        fields.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        [
            "From",
            "CallerId",
            "Url",
            "CustomField",
            "StatusCallback",
            "StatusCallbackEvents[]",
            "StatusCallbackEvents[]"
        ]
    );
    assert_eq!(fields[3].1, id);
    // A second call gets another id.
    let again = server.post_json("/call", r#"{"to": "9876543210"}"#);
    assert_ne!(again.json()["callLogId"], id);
}

#[test]
fn stream_mode_sends_stream_url_with_a_media_token_instead_of_url() {
    let fake = accepting();
    let base = fake.base_url();
    // No EXOTEL_APP_ID: stream mode is the default.
    let server = Server::start(&[
        ("EXOTEL_API_KEY", KEY),
        ("EXOTEL_API_TOKEN", TOKEN),
        ("EXOTEL_SID", SID),
        ("EXOTEL_CALLER_ID", "08047112233"),
        ("EXOTEL_API_BASE_URL", &base),
        ("WEBHOOK_BASE_URL", "https://voice.example.com"),
    ]);
    let r = server.post_json("/call", r#"{"to": "+919876543210", "callLogId": "s-1"}"#);
    assert_eq!(r.status, 200);
    let fields = form_pairs(&fake.received()[0].body);
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "From",
            "CallerId",
            "StreamType",
            "StreamUrl",
            "CustomField",
            "StatusCallback",
            "StatusCallbackEvents[]",
            "StatusCallbackEvents[]"
        ]
    );
    assert_eq!(
        fields[5].1,
        "https://voice.example.com/api/v1/exotel/status"
    );
    assert_eq!(fields[2].1, "bidirectional");
    let url = &fields[3].1;
    assert!(
        url.starts_with("wss://voice.example.com/media?sample-rate=8000&token="),
        "{url}"
    );
    assert!(url.ends_with("&callLogId=s-1"), "{url}");
    assert!(url.len() <= 600, "Exotel's StreamUrl limit");
}

#[test]
fn optional_fields_are_passed_with_exotels_names() {
    let fake = accepting();
    let base = fake.base_url();
    let server = Server::start(&applet_env(&base, &[]));
    let r = server.post_json(
        "/call",
        r#"{"to": "+919876543210", "callLogId": "o-1", "timeLimit": 600, "timeOut": 30, "record": true,
            "recordingChannels": "dual", "statusCallback": "https://me.example/status",
            "statusCallbackEvents": ["terminal", "answered"], "statusCallbackContentType": "application/json"}"#,
    );
    assert_eq!(r.status, 200);
    let fields = form_pairs(&fake.received()[0].body);
    assert_eq!(
        fields[4..].to_vec(),
        pairs(&[
            ("TimeLimit", "600"),
            ("TimeOut", "30"),
            ("Record", "true"),
            ("RecordingChannels", "dual"),
            ("StatusCallback", "https://me.example/status"),
            ("StatusCallbackEvents[]", "terminal"),
            ("StatusCallbackEvents[]", "answered"),
            ("StatusCallbackContentType", "application/json"),
        ])
    );
}

#[test]
fn bad_input_is_refused_before_exotel_is_asked() {
    let fake = accepting();
    let base = fake.base_url();
    let server = Server::start(&applet_env(&base, &[]));
    for (body, field) in [
        (r#"{"callLogId": "x"}"#, "to is missing"),
        (r#"{"to": "hello"}"#, "to:"),
        (r#"{"to": "+91 98"}"#, "to:"),
        (
            r#"{"to": "+919876543210", "callLogId": "has space"}"#,
            "callLogId",
        ),
        (
            r#"{"to": "+919876543210", "timeLimit": 14401}"#,
            "timeLimit",
        ),
        (r#"{"to": "+919876543210", "record": "maybe"}"#, "record"),
        (
            r#"{"to": "+919876543210", "statusCallbackEvents": ["ringing"]}"#,
            "statusCallbackEvents",
        ),
        (r#"["not", "an", "object"]"#, "object"),
        (r#"{"to": "+9198"#, "not valid JSON"),
    ] {
        let r = server.post_json("/call", body);
        let json = r.assert_error(400, "bad_request");
        assert!(
            json["detail"].as_str().unwrap().contains(field),
            "{body} -> {json}"
        );
    }
    let long_id = format!(
        r#"{{"to": "+919876543210", "callLogId": "{}"}}"#,
        "x".repeat(129)
    );
    server
        .post_json("/call", &long_id)
        .assert_error(400, "bad_request");
    // The edge: 128 characters is fine.
    let ok_id = format!(
        r#"{{"to": "+919876543210", "callLogId": "{}"}}"#,
        "x".repeat(128)
    );
    assert_eq!(server.post_json("/call", &ok_id).status, 200);
    assert_eq!(
        fake.received().len(),
        1,
        "only the valid request reached Exotel"
    );
    server.assert_healthy();
}

#[test]
fn missing_credentials_answer_503_naming_the_variables() {
    let server = Server::start(&[("EXOTEL_SID", SID), ("EXOTEL_APP_ID", "1")]);
    let json = server
        .post_json("/call", r#"{"to": "+919876543210"}"#)
        .assert_error(503, "not_configured");
    let detail = json["detail"].as_str().unwrap();
    for name in ["EXOTEL_API_KEY", "EXOTEL_API_TOKEN", "EXOTEL_CALLER_ID"] {
        assert!(detail.contains(name), "{detail}");
    }
    assert!(!detail.contains("EXOTEL_SID"), "{detail}");
    server.wait_for_log(&["config.calls_disabled", "EXOTEL_API_KEY"]);
    server.assert_healthy();
}

#[test]
fn api_token_is_required_when_set() {
    let fake = accepting();
    let base = fake.base_url();
    let server = Server::start(&applet_env(&base, &[("API_TOKEN", "s3cret")]));
    let body = br#"{"to": "+919876543210"}"#;
    let json = [("Content-Type", "application/json")];
    let r = request(server.addr, "POST", "/call", &json, body);
    r.assert_error(401, "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let wrong = [
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer s3creT"),
    ];
    request(server.addr, "POST", "/call", &wrong, body).assert_error(401, "unauthorized");
    let right = [
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer s3cret"),
    ];
    assert_eq!(
        request(server.addr, "POST", "/call", &right, body).status,
        200
    );
    assert_eq!(fake.received().len(), 1);
}

#[test]
fn exotel_refusals_become_502_with_exotels_status_and_message() {
    let fake = FakeExotel::start(Behaviour::Answer {
        status: 401,
        body: r#"{"RestException":{"Status":401,"Message":"Authentication is required to view this resource","Code":20003}}"#.into(),
    });
    let base = fake.base_url();
    let server = Server::start(&applet_env(&base, &[]));
    let call = |n: u32| format!(r#"{{"to": "+919876543210", "callLogId": "r-{n}"}}"#);
    let json = server
        .post_json("/call", &call(1))
        .assert_error(502, "exotel_refused");
    assert_eq!(json["exotelStatus"], 401);
    assert_eq!(
        json["exotelMessage"],
        "Authentication is required to view this resource"
    );
    assert_eq!(json["exotelCode"], "20003");
    assert_eq!(json["callLogId"], "r-1");

    fake.set(Behaviour::Answer {
        status: 500,
        body: "upstream exploded".into(),
    });
    let json = server
        .post_json("/call", &call(2))
        .assert_error(502, "exotel_refused");
    assert_eq!(json["exotelStatus"], 500);
    assert!(json["exotelMessage"]
        .as_str()
        .unwrap()
        .contains("upstream exploded"));

    fake.set(Behaviour::Answer {
        status: 200,
        body: "<html>maintenance</html>".into(),
    });
    let json = server
        .post_json("/call", &call(3))
        .assert_error(502, "exotel_bad_answer");
    assert_eq!(json["exotelStatus"], 200);

    fake.set(Behaviour::Garbage);
    let json = server
        .post_json("/call", &call(4))
        .assert_error(502, "exotel_bad_answer");
    assert!(
        json.get("exotelStatus").is_none(),
        "garbage has no status: {json}"
    );

    assert_eq!(
        fake.received().len(),
        4,
        "one request per /call: nothing is retried"
    );
    server.assert_healthy();
}

#[test]
fn exotel_not_answering_is_a_504_and_is_not_retried() {
    let fake = FakeExotel::start(Behaviour::Silent);
    let base = fake.base_url();
    let server = Server::start(&applet_env(&base, &[("EXOTEL_TIMEOUT_MS", "1000")]));
    let started = std::time::Instant::now();
    let json = server
        .post_json("/call", r#"{"to": "+919876543210", "callLogId": "t-1"}"#)
        .assert_error(504, "exotel_timeout");
    assert!(started.elapsed() >= std::time::Duration::from_millis(1000));
    assert!(json["detail"]
        .as_str()
        .unwrap()
        .contains("may still have been placed"));
    // The server stays responsive while an API thread waits on Exotel.
    server.assert_healthy();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(
        fake.received().len(),
        1,
        "a timed-out Calls/connect is never retried"
    );
}

#[test]
fn exotel_unreachable_is_a_502() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let base = format!("http://{closed}");
    let server = Server::start(&applet_env(&base, &[]));
    server
        .post_json("/call", r#"{"to": "+919876543210"}"#)
        .assert_error(502, "exotel_unreachable");
}

#[test]
fn a_busy_pool_answers_503_and_sends_nothing_late() {
    // One API thread, stuck on a silent Exotel: minreq's timeout is whole seconds (2 s for
    // 1500 ms), so the thread is busy past the second /call's deadline (1500 ms after the
    // first reached Exotel, when the second is sent). The
    // second must then never reach Exotel, even after the thread frees up.
    let fake = FakeExotel::start(Behaviour::Silent);
    let base = fake.base_url();
    let server = Server::start(&applet_env(
        &base,
        &[("EXOTEL_TIMEOUT_MS", "1500"), ("EXOTEL_API_THREADS", "1")],
    ));
    let addr = server.addr;
    let first = std::thread::spawn(move || {
        request(
            addr,
            "POST",
            "/call",
            &[("Content-Type", "application/json")],
            br#"{"to": "+919876543210", "callLogId": "first"}"#,
        )
    });
    // The first request has reached Exotel, which holds it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while fake.received().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first request never reached Exotel"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let second = server.post_json("/call", r#"{"to": "+919876543210", "callLogId": "second"}"#);
    let json = second.assert_error(503, "exotel_busy");
    assert!(json["detail"]
        .as_str()
        .unwrap()
        .contains("nothing was sent"));
    assert_eq!(first.join().unwrap().status, 504);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let got = fake.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(String::from_utf8_lossy(&got[0].body).contains("CustomField=first"));
}

#[test]
fn dotenv_is_read_and_the_environment_wins() {
    let fake = accepting();
    let dir = support::temp_dir("dotenv");
    std::fs::write(
        dir.join(".env"),
        format!(
            "EXOTEL_API_KEY=key-from-file\nEXOTEL_API_TOKEN={TOKEN}\nEXOTEL_SID=sid-from-file\nEXOTEL_APP_ID=1\nEXOTEL_CALLER_ID=0801\nEXOTEL_API_BASE_URL={}\n",
            fake.base_url()
        ),
    )
    .unwrap();
    let server = Server::start_in(dir, &[("EXOTEL_API_KEY", KEY)]);
    assert_eq!(
        server
            .post_json("/call", r#"{"to": "+919876543210"}"#)
            .status,
        200
    );
    let got = &fake.received()[0];
    assert_eq!(got.path, "/v1/Accounts/sid-from-file/Calls/connect.json");
    assert_eq!(got.headers["authorization"], basic(KEY, TOKEN));
}

#[test]
fn calls_waiting_on_exotel_do_not_stall_the_server() {
    // If the blocking API request ran on a coroutine, eight of them would occupy every may worker
    // (one per core) and /health would wait for the timeouts. It must answer before any of them.
    let fake = FakeExotel::start(Behaviour::Silent);
    let base = fake.base_url();
    let server = Server::start(&applet_env(
        &base,
        &[("EXOTEL_TIMEOUT_MS", "1500"), ("EXOTEL_API_THREADS", "8")],
    ));
    let addr = server.addr;
    let waiting: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let body = format!(r#"{{"to": "+919876543210", "callLogId": "w-{i}"}}"#);
                let r = request(
                    addr,
                    "POST",
                    "/call",
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                );
                (r.status, std::time::Instant::now())
            })
        })
        .collect();
    while fake.received().len() < 8 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    server.assert_healthy();
    let healthy_at = std::time::Instant::now();
    for w in waiting {
        let (status, returned_at) = w.join().unwrap();
        assert_eq!(status, 504);
        assert!(
            healthy_at < returned_at,
            "/health waited for a blocked Exotel request"
        );
    }
}

#[test]
fn a_call_log_id_still_being_placed_cannot_be_placed_again() {
    // The first /call waits on a silent Exotel; the same id meanwhile must not ring anyone twice.
    let fake = FakeExotel::start(Behaviour::Silent);
    let base = fake.base_url();
    let server = Server::start(&applet_env(&base, &[("EXOTEL_TIMEOUT_MS", "1500")]));
    let addr = server.addr;
    let body = br#"{"to": "+919876543210", "callLogId": "dup-1"}"#;
    let first = std::thread::spawn(move || {
        request(
            addr,
            "POST",
            "/call",
            &[("Content-Type", "application/json")],
            body,
        )
    });
    while fake.received().is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    server
        .post_json("/call", std::str::from_utf8(body).unwrap())
        .assert_error(409, "call_log_id_taken");
    assert_eq!(first.join().unwrap().status, 504);
    assert_eq!(fake.received().len(), 1, "Exotel was asked once");
}

#[test]
fn a_raw_plus_in_a_form_gets_a_hint_and_unknown_fields_are_named() {
    let fake = accepting();
    let server = Server::start(&applet_env(&fake.base_url(), &[]));
    // `to=+91 98765 43210`, the plus unencoded: it arrives as a space.
    let r = request(
        server.addr,
        "POST",
        "/call",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"to=+91+98765+43210",
    );
    let error = r.assert_error(400, "bad_request");
    assert!(error["detail"].as_str().unwrap().contains("%2B"), "{error}");
    // A misspelt field is refused with its name, in JSON and in a form.
    let r = server.post_json("/call", r#"{"to": "+919876543210", "timeLimt": 60}"#);
    let error = r.assert_error(400, "bad_request");
    assert!(
        error["detail"].as_str().unwrap().contains("\"timeLimt\""),
        "{error}"
    );
    let r = request(
        server.addr,
        "POST",
        "/call",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"to=%2B919876543210&recording=true",
    );
    let error = r.assert_error(400, "bad_request");
    assert!(
        error["detail"].as_str().unwrap().contains("\"recording\""),
        "{error}"
    );
    assert!(fake.received().is_empty(), "nothing reached Exotel");
}
