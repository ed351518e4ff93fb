//! Credentials sent elsewhere: a phone's token follows only a request that knew it, and every URL a secret goes to is parsed strictly.

use super::*;

/// The `Authorization` values a fake Exotel received.
fn authorizations(fake: &exotel_voicebot::sim::fake_exotel::FakeExotel) -> Vec<String> {
    fake.received()
        .into_iter()
        .filter_map(|r| r.headers.get("authorization").cloned())
        .collect()
}

#[test]
fn a_phones_token_goes_only_where_a_request_that_knew_it_pointed_it() {
    use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
    let accept = || Behaviour::Accept { sid: "CA-1".into() };
    let (home, elsewhere) = (FakeExotel::start(accept()), FakeExotel::start(accept()));
    let server = Server::start(&[]);
    let created = json_request(
        &server,
        "POST",
        "/phones",
        &format!(
            r#"{{"number": "08047112233", "apiKey": "k", "apiToken": "phone-token-secret-1", "sid": "acme", "apiBaseUrl": "{}"}}"#,
            home.base_url()
        ),
    );
    assert_eq!(created.status, 201, "{}", created.json());
    // Moving the phone's requests without its token: refused, naming the field and the rule.
    for body in [
        format!(r#"{{"apiBaseUrl": "{}"}}"#, elsewhere.base_url()),
        r#"{"subdomain": "api.elsewhere.example"}"#.to_owned(),
    ] {
        let refused = json_request(&server, "PATCH", "/phones/08047112233", &body)
            .assert_error(400, "bad_request");
        assert!(
            refused["detail"]
                .as_str()
                .unwrap()
                .contains("send apiToken"),
            "{refused}"
        );
    }
    let call = r#"{"to": "+919800000001", "from": "08047112233"}"#;
    assert_eq!(server.post_json("/call", call).status, 200);
    assert_eq!(authorizations(&elsewhere), Vec::<String>::new());
    assert_eq!(authorizations(&home).len(), 1);
    // With the token in the same request it moves, and that token goes there.
    let moved = json_request(
        &server,
        "PATCH",
        "/phones/08047112233",
        &format!(
            r#"{{"apiBaseUrl": "{}", "apiToken": "phone-token-secret-2"}}"#,
            elsewhere.base_url()
        ),
    );
    assert_eq!(moved.status, 200, "{}", moved.json());
    assert_eq!(server.post_json("/call", call).status, 200);
    let sent = authorizations(&elsewhere);
    assert_eq!(sent.len(), 1, "{sent:?}");
    use base64::Engine as _;
    let expected = base64::engine::general_purpose::STANDARD.encode("k:phone-token-secret-2");
    assert_eq!(sent[0], format!("Basic {expected}"));
}

#[test]
fn urls_a_secret_is_sent_to_are_parsed_strictly_and_refused_by_name() {
    let server = Server::start(&[]);
    let phone = |extra: &str| {
        json_request(
            &server,
            "POST",
            "/phones",
            &format!(
                r#"{{"number": "08047112233", "apiKey": "k", "apiToken": "t0k", "sid": "acme"{extra}}}"#
            ),
        )
    };
    for (extra, field) in [
        (
            r#", "apiBaseUrl": "https://evil.example/\r\nX-Injected: 1""#,
            "apiBaseUrl",
        ),
        (
            r#", "apiBaseUrl": "https://evil.example/x y""#,
            "apiBaseUrl",
        ),
        (r#", "apiBaseUrl": "http://203.0.113.7""#, "apiBaseUrl"),
        (
            r#", "apiBaseUrl": "https://user:pw@evil.example""#,
            "apiBaseUrl",
        ),
        (
            r#", "apiBaseUrl": "https://evil.example/?x=1""#,
            "apiBaseUrl",
        ),
        (r#", "subdomain": "evil.example/path""#, "subdomain"),
        (r#", "subdomain": "evil.example\t""#, "subdomain"),
    ] {
        let refused = phone(extra).assert_error(400, "bad_request");
        assert!(
            refused["detail"].as_str().unwrap().starts_with(field),
            "{extra}: {refused}"
        );
    }
    assert_eq!(
        phone(r#", "apiBaseUrl": "https://api.in.exotel.com""#).status,
        201
    );
    let agent = |body: &str| json_request(&server, "POST", "/agents", body);
    for url in [
        "ws://203.0.113.7/bot",
        "wss://bot.example/x?token=1",
        "wss://bot.example/\\r\\nX: 1",
        "https://bot.example/",
    ] {
        let body = format!(r#"{{"name": "a", "bot": "relay", "url": "{url}"}}"#);
        let refused = agent(&body).assert_error(400, "bad_request");
        assert!(
            refused["detail"].as_str().unwrap().starts_with("url "),
            "{url}: {refused}"
        );
    }
    let created = agent(
        r#"{"name": "a", "bot": "relay", "url": "wss://bot.example/talk", "headers": {"Authorization": "Bearer agent-secret"}}"#,
    );
    assert_eq!(created.status, 201, "{}", created.json());
    // The agent's headers follow its url only when the request sends them again.
    let refused = json_request(
        &server,
        "PATCH",
        "/agents/a",
        r#"{"url": "wss://elsewhere.example/talk"}"#,
    )
    .assert_error(400, "bad_request");
    assert!(
        refused["detail"].as_str().unwrap().contains("send headers"),
        "{refused}"
    );
    let moved = json_request(
        &server,
        "PATCH",
        "/agents/a",
        r#"{"url": "wss://elsewhere.example/talk", "headers": {"Authorization": "Bearer new"}}"#,
    );
    assert_eq!(moved.status, 200, "{}", moved.json());
}
