//! Issue 4 on the real binary: the SQLite call log, Exotel's status callbacks, concurrency slots,
//! and what a `kill -9` leaves behind.

use crate::support;

use exotel_voicebot::media::audio::speech_like;
use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
use exotel_voicebot::sim::{run_call, CallPlan, Connect, EndedBy};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{request, Server};

fn start(fake: &FakeExotel, extra: &[(&'static str, &str)]) -> Server {
    let mut env: Vec<(&str, String)> = support::exotel_line_env(&fake.base_url());
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start(&env)
}

fn place(server: &Server, id: &str) -> support::TestResponse {
    server.post_json(
        "/call",
        &format!(r#"{{"to": "+919876543210", "callLogId": "{id}"}}"#),
    )
}

fn status_callback(server: &Server, body: &str) -> support::TestResponse {
    server.post_form("/api/v1/exotel/status", body)
}

#[test]
fn an_outbound_call_leaves_one_row_that_the_status_callback_completes() {
    let fake = Arc::new(FakeExotel::start(Behaviour::Accept {
        sid: "CA-out-1".into(),
    }));
    let server = start(&fake, &[]);
    let mut plan = CallPlan::new(server.addr, speech_like(8000, 1000, 2));
    plan.connect = Connect::Outbound {
        call: serde_json::json!({"to": "+919876543210"}),
        fake: fake.clone(),
    };
    plan.dtmf = "1#".into();
    let report = run_call(&plan);
    assert_eq!(report.ended_by, EndedBy::Server(1000), "{report:#?}");
    let id = report.call_log_id.clone();
    // What Exotel was told: our status callback, for the end and the answer.
    let fields = fake.call_for(&id).unwrap();
    assert!(fields.contains(&(
        "StatusCallback".into(),
        format!(
            "http://localhost:{}/api/v1/exotel/status",
            server.addr.port()
        )
    )));

    let row = server.row_when(&id, &[], |r| r["status"] == "completed");
    assert_eq!(row["direction"], "outbound");
    assert_eq!(row["to"], "+919876543210");
    assert_eq!(row["callerId"], "08047112233");
    assert_eq!(row["callSid"], "CA-out-1");
    assert_eq!(row["streamSid"], plan.stream_sid);
    assert_eq!(row["framesIn"], report.chunks_sent);
    assert_eq!(row["bytesIn"], report.bytes_sent);
    assert_eq!(row["framesOut"], report.chunks_received);
    assert_eq!(row["dtmf"], "1#");
    assert_eq!(row["endReason"], "bot-hung-up");
    assert!(row["durationS"].as_i64().unwrap() >= 1);
    let history: Vec<&str> = row["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        [
            "queued",
            "initiated",
            "connected",
            "in-progress",
            "completed"
        ]
    );
    let times: Vec<i64> = row["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["at"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // Every time in milliseconds has its ISO 8601 twin, as the logs write time.
    let iso = exotel_voicebot::calls::log::iso_8601;
    assert_eq!(row["createdAtIso"], iso(row["createdAt"].as_i64().unwrap()));
    assert_eq!(row["endedAtIso"], iso(row["endedAt"].as_i64().unwrap()));
    assert!(row["createdAtIso"].as_str().unwrap().starts_with("20"));
    for change in row["history"].as_array().unwrap() {
        assert_eq!(change["atIso"], iso(change["at"].as_i64().unwrap()));
    }

    // Exotel's callback: its duration and recording win; sent twice, the second changes nothing.
    let body = format!("CallSid=CA-out-1&Status=completed&EventType=terminal&ConversationDuration=7&RecordingUrl=https%3A%2F%2Frec.example%2F1.mp3&CustomField={id}");
    assert_eq!(status_callback(&server, &body).status, 200);
    let once = server.row_when(&id, &[], |r| r["durationS"] == 7);
    assert_eq!(once["exotelRecordingUrl"], "https://rec.example/1.mp3");
    assert_eq!(status_callback(&server, &body).status, 200);
    // A late "answered" callback does not move the call back either.
    status_callback(
        &server,
        &format!("CallSid=CA-out-1&Status=in-progress&EventType=answered&CustomField={id}"),
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.get(&format!("/calls/{id}")).json(), once);

    // And the list shows it, filtered.
    let list = server
        .get("/calls?direction=outbound&status=completed")
        .json();
    assert_eq!(list["calls"].as_array().unwrap().len(), 1);
    server
        .get("/calls?status=nonsense")
        .assert_error(400, "bad_request");
    server
        .get("/calls/no-such-call")
        .assert_error(404, "not_found");
}

#[test]
fn the_sixth_call_over_a_limit_of_five_is_429_and_slots_come_back() {
    let fake = FakeExotel::start(Behaviour::Accept { sid: "CA".into() });
    let server = start(&fake, &[("MAX_CONCURRENT_CALLS", "5")]);
    for i in 0..5 {
        assert_eq!(place(&server, &format!("c{i}")).status, 200);
    }
    let r = place(&server, "c5");
    r.assert_error(429, "too_many_calls");
    // When a slot is really expected back: the first call's ring time (60 s, none was given)
    // plus CALL_CHECK_MARGIN_S (60 s), when Exotel is asked about it if no callback came.
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((100..=120).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        fake.received().len(),
        5,
        "nothing was sent to Exotel for the sixth"
    );
    assert_eq!(server.get("/health").json()["activeCalls"], 5);

    // A final status frees the call's slot.
    assert_eq!(
        status_callback(&server, "CallSid=CA&Status=busy&CustomField=c0").status,
        200
    );
    assert_eq!(place(&server, "c6").status, 200);
    place(&server, "c7").assert_error(429, "too_many_calls");

    // A call Exotel refuses gives its slot back at once.
    status_callback(&server, "CallSid=CA&Status=no-answer&CustomField=c1");
    fake.set(Behaviour::Answer {
        status: 403,
        body: r#"{"RestException":{"Message":"nope"}}"#.into(),
    });
    place(&server, "c8").assert_error(502, "exotel_refused");
    fake.set(Behaviour::Accept { sid: "CA".into() });
    assert_eq!(place(&server, "c9").status, 200);
    let row = server.row_when("c8", &[], |r| r["status"] == "failed");
    assert!(row["lastError"].as_str().unwrap().contains("nope"));
    let row = server.row_when("c0", &[], |r| r["status"] == "busy");
    assert!(row["endedAt"].is_i64());
}

#[test]
fn slots_come_back_after_the_slot_timeout() {
    let fake = FakeExotel::start(Behaviour::Accept { sid: "CA".into() });
    let server = start(
        &fake,
        &[("MAX_CONCURRENT_CALLS", "1"), ("CALL_SLOT_TIMEOUT_S", "1")],
    );
    assert_eq!(place(&server, "t0").status, 200);
    place(&server, "t1").assert_error(429, "too_many_calls");
    // The slot comes back once CALL_SLOT_TIMEOUT_S has passed, and not before.
    let taken = Instant::now();
    let deadline = taken + Duration::from_secs(5);
    loop {
        let r = place(&server, "t2");
        if r.status == 200 {
            break;
        }
        r.assert_error(429, "too_many_calls");
        assert!(Instant::now() < deadline, "the slot never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        taken.elapsed() >= Duration::from_millis(900),
        "back too soon"
    );
}

#[test]
fn an_inbound_call_over_capacity_hears_a_tone_and_is_hung_up() {
    let fake = FakeExotel::start(Behaviour::Accept { sid: "CA".into() });
    let server = start(&fake, &[("MAX_CONCURRENT_CALLS", "1")]);
    assert_eq!(place(&server, "holder").status, 200);
    let report = run_call(&CallPlan::new(server.addr, speech_like(8000, 2000, 1)));
    assert_eq!(report.marks_received, ["capacity-tone-played"]);
    assert_eq!(report.ended_by, EndedBy::Server(1000));
    let row = server.row_when(&report.call_log_id, &[], |r| {
        r["status"] == "rejected-capacity"
    });
    assert_eq!(row["direction"], "inbound");
    server.wait_for_log(&["webhook.over_capacity"]);
    // Once the holder ends, inbound calls get the bot again.
    status_callback(&server, "CallSid=CA&Status=completed&CustomField=holder");
    let report = run_call(&CallPlan::new(server.addr, speech_like(8000, 1000, 1)));
    assert!(report.is_clean(), "{report:#?}");
}

#[test]
fn kill_9_with_calls_live_leaves_every_row_and_marks_them_interrupted() {
    let server = Server::start(&[("MAX_CONCURRENT_CALLS", "100"), ("RECORD", "1")]);
    // One call that ended before the crash.
    let done = run_call(&CallPlan::new(server.addr, speech_like(8000, 600, 1)));
    assert!(done.is_clean());
    let before = server.row_when(&done.call_log_id, &[], |r| r["status"] == "completed");

    let live = support::start_live_calls(&server, 20, 20_000);
    // Let the recordings get some audio onto the disk first (the writer holds the last 2 s).
    std::thread::sleep(Duration::from_secs(4));
    let dir = server.kill_9();
    for call in live {
        assert!(
            matches!(call.join().unwrap().ended_by, EndedBy::Error(_)),
            "the calls died with the server"
        );
    }

    let server = Server::start_in(dir, &[("RECORD", "1")]);
    server.wait_for_log(&["calllog.interrupted", "calls=20"]);
    server.wait_for_log(&["recording.repaired"]);
    // Every recording opens in a standard reader, the crashed ones included.
    let recordings: Vec<_> = std::fs::read_dir(server.dir.join("data/recordings"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(recordings.len(), 21);
    let mut with_audio = 0;
    for path in &recordings {
        let reader =
            hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(reader.spec().channels, 2);
        let frames = reader.duration() as usize;
        assert_eq!(
            reader.into_samples::<i16>().count(),
            frames * 2,
            "{}: every stated sample is there",
            path.display()
        );
        with_audio += usize::from(frames > 8000);
    }
    assert!(
        with_audio >= 20,
        "{with_audio} recordings hold more than a second of audio"
    );
    let all = server.get("/calls?limit=100").json();
    let calls = all["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 21, "every call has its row");
    let interrupted = calls
        .iter()
        .filter(|c| c["status"] == "interrupted")
        .count();
    assert_eq!(interrupted, 20);
    assert_eq!(
        server.get(&format!("/calls/{}", done.call_log_id)).json(),
        before,
        "an earlier row is unchanged"
    );
}

#[test]
fn status_callbacks_take_json_and_the_call_log_is_guarded_like_call() {
    let fake = FakeExotel::start(Behaviour::Accept { sid: "CA-j".into() });
    let server = start(
        &fake,
        &[("WEBHOOK_SECRET", "hook"), ("API_TOKEN", "user-token")],
    );
    let auth = [
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer user-token"),
    ];
    let r = request(
        server.addr,
        "POST",
        "/call",
        &auth,
        br#"{"to": "+919876543210", "callLogId": "j1"}"#,
    );
    assert_eq!(r.status, 200);
    // Our callback URL carries the webhook secret, as Exotel will call it.
    let fields = fake.call_for("j1").unwrap();
    let callback = fields
        .iter()
        .find(|(k, _)| k == "StatusCallback")
        .unwrap()
        .1
        .clone();
    assert!(
        callback.ends_with("/api/v1/exotel/status?secret=hook"),
        "{callback}"
    );

    let json = br#"{"CallSid": "CA-j", "CustomField": "j1", "Status": "no-answer", "EventType": "terminal"}"#;
    request(
        server.addr,
        "POST",
        "/api/v1/exotel/status",
        &[("Content-Type", "application/json")],
        json,
    )
    .assert_error(401, "unauthorized");
    let r = request(
        server.addr,
        "POST",
        "/api/v1/exotel/status?secret=hook",
        &[("Content-Type", "application/json")],
        json,
    );
    assert_eq!(r.status, 200);

    server.get("/calls").assert_error(401, "unauthorized");
    server.get("/calls/j1").assert_error(401, "unauthorized");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let row = request(
            server.addr,
            "GET",
            "/calls/j1",
            &[("Authorization", "Bearer user-token")],
            b"",
        )
        .json();
        if row["status"] == "no-answer" {
            break;
        }
        assert!(Instant::now() < deadline, "{row}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let list = request(
        server.addr,
        "GET",
        "/calls?limit=1",
        &[("Authorization", "Bearer user-token")],
        b"",
    )
    .json();
    assert_eq!(list["calls"][0]["callLogId"], "j1");
    assert!(list["next"].is_string(), "a full page has a cursor: {list}");
}

#[test]
fn backup_copies_the_log_while_the_server_writes() {
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-bk".into(),
    });
    let server = start(&fake, &[]);
    for i in 0..5 {
        assert_eq!(place(&server, &format!("bk-{i}")).status, 200);
    }
    server.get("/calls/bk-4");
    // The server keeps writing (more calls, every one accepted) while copies are taken, until
    // one copy is seen to overlap the writes: calls were accepted both while it ran and after.
    let placed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (addr, placed, stop) = (server.addr, placed.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 5;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let body = format!(r#"{{"to": "+919876543210", "callLogId": "bk-{i}"}}"#);
                let r = request(
                    addr,
                    "POST",
                    "/call",
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                );
                assert_eq!(r.status, 200, "a write during the backup: {r:?}");
                placed.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                i += 1;
            }
        })
    };
    let count = || placed.load(std::sync::atomic::Ordering::Acquire);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (copy, out) = (1..)
        .find_map(|n| {
            assert!(Instant::now() < deadline, "no backup overlapped the writes");
            let name = format!("backup-{n}.db");
            let backup = std::process::Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"))
                .current_dir(&server.dir)
                .env_clear()
                .args(["backup", &name])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            // Writes accepted from here until the copy has exited overlapped it.
            let before = count();
            let out = backup.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            (count() > before).then(|| (server.dir.join(&name), out))
        })
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Release);
    writer.join().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("backed up to backup-"));
    // A consistent database: it opens, passes SQLite's own check, and holds the calls written
    // before the copy began.
    let db = rusqlite::Connection::open(&copy).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let ids: Vec<String> = db
        .prepare("SELECT call_log_id FROM calls")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for i in 0..5 {
        assert!(ids.contains(&format!("bk-{i}")), "{ids:?}");
    }
    // A file that exists is never overwritten.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"))
        .current_dir(&server.dir)
        .env_clear()
        .args(["backup", "backup-1.db"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("the file exists"));
}

#[test]
fn retention_days_prunes_old_ended_calls_and_their_recordings() {
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-ret".into(),
    });
    let dir = support::temp_dir("retention");
    let env = support::exotel_line_env(&fake.base_url());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    {
        // "old-live" stays ringing: no grace for it (the restart below is a crash's stand-in).
        let mut env = env.clone();
        env.push(("SHUTDOWN_GRACE_S", "0"));
        let server = Server::start_in(dir.clone(), &env);
        for id in ["old-ended", "old-live", "new-ended"] {
            assert_eq!(place(&server, id).status, 200);
        }
        for id in ["old-ended", "new-ended"] {
            let body =
                format!("CallSid=CA-ret&Status=completed&EventType=terminal&CustomField={id}");
            assert_eq!(status_callback(&server, &body).status, 200);
            server.row_when(id, &[], |r| r["status"] == "completed");
        }
        server.signal("TERM");
        server.wait_exit(Duration::from_secs(10));
    }
    // Ten days pass for two of them; one of those is still live (as a crash left it: the
    // restart marks it interrupted, an end, so it goes too), the other ended.
    let data = dir.join("data");
    let recordings = data.join("recordings");
    std::fs::create_dir_all(&recordings).unwrap();
    let named = recordings.join("old-ended.wav");
    std::fs::write(&named, b"RIFF").unwrap();
    let orphan = recordings.join("orphan.wav");
    std::fs::write(&orphan, b"RIFF").unwrap();
    let fresh = recordings.join("fresh.wav");
    std::fs::write(&fresh, b"RIFF").unwrap();
    let ten_days_ago = std::time::SystemTime::now() - Duration::from_secs(10 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&orphan)
        .unwrap()
        .set_modified(ten_days_ago)
        .unwrap();
    let old_ms = ten_days_ago
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    support::execute_sql(
        &dir,
        &format!(
            "UPDATE calls SET created_at = {old_ms} WHERE call_log_id IN ('old-ended', 'old-live');
             UPDATE calls SET recording_path = '{}' WHERE call_log_id = 'old-ended';
             UPDATE calls SET status = 'in-progress' WHERE call_log_id = 'old-live';",
            named.to_str().unwrap()
        ),
    );

    let mut env = env.clone();
    env.push(("RETENTION_DAYS", "7"));
    let server = Server::start_in(dir.clone(), &env);
    server.wait_for_log(&["retention.pruned", "calls=2", "recordings=2"]);
    server
        .get("/calls/old-ended")
        .assert_error(404, "not_found");
    server.get("/calls/old-live").assert_error(404, "not_found");
    assert_eq!(server.get("/calls/new-ended").json()["status"], "completed");
    assert!(!named.exists() && !orphan.exists());
    assert!(fresh.exists(), "a recent recording stays");
}
