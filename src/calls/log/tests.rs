//! The unit tests of `calls/log.rs`.

use super::*;
use crate::store::schema::sqlite::{migrate, SCHEMA_VERSION};
use crate::store::sqlite::Sqlite;
use crate::store::testing::on_each_backend;

fn id(s: &str) -> CallLogId {
    CallLogId::parse(s).unwrap()
}

#[test]
fn at_most_max_pending_writes_wait_and_past_it_the_oldest_go_counted() {
    let mut writer = Writer::new(
        Box::new(Sqlite::memory()),
        Location::Sqlite(":memory:".into()),
        Arc::new(Metrics::new()),
    );
    let event = |n: usize| Stamped {
        event: LogEvent::DoNotCall {
            id: id(&format!("c{n}")),
        },
        at: n as i64,
    };
    for n in 0..MAX_PENDING_WRITES {
        writer.keep(event(n));
    }
    assert_eq!(writer.pending.len(), MAX_PENDING_WRITES);
    assert_eq!(writer.dropped, 0, "exactly the cap waits");
    writer.keep(event(MAX_PENDING_WRITES));
    assert_eq!(writer.pending.len(), MAX_PENDING_WRITES);
    assert_eq!(writer.dropped, 1);
    assert_eq!(writer.pending.front().unwrap().at, 1, "the oldest went");
    assert_eq!(
        writer.pending.back().unwrap().at,
        MAX_PENDING_WRITES as i64,
        "the newest stays"
    );
}

#[test]
fn statuses_only_move_forward_and_callbacks_are_idempotent() {
    on_each_backend("forward", statuses_only_move_forward_on);
}

fn statuses_only_move_forward_on(at: &Location) {
    let (log, opened) = CallLog::open(at, Arc::new(Metrics::new())).unwrap();
    assert_eq!(opened.interrupted, 0);
    log.record(LogEvent::Requested {
        id: id("c1"),
        to: "+919876543210".into(),
        caller_id: "0801".into(),
    });
    log.record(LogEvent::Placed {
        id: id("c1"),
        call_sid: "CA1".into(),
    });
    log.record(LogEvent::MediaStarted {
        id: id("c1"),
        stream_sid: "S1".into(),
        call_sid: "CA1".into(),
        from: "".into(),
        to: "".into(),
        recording_path: None,
        agent: None,
        bot: "server-bot".into(),
    });
    // A late `connected` does not move it back.
    log.record(LogEvent::Connected {
        id: id("c1"),
        direction: Direction::Outbound,
        call_sid: "CA1".into(),
        from: "x".into(),
        to: "y".into(),
    });
    let status = LogEvent::ExotelStatus {
        custom_field: Some("c1".into()),
        call_sid: None,
        status: Some(Status::Completed),
        duration_s: Some(42),
        recording_url: Some("https://rec/1".into()),
    };
    log.record(status.clone());
    let once = log.get("c1").unwrap().unwrap();
    log.record(status);
    let twice = log.get("c1").unwrap().unwrap();
    assert_eq!(once, twice, "the same callback twice changes nothing");
    assert_eq!(once.status, "completed");
    assert_eq!(once.duration_s, Some(42));
    let history: Vec<&str> = once.history.iter().map(|h| h.status.as_str()).collect();
    assert_eq!(history, ["queued", "initiated", "in-progress", "completed"]);
}

#[test]
fn live_calls_are_interrupted_at_the_next_open_and_others_kept() {
    on_each_backend("reopen", live_calls_are_interrupted_on);
}

fn live_calls_are_interrupted_on(at: &Location) {
    {
        let (log, _) = CallLog::open(at, Arc::new(Metrics::new())).unwrap();
        log.record(LogEvent::Requested {
            id: id("done"),
            to: "1".into(),
            caller_id: "2".into(),
        });
        log.record(LogEvent::PlaceFailed {
            id: id("done"),
            error: "no".into(),
        });
        log.record(LogEvent::Connected {
            id: id("live"),
            direction: Direction::Inbound,
            call_sid: "CA".into(),
            from: "".into(),
            to: "".into(),
        });
        log.sync();
    }
    let (log, opened) = CallLog::open(at, Arc::new(Metrics::new())).unwrap();
    let live = log.get("live").unwrap().unwrap();
    let history: Vec<&str> = live.history.iter().map(|h| h.status.as_str()).collect();
    if at.sqlite_path().is_some() {
        assert_eq!(opened.interrupted, 1);
        assert_eq!(live.status, "interrupted");
        assert_eq!(live.end_reason.as_deref(), Some("process-stopped"));
        assert_eq!(
            history,
            ["connected", "interrupted"],
            "the mark is in its history"
        );
    } else {
        // On PostgreSQL a live row may be another instance's: an instance's start leaves it
        // (one no instance holds is settled later: tests/postgres.rs).
        assert_eq!(opened.interrupted, 0);
        assert_eq!(live.status, "connected");
        assert_eq!(history, ["connected"]);
    }
    let done = log.get("done").unwrap().unwrap();
    assert_eq!(done.status, "failed");
    assert_eq!(
        done.history.len(),
        2,
        "a finished call's history is kept as it was"
    );
    let all = log
        .list(ListQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        all.iter()
            .map(|c| c.call_log_id.as_str())
            .collect::<Vec<_>>(),
        ["live", "done"]
    );
    let failed = log
        .list(ListQuery {
            limit: 10,
            status: Some(Status::Failed),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(failed.len(), 1);
    let page = log
        .list(ListQuery {
            limit: 10,
            before: Some(all[0].seq),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page[0].call_log_id, "done");
}

#[test]
fn a_version_3_call_log_gains_the_agent_bot_transcript_and_outbox_and_keeps_its_rows() {
    let db = Sqlite::memory();
    migrate(&db).unwrap();
    // The database as version 3 left it, with a row.
    db.conn
        .execute_batch(
            "ALTER TABLE calls DROP COLUMN agent;
         ALTER TABLE calls DROP COLUMN bot;
         DROP TABLE call_transcript;
         DROP TABLE events;
         PRAGMA user_version = 3;
         INSERT INTO calls (call_log_id, direction, status, created_at)
             VALUES ('old-1', 'inbound', 'completed', 1);",
        )
        .unwrap();
    migrate(&db).unwrap();
    let conn: &dyn Db = &db;
    let version: i32 = conn
        .row("PRAGMA user_version", params![], |r| r.get(0))
        .unwrap()
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let events: i64 = conn
        .row("SELECT COUNT(*) FROM events", params![], |r| r.get(0))
        .unwrap()
        .unwrap();
    assert_eq!(events, 0, "the outbox is there, empty");
    let row = conn
        .row(
            &format!("SELECT {} FROM calls", rows::COLUMNS),
            params![],
            rows::row,
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.call_log_id.as_str(), row.status.as_str()),
        ("old-1", "completed")
    );
    assert_eq!((row.agent, row.bot), (None, None));
    assert_eq!(rows::transcript(conn, "old-1").unwrap(), Some(Vec::new()));
    assert_eq!(rows::transcript(conn, "nobody").unwrap(), None);
    // A newer database than this program's is refused, not changed.
    conn.batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .unwrap();
    assert!(migrate(conn).is_err());
}
