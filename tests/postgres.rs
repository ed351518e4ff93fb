//! The server on PostgreSQL (`DATABASE_URL`), each test with a cluster of its own
//! (`support::postgres`): the harness itself, and the database going away under live calls.

#[path = "support/mod.rs"]
mod support;

use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
use std::time::{Duration, Instant};
use support::postgres::Cluster;
use support::Server;

#[test]
fn a_tests_own_cluster_keeps_committed_rows_across_a_restart_and_notifies_a_listener() {
    let Some(pg) = Cluster::start("harness") else {
        return;
    };
    assert!(pg.url.starts_with("postgres://app@127.0.0.1:"));
    pg.psql("CREATE TABLE kept (n integer); INSERT INTO kept VALUES (7);");
    pg.restart();
    assert_eq!(pg.psql("SELECT n FROM kept").trim(), "7");
    let heard = pg.psql("LISTEN wake; NOTIFY wake, 'call-1';");
    assert!(heard.contains(r#"payload "call-1""#), "{heard}");
}

/// Polls `GET /calls` until `done` holds for its rows (the log is written behind the answers),
/// for at most `within`.
fn calls_when(server: &Server, within: Duration, done: impl Fn(&[serde_json::Value]) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        let page = server.get("/calls?limit=100").json();
        let rows = page["calls"].as_array().cloned().unwrap_or_default();
        if done(&rows) {
            return;
        }
        assert!(Instant::now() < deadline, "calls: {page}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn calls_go_on_while_postgresql_is_down_and_every_row_is_written_when_it_returns() {
    let Some(pg) = Cluster::start("outage") else {
        return;
    };
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-pg".into(),
    });
    let mut env = support::exotel_line_env(&fake.base_url());
    env.push(("DATABASE_URL", pg.url.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start(&env);
    let place = |id: &str| {
        let body = format!(r#"{{"to": "+919876543210", "callLogId": "{id}"}}"#);
        assert_eq!(server.post_json("/call", &body).status, 200, "{id}");
    };
    let complete = |id: &str| {
        let body = format!("CallSid=CA-pg&Status=completed&EventType=terminal&CustomField={id}");
        assert_eq!(server.post_form("/api/v1/exotel/status", &body).status, 200);
    };
    for id in ["live-1", "live-2", "live-3"] {
        place(id);
    }
    calls_when(&server, Duration::from_secs(10), |rows| rows.len() == 3);

    // The database stops as a crash would. The live calls go on and two of them end; their
    // changes wait in the writer.
    pg.stop();
    complete("live-1");
    complete("live-2");
    server.wait_for_log(&["calllog.write_failed", "pendingEvents="]);
    // A new call is refused until the database is back (its callLogId must be checked
    // unused), with when to try again, and nothing is sent to Exotel.
    for body in [
        r#"{"to": "+919876543210"}"#,
        r#"{"to": "+919876543210", "callLogId": "new-1"}"#,
    ] {
        let r = server.post_json("/call", body);
        r.assert_error(503, "call_log_unavailable");
        assert_eq!(r.header("retry-after"), Some("1"));
    }

    // Back: every change made meanwhile is written, none lost or twice, in order.
    pg.start_again();
    calls_when(&server, Duration::from_secs(20), |rows| {
        let status = |id: &str| {
            rows.iter()
                .find(|r| r["callLogId"] == id)
                .map(|r| r["status"].as_str().unwrap_or("").to_owned())
        };
        rows.len() == 3
            && status("live-1").as_deref() == Some("completed")
            && status("live-2").as_deref() == Some("completed")
            && status("live-3").as_deref() == Some("initiated")
    });
    server.wait_for_log(&["calllog.recovered"]);
    let history = server.get("/calls/live-2").json()["history"].clone();
    let statuses: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["queued", "initiated", "completed"]);
    assert_eq!(
        fake.received().len(),
        3,
        "each call placed once, none while refused"
    );
    // And new calls are taken again.
    place("after-1");
}

#[test]
fn backup_is_sqlites_and_with_postgresql_names_pg_dump() {
    let dir = support::temp_dir("pg-backup");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"))
        .args(["backup", "copy.db"])
        .current_dir(&dir)
        .env_clear()
        .env("DATABASE_URL", "postgres://app:secret@127.0.0.1:1/voicebot")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pg_dump"), "{stderr}");
    assert!(!dir.join("copy.db").exists(), "nothing written");
    assert!(!stderr.contains("secret"), "the password is never shown");
}

#[test]
fn a_database_url_that_is_not_postgresql_is_refused_at_start_naming_the_variable() {
    let dir = support::temp_dir("pg-bad-url");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"))
        .arg("serve")
        .current_dir(&dir)
        .env_clear()
        .env("DATABASE_URL", "mysql://app@127.0.0.1/voicebot")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(stderr.contains("only postgres://"), "{stderr}");
}
