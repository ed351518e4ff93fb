//! The do-not-call list on the real binary: numbers added as JSON or CSV (one entry per line,
//! whatever its spelling), `/call` to a listed number refused with 403 before Exotel is asked,
//! the list kept across a restart, guarded like `/call`, and `calls.db` readable by its owner only.

use crate::support;

use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
use std::time::Duration;
use support::{request, Server};

fn start_in(dir: std::path::PathBuf, fake: &FakeExotel, extra: &[(&str, &str)]) -> Server {
    let env = support::exotel_line_env(&fake.base_url());
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend_from_slice(extra);
    Server::start_in(dir, &env)
}

#[test]
fn listed_numbers_are_never_dialed_and_the_list_survives_a_restart() {
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-dnc".into(),
    });
    let dir = support::temp_dir("dnc");
    // Its placed call stays ringing: no grace for it at the restart below.
    let server = start_in(dir.clone(), &fake, &[("SHUTDOWN_GRACE_S", "0")]);

    // JSON: one number in three spellings is one entry; a bad row is reported, not dropped.
    let r = server.post_json(
        "/dnc",
        r#"{"numbers": ["+919876543210", "09876543210", "98765 43210", "12", "+14155550100"]}"#,
    );
    assert_eq!(r.status, 200);
    let added = r.json();
    assert_eq!(added["added"], 2, "{added}");
    assert_eq!(added["alreadyListed"], 2, "{added}");
    assert_eq!(added["invalid"][0]["row"], 4, "{added}");
    assert_eq!(added["invalid"][0]["value"], "12", "{added}");

    // CSV with a header row, the number in the first column.
    let r = request(
        server.addr,
        "POST",
        "/dnc",
        &[("Content-Type", "text/csv")],
        b"number,name\n+919812345678,Asha\n\"09812345679\",Ravi\n",
    );
    assert_eq!(r.json()["added"], 2, "{}", r.json());
    assert_eq!(
        server.get("/dnc").json(),
        serde_json::json!({"count": 4, "numbers": ["+14155550100", "+919812345678", "+919812345679", "+919876543210"]})
    );

    // /call to a listed number, in any spelling: 403, and Exotel is never asked.
    for to in ["+919876543210", "9876543210", "09812345679"] {
        let r = server.post_json("/call", &format!(r#"{{"to": "{to}"}}"#));
        let error = r.assert_error(403, "do_not_call");
        assert!(
            error["detail"].as_str().unwrap().contains("do-not-call"),
            "{error}"
        );
    }
    assert!(fake.received().is_empty(), "a listed number reached Exotel");
    // An unlisted number goes through.
    assert_eq!(
        server
            .post_json("/call", r#"{"to": "+919811111111"}"#)
            .status,
        200
    );
    assert_eq!(fake.received().len(), 1);

    // Off the list (the path takes + as it is, or %2B): dialable again.
    assert_eq!(
        request(server.addr, "DELETE", "/dnc/+919876543210", &[], b"").status,
        200
    );
    request(server.addr, "DELETE", "/dnc/%2B919876543210", &[], b"").assert_error(404, "not_found");
    assert_eq!(
        server.post_json("/call", r#"{"to": "09876543210"}"#).status,
        200
    );

    // The list is on disk: after a restart the rest is still refused.
    server.signal("TERM");
    server.wait_exit(Duration::from_secs(10));
    let server = start_in(dir.clone(), &fake, &[]);
    assert_eq!(server.get("/dnc").json()["count"], 3);
    server
        .post_json("/call", r#"{"to": "+919812345678"}"#)
        .assert_error(403, "do_not_call");

    // The database holds call data (and will hold Exotel tokens): its owner's only.
    support::assert_stored_state_private(&dir);
}

#[test]
fn the_list_is_guarded_like_call_and_bad_bodies_are_named() {
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-dnc".into(),
    });
    let server = start_in(
        support::temp_dir("dnc"),
        &fake,
        &[("API_TOKEN", "secret-token-1")],
    );
    server.get("/dnc").assert_error(401, "unauthorized");
    server
        .post_json("/dnc", r#"{"numbers": ["+919876543210"]}"#)
        .assert_error(401, "unauthorized");
    let auth = [
        ("Authorization", "Bearer secret-token-1"),
        ("Content-Type", "application/json"),
    ];
    let r = request(
        server.addr,
        "POST",
        "/dnc",
        &auth,
        br#"{"number": "+919876543210"}"#,
    );
    let error = r.assert_error(400, "bad_request");
    assert!(
        error["detail"].as_str().unwrap().contains("numbers"),
        "{error}"
    );
    let r = request(server.addr, "POST", "/dnc", &auth, br#"{"numbers": []}"#);
    r.assert_error(400, "bad_request");
    let r = request(server.addr, "GET", "/dnc", &auth, b"");
    assert_eq!(r.json()["count"], 0);
    request(server.addr, "PUT", "/dnc", &auth, b"").assert_error(405, "method_not_allowed");
}
