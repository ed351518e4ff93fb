//! The connect webhooks end to end: every encoding Exotel (or the original server's curl
//! example) uses, on both paths, answering the media URL for the call.

use crate::support;

use support::{request, Server};

const PATHS: [&str; 2] = ["/voicebot/connect", "/api/v1/exotel/voice/connect"];

/// The four forms: GET query, POST form, POST JSON, POST with the query and an empty body.
fn ask_all_four_ways(server: &Server, path: &str, custom_field: &str) -> Vec<String> {
    let query = format!("CallSid=test-sid-123&CallFrom=%2B919876543210&CallTo=%2B919999999999&Direction=outbound-api&CustomField={custom_field}");
    let json = format!(
        r#"{{"CallSid": "test-sid-123", "CallFrom": "+919876543210", "CallTo": "+919999999999", "Direction": "outbound-api", "CustomField": "{custom_field}"}}"#
    );
    let answers = [
        request(server.addr, "GET", &format!("{path}?{query}"), &[], b""),
        request(
            server.addr,
            "POST",
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            query.as_bytes(),
        ),
        request(
            server.addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            json.as_bytes(),
        ),
        request(server.addr, "POST", &format!("{path}?{query}"), &[], b""),
    ];
    answers
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            r.json()["url"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn token_of(url: &str) -> &str {
    url.split("token=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
}

#[test]
fn an_http_base_gives_ws_urls_carrying_the_call_log_id() {
    let server = Server::start(&[("WEBHOOK_BASE_URL", "http://voice.example.com:8080/")]);
    for path in PATHS {
        let urls = ask_all_four_ways(&server, path, "test-call-123");
        for url in &urls {
            assert!(
                url.starts_with("ws://voice.example.com:8080/media?sample-rate=8000&token="),
                "{url}"
            );
            assert!(url.ends_with("&callLogId=test-call-123"), "{url}");
            assert_eq!(token_of(url).len(), 22, "128 bits of base64url: {url}");
        }
        let mut tokens: Vec<&str> = urls.iter().map(|u| token_of(u)).collect();
        tokens.sort();
        tokens.dedup();
        assert_eq!(tokens.len(), 4, "every answer carries a fresh token");
    }
    server.wait_for_log(&[
        "webhook.connect",
        "callLogId=test-call-123",
        "callSid=test-sid-123",
        "direction=outbound-api",
    ]);
}

#[test]
fn an_https_base_gives_wss_urls_and_sample_rate_follows_the_config() {
    let server = Server::start(&[
        ("RENDER_EXTERNAL_URL", "https://bot.onrender.com"),
        ("SAMPLE_RATE", "16000"),
    ]);
    for path in PATHS {
        for url in ask_all_four_ways(&server, path, "abc") {
            assert!(
                url.starts_with("wss://bot.onrender.com/media?sample-rate=16000&token="),
                "{url}"
            );
            assert!(url.ends_with("&callLogId=abc"), "{url}");
        }
    }
}

#[test]
fn without_a_base_url_the_media_url_points_at_the_bound_port() {
    let server = Server::start(&[]);
    let r = server.get("/voicebot/connect?CallSid=x&CustomField=c1");
    let url = r.json()["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("ws://localhost:{}/media?", server.addr.port())),
        "{url}"
    );
    server.wait_for_log(&["config.no_public_url"]);
}

#[test]
fn inbound_calls_get_a_fresh_call_log_id() {
    let server = Server::start(&[("WEBHOOK_BASE_URL", "https://v.example")]);
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let r = server.get(
                "/api/v1/exotel/voice/connect?CallSid=in-1&CallFrom=09876543210&Direction=incoming",
            );
            let url = r.json()["url"].as_str().unwrap().to_owned();
            url.split("callLogId=").nth(1).unwrap().to_owned()
        })
        .collect();
    assert_ne!(ids[0], ids[1]);
    assert_eq!(ids[0].len(), 29);
    // A CustomField we could not have sent does not become an id, and is logged.
    let r = server.get("/voicebot/connect?CallSid=in-2&CustomField=hello%20world");
    let url = r.json()["url"].as_str().unwrap().to_owned();
    assert!(!url.contains("hello"), "{url}");
    server.wait_for_log(&["webhook.foreign_custom_field", "callSid=in-2"]);
}

#[test]
fn lower_case_parameter_names_from_proxies_are_accepted() {
    let server = Server::start(&[]);
    let r = server.post_json(
        "/voicebot/connect",
        r#"{"callsid": "low-1", "customfield": "lc-1"}"#,
    );
    assert_eq!(r.status, 200);
    assert!(r.json()["url"]
        .as_str()
        .unwrap()
        .ends_with("callLogId=lc-1"));
}

#[test]
fn missing_call_sid_and_bad_bodies_are_400_or_415() {
    let server = Server::start(&[]);
    for path in PATHS {
        let json = server.get(path).assert_error(400, "bad_request");
        assert!(json["detail"].as_str().unwrap().contains("CallSid"));
        server
            .post_json(path, "{not json")
            .assert_error(400, "bad_request");
        request(
            server.addr,
            "POST",
            path,
            &[("Content-Type", "text/xml")],
            b"<CallSid>1</CallSid>",
        )
        .assert_error(415, "unsupported_media_type");
        request(server.addr, "DELETE", path, &[], b"").assert_error(405, "method_not_allowed");
    }
    server.assert_healthy();
}

#[test]
fn webhook_secret_is_required_when_set() {
    use base64::Engine as _;
    let server = Server::start(&[("WEBHOOK_SECRET", "hook-pass")]);
    let path = "/api/v1/exotel/voice/connect";
    server
        .get(&format!("{path}?CallSid=s1"))
        .assert_error(401, "unauthorized");
    server
        .get(&format!("{path}?CallSid=s1&secret=wrong"))
        .assert_error(401, "unauthorized");
    assert_eq!(
        server
            .get(&format!("{path}?CallSid=s1&secret=hook-pass"))
            .status,
        200
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("exotel:hook-pass")
    );
    let r = request(
        server.addr,
        "POST",
        path,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &basic),
        ],
        br#"{"CallSid": "s2"}"#,
    );
    assert_eq!(r.status, 200);
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("exotel:nope")
    );
    request(
        server.addr,
        "POST",
        path,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &wrong),
        ],
        br#"{"CallSid": "s2"}"#,
    )
    .assert_error(401, "unauthorized");
}

#[test]
fn pending_media_tokens_are_capped() {
    let server = Server::start(&[("MAX_PENDING_MEDIA_TOKENS", "20")]);
    for i in 0..20 {
        assert_eq!(
            server
                .get(&format!("/voicebot/connect?CallSid=cap-{i}"))
                .status,
            200,
            "token {i}"
        );
    }
    let r = server.get("/voicebot/connect?CallSid=cap-20");
    r.assert_error(503, "busy");
    assert_eq!(r.header("retry-after"), Some("5"));
    server.assert_healthy();
}
