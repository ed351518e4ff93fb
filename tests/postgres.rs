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

/// The variables of an instance on `pg` with the fake Exotel's line, and `more`.
fn instance_env(
    pg: &Cluster,
    fake: &FakeExotel,
    more: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut env = support::exotel_line_env(&fake.base_url());
    env.push(("DATABASE_URL", pg.url.clone()));
    env.extend(more.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env
}

/// `env` as `Server::start` takes it.
fn as_pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
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
    let env = instance_env(&pg, &fake, &[]);
    let env = as_pairs(&env);
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

/// `POST /call` from `from` (or the environment's line), its status.
fn call_from(server: &Server, from: Option<&str>) -> u16 {
    let from = from.map_or(String::new(), |f| format!(r#", "from": "{f}""#));
    let body = format!(r#"{{"to": "+919876543210"{from}}}"#);
    server.post_json("/call", &body).status
}

#[test]
fn the_server_and_phone_limits_hold_across_two_instances_under_concurrent_calls() {
    let Some(pg) = Cluster::start("limits") else {
        return;
    };
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-lim".into(),
    });
    let env = instance_env(&pg, &fake, &[("MAX_CONCURRENT_CALLS", "5")]);
    let env = as_pairs(&env);
    // A phone of its own account with room for 2 calls, added on the first instance before
    // the second starts (the second reads the phones at its start).
    let a = Server::start(&env);
    let phone = format!(
        r#"{{"number": "08047112299", "apiKey": "k2", "apiToken": "t2", "sid": "s2", "apiBaseUrl": "{}", "maxConcurrent": 2}}"#,
        fake.base_url()
    );
    assert_eq!(a.post_json("/phones", &phone).status, 201);
    let b = Server::start(&env);

    // Eight calls on the phone at once, four at each instance: two are placed.
    let on_phone: Vec<u16> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..8)
            .map(|k| {
                let server = if k % 2 == 0 { &a } else { &b };
                s.spawn(move || call_from(server, Some("08047112299")))
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert_eq!(
        on_phone.iter().filter(|s| **s == 200).count(),
        2,
        "{on_phone:?}"
    );
    assert_eq!(
        on_phone.iter().filter(|s| **s == 429).count(),
        6,
        "{on_phone:?}"
    );

    // Eight more on the environment's line: three more fit the server's five.
    let on_line: Vec<u16> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..8)
            .map(|k| {
                let server = if k % 2 == 0 { &a } else { &b };
                s.spawn(move || call_from(server, None))
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert_eq!(
        on_line.iter().filter(|s| **s == 200).count(),
        3,
        "{on_line:?}"
    );
    assert_eq!(
        fake.received().len(),
        5,
        "Exotel was asked for five calls, no more"
    );

    // A call ending frees its place for either instance, whichever instance Exotel's callback
    // reaches (here the second, whether or not it placed the call).
    let page = a.get("/calls?limit=10").json();
    let ended = page["calls"][0]["callLogId"].as_str().unwrap().to_owned();
    assert_eq!(call_from(&b, None), 429, "still full");
    let body = format!("CallSid=CA-lim&Status=completed&EventType=terminal&CustomField={ended}");
    assert_eq!(b.post_form("/api/v1/exotel/status", &body).status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while call_from(&b, None) != 200 {
        assert!(
            Instant::now() < deadline,
            "the ended call's place never came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(fake.received().len(), 6);
}

/// `GET path` until `done` holds for its JSON, for at most 10 s.
fn json_when(
    server: &Server,
    path: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = server.get(path);
        if r.status == 200 && done(&r.json()) {
            return r.json();
        }
        assert!(
            Instant::now() < deadline,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_webhook_answered_by_one_instance_and_media_on_the_other_make_one_call_and_one_row() {
    use exotel_voicebot::media::audio::speech_like;
    use exotel_voicebot::sim::{run_call, CallPlan, Connect};
    let Some(pg) = Cluster::start("two-sides") else {
        return;
    };
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-two".into(),
    });
    // The token lives a second: the first instance's wait for the media ends during the call.
    let env = instance_env(&pg, &fake, &[("MEDIA_TOKEN_TTL_S", "1")]);
    let env = as_pairs(&env);
    let (a, b) = (Server::start(&env), Server::start(&env));

    // Inbound: Exotel's applet asks the first instance, then streams to the second.
    let path = a.media_path("CA-in-1");
    let mut plan = CallPlan::new(a.addr, speech_like(8000, 2500, 3));
    plan.connect = Connect::Url(format!("ws://{}{path}", b.addr));
    plan.call_sid = "CA-in-1".into();
    let report = run_call(&plan);
    assert!(report.is_clean(), "{report:?}");
    assert!(report.echoed > 0, "{report:?}");
    b.wait_for_log(&["media.adopted"]);
    a.wait_for_log(&["call.media_elsewhere"]);
    let page = json_when(&a, "/calls?limit=10", |p| {
        p["calls"][0]["status"] == "completed"
    });
    let rows = page["calls"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "one row: {page}");
    assert_eq!(rows[0]["callSid"], "CA-in-1");
    assert_eq!(rows[0]["direction"], "inbound");
    assert!(rows[0]["framesIn"].as_u64().unwrap() > 0, "{page}");
    let row = a
        .get(&format!(
            "/calls/{}",
            rows[0]["callLogId"].as_str().unwrap()
        ))
        .json();
    let history: Vec<&str> = row["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["connected", "in-progress", "completed"], "{row}");
    assert!(
        !a.log().iter().any(|l| l.contains("call.no_media")),
        "the first instance did not close the call as never connected"
    );
    // Both instances' slots are back: no live call anywhere.
    for server in [&a, &b] {
        json_when(server, "/live", |l| {
            l["calls"].as_array().is_some_and(Vec::is_empty)
        });
    }
}

#[test]
fn a_call_ended_through_another_instance_gives_its_slot_back_on_its_own_at_once() {
    let Some(pg) = Cluster::start("ended-elsewhere") else {
        return;
    };
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-else".into(),
    });
    let env = instance_env(&pg, &fake, &[("MAX_CONCURRENT_CALLS", "1")]);
    let env = as_pairs(&env);
    let (a, b) = (Server::start(&env), Server::start(&env));
    let placed = a.post_json("/call", r#"{"to": "+919876543210"}"#);
    assert_eq!(placed.status, 200);
    let id = placed.json()["callLogId"].as_str().unwrap().to_owned();
    assert_eq!(
        call_from(&b, None),
        429,
        "the one slot is the first instance's call's"
    );

    // Exotel's callback reaches the second instance: the row ends there, and the first
    // instance hears of it by NOTIFY (not the 5 s poll) and gives its slot back.
    let body = format!("CallSid=CA-else&Status=completed&EventType=terminal&CustomField={id}");
    assert_eq!(b.post_form("/api/v1/exotel/status", &body).status, 200);
    let heard = a.wait_for_log(&["call.ended_elsewhere", &id]);
    assert!(heard.contains("heard=notified"), "{heard}");
    json_when(&a, "/live", |l| {
        l["calls"].as_array().is_some_and(Vec::is_empty)
    });
    assert_eq!(
        call_from(&b, None),
        200,
        "the place is free for the other instance"
    );
}

#[test]
fn a_dead_instances_calls_are_settled_and_its_slots_come_back_when_its_leases_lapse() {
    let Some(pg) = Cluster::start("instance-lost") else {
        return;
    };
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-lost".into(),
    });
    let env = instance_env(
        &pg,
        &fake,
        &[("MAX_CONCURRENT_CALLS", "1"), ("INSTANCE_LEASE_S", "3")],
    );
    let env = as_pairs(&env);
    let a = Server::start(&env);
    let placed = a.post_json("/call", r#"{"to": "+919876543210"}"#);
    assert_eq!(placed.status, 200);
    let id = placed.json()["callLogId"].as_str().unwrap().to_owned();
    json_when(&a, &format!("/calls/{id}"), |r| r["status"] == "initiated");

    // Another instance starting leaves the first's live call alone.
    let b = Server::start(&env);
    assert!(!b.log().iter().any(|l| l.contains("calllog.interrupted")));
    assert_eq!(b.get(&format!("/calls/{id}")).json()["status"], "initiated");
    assert_eq!(call_from(&b, None), 429, "the one slot is the live call's");

    // The first dies, and the call ends at Exotel meanwhile (its callback went to the dead
    // instance). Its lease lapses (3 s); the survivor asks Exotel about the call, closes its
    // row from the answer, and the slot is free again, not before the lease's end.
    fake.set_call_status("CA-lost", "completed");
    let killed_at = Instant::now();
    let _ = a.kill_9();
    let row = json_when(&b, &format!("/calls/{id}"), |r| r["status"] == "completed");
    assert_eq!(row["durationS"], 7, "Exotel's duration: {row}");
    assert!(
        killed_at.elapsed() >= Duration::from_secs(2),
        "settled before the lease lapsed"
    );
    b.wait_for_log(&["call.settled_elsewhere", &id]);
    let asked = fake
        .received()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/Calls/CA-lost"))
        .count();
    assert_eq!(asked, 1, "asked once");
    let deadline = Instant::now() + Duration::from_secs(10);
    while call_from(&b, None) != 200 {
        assert!(
            Instant::now() < deadline,
            "the dead instance's slot never came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_guides_backup_command_dumps_every_table_as_written() {
    let Some(pg) = Cluster::start("pg-dump") else {
        return;
    };
    let guide =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/GUIDE.md")).unwrap();
    let command = guide
        .split("```sh\n")
        .filter_map(|b| b.split("```").next())
        .find(|b| b.starts_with("pg_dump "))
        .expect("the guide's pg_dump example")
        .trim()
        .to_owned();
    // The server makes the tables; then the command runs exactly as written.
    let server = Server::start(&[("DATABASE_URL", pg.url.as_str())]);
    drop(server);
    let dir = support::temp_dir("pg-dump");
    let out = std::process::Command::new("sh")
        .args(["-c", &command])
        .current_dir(&dir)
        .env("DATABASE_URL", &pg.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = std::process::Command::new("pg_restore")
        .arg("--list")
        .arg(dir.join("voicebot.dump"))
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for table in [
        "calls",
        "phones",
        "agents",
        "campaigns",
        "contacts",
        "attempts",
        "dnc",
        "events",
    ] {
        assert!(
            list.contains(&format!("TABLE public {table} ")),
            "{table} missing: {list}"
        );
    }
}

#[test]
fn a_handoff_made_on_one_instance_is_answered_by_the_other_s_passthru() {
    use exotel_voicebot::media::audio::speech_like;
    use exotel_voicebot::sim::{run_call, CallPlan, Connect};
    let Some(pg) = Cluster::start("handoff-elsewhere") else {
        return;
    };
    let fake = FakeExotel::start(Behaviour::Accept { sid: "CA-h".into() });
    let env = instance_env(&pg, &fake, &[("HANDOFF_DTMF", "5")]);
    let env = as_pairs(&env);
    let (a, b) = (Server::start(&env), Server::start(&env));
    // The webhook on the first instance, the media on the second, where the caller presses 5.
    let path = a.media_path("CA-hand-1");
    let mut plan = CallPlan::new(a.addr, speech_like(8000, 1000, 3));
    plan.connect = Connect::Url(format!("ws://{}{path}", b.addr));
    plan.call_sid = "CA-hand-1".into();
    plan.dtmf = "5".into();
    plan.check_echo = false;
    plan.tail_ms = 1500;
    let report = run_call(&plan);
    assert!(report.is_clean(), "{report:?}");
    // Exotel's Passthru after the stream reaches the first instance.
    let query = format!(
        "CallSid=CA-hand-1&CustomField={}&Stream%5BStatus%5D=completed&Stream%5BDisconnectedBy%5D=bot",
        report.call_log_id
    );
    let answer = support::request(
        a.addr,
        "GET",
        &format!("/api/v1/exotel/passthru?{query}"),
        &[],
        b"",
    );
    assert_eq!(
        answer.status,
        200,
        "the handoff answer: {}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json()["reason"], "dtmf");
    // The same Passthru under another CallSid learns nothing of the call.
    let wrong = query.replace("CallSid=CA-hand-1", "CallSid=CA-other");
    let refused = support::request(
        a.addr,
        "GET",
        &format!("/api/v1/exotel/passthru?{wrong}"),
        &[],
        b"",
    );
    assert_eq!(refused.status, 302, "no handoff for another CallSid");
    let row = json_when(&a, &format!("/calls/{}", report.call_log_id), |r| {
        !r["handoffAnswer"].is_null()
    });
    assert_eq!(row["handoff"], "dtmf", "{row}");
    assert_eq!(row["handoffAnswer"], 200, "{row}");
}

/// `done(status)` of `ask()` within 10 s.
fn status_when(ask: impl Fn() -> u16, done: impl Fn(u16) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = ask();
        if done(status) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_do_not_call_list_phones_and_agents_changed_on_one_instance_hold_on_the_other() {
    let Some(pg) = Cluster::start("stored-changed") else {
        return;
    };
    let fake = FakeExotel::start(Behaviour::Accept { sid: "CA-s".into() });
    let env = instance_env(&pg, &fake, &[]);
    let env = as_pairs(&env);
    let (a, b) = (Server::start(&env), Server::start(&env));
    let call = |s: &Server, to: &str, from: Option<&str>| {
        let from = from.map_or(String::new(), |f| format!(r#", "from": "{f}""#));
        s.post_json("/call", &format!(r#"{{"to": "{to}"{from}}}"#))
            .status
    };

    // A number listed on the first instance is never dialed by the second.
    let listed = a.post_json("/dnc", r#"{"numbers": ["+919812345678"]}"#);
    assert_eq!(
        listed.status,
        200,
        "{}",
        String::from_utf8_lossy(&listed.body)
    );
    status_when(
        || call(&b, "+919812345678", None),
        |s| s == 403,
        "listed on the other",
    );
    // And taken off there, it may be called here again.
    let removed = support::request(b.addr, "DELETE", "/dnc/+919812345678", &[], b"");
    assert_eq!(
        removed.status,
        200,
        "{}",
        String::from_utf8_lossy(&removed.body)
    );
    status_when(
        || call(&a, "+919812345678", None),
        |s| s == 200,
        "unlisted on the other",
    );

    // A phone added on one instance places calls from the other.
    let phone = format!(
        r#"{{"number": "08047112277", "apiKey": "k3", "apiToken": "t3", "sid": "s3", "apiBaseUrl": "{}"}}"#,
        fake.base_url()
    );
    assert_eq!(a.post_json("/phones", &phone).status, 201);
    status_when(
        || call(&b, "+919876543210", Some("08047112277")),
        |s| s == 200,
        "the phone",
    );

    // An agent added on one instance answers on the other.
    let agent = r#"{"name": "frontdesk", "bot": "echo"}"#;
    assert_eq!(b.post_json("/agents", agent).status, 201);
    status_when(
        || a.get("/agents/frontdesk").status,
        |s| s == 200,
        "the agent",
    );
}
