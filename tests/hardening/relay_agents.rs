//! Relay agents may not point at the server itself or outside RELAY_ALLOWED_HOSTS.

use super::*;

#[test]
fn a_relay_agent_may_not_point_at_the_server_itself_or_outside_the_allow_list() {
    let server = Server::start(&[]);
    let own = server.addr.port();
    for url in [
        format!("ws://127.0.0.1:{own}/media"),
        format!("ws://localhost:{own}/"),
        format!("ws://[::1]:{own}/x"),
    ] {
        let body = format!(r#"{{"name": "loop", "bot": "relay", "url": "{url}"}}"#);
        let refused =
            json_request(&server, "POST", "/agents", &body).assert_error(400, "bad_request");
        assert!(
            refused["detail"]
                .as_str()
                .unwrap()
                .contains("this server itself"),
            "{url}: {refused}"
        );
    }
    // Another port on loopback is another server: allowed.
    let other = format!(
        r#"{{"name": "ok", "bot": "relay", "url": "ws://127.0.0.1:{}/bot"}}"#,
        closed_port()
    );
    assert_eq!(json_request(&server, "POST", "/agents", &other).status, 201);
    // With RELAY_ALLOWED_HOSTS, only those hosts.
    let listed = Server::start(&[("RELAY_ALLOWED_HOSTS", "bots.example.com, 127.0.0.1")]);
    let refused = json_request(
        &listed,
        "POST",
        "/agents",
        r#"{"name": "x", "bot": "relay", "url": "wss://elsewhere.example/bot"}"#,
    )
    .assert_error(400, "bad_request");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("RELAY_ALLOWED_HOSTS"),
        "{refused}"
    );
    let allowed = json_request(
        &listed,
        "POST",
        "/agents",
        r#"{"name": "x", "bot": "relay", "url": "wss://bots.example.com/bot"}"#,
    );
    assert_eq!(allowed.status, 201, "{}", allowed.json());
}
