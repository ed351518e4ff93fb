//! The call log's schema: the connection's settings, the tables and their migrations
//! (`SCHEMA_VERSION`), and marking the calls a crash left live `interrupted` at start.

use super::*;

/// SQLite's page cache, in KiB. Its default (2 MiB) fills as the call log grows and would be a
/// fifth of the server's memory on a small board; the call log appends and looks up single rows,
/// which the kernel's page cache serves as well.
pub(super) const PAGE_CACHE_KIB: i64 = 512;

/// The connection's settings: WAL, a bounded page cache, and waiting up to 5 s for a lock.
pub(super) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Schema, migration and crash recovery; returns how many calls were marked interrupted.
pub(super) fn prepare(conn: &Connection) -> rusqlite::Result<usize> {
    configure(conn)?;
    migrate(conn)?;
    mark_interrupted(conn, now_ms())
}

/// Each version's step: what it changes, applied in one transaction with the version it brings.
const STEPS: [(i32, &str); SCHEMA_VERSION as usize] = [
    // 1: the calls and their status history.
    (
        1,
        "CREATE TABLE calls (
             seq INTEGER PRIMARY KEY AUTOINCREMENT,
             call_log_id TEXT NOT NULL UNIQUE,
             direction TEXT NOT NULL,
             from_number TEXT, to_number TEXT, caller_id TEXT,
             call_sid TEXT, stream_sid TEXT,
             status TEXT NOT NULL,
             created_at INTEGER NOT NULL, answered_at INTEGER, ended_at INTEGER,
             duration_s INTEGER, end_reason TEXT,
             frames_in INTEGER NOT NULL DEFAULT 0, bytes_in INTEGER NOT NULL DEFAULT 0,
             frames_out INTEGER NOT NULL DEFAULT 0, bytes_out INTEGER NOT NULL DEFAULT 0,
             dtmf TEXT NOT NULL DEFAULT '',
             recording_path TEXT, exotel_recording_url TEXT, last_error TEXT
         );
         CREATE INDEX calls_call_sid ON calls(call_sid);
         CREATE INDEX calls_status ON calls(status, seq);
         CREATE TABLE call_history (
             call_log_id TEXT NOT NULL, status TEXT NOT NULL, at INTEGER NOT NULL
         );
         CREATE INDEX call_history_call ON call_history(call_log_id);",
    ),
    // 2: whether the caller asked not to be called again (the campaigns' key).
    (
        2,
        "ALTER TABLE calls ADD COLUMN do_not_call INTEGER NOT NULL DEFAULT 0;",
    ),
    // 3: how the stream ended (Exotel's Passthru after the Voicebot applet) and the
    // handoff to a person.
    (
        3,
        "ALTER TABLE calls ADD COLUMN handoff TEXT;
         ALTER TABLE calls ADD COLUMN handoff_answer INTEGER;
         ALTER TABLE calls ADD COLUMN disconnected_by TEXT;
         ALTER TABLE calls ADD COLUMN stream_status TEXT;
         ALTER TABLE calls ADD COLUMN stream_duration_s INTEGER;
         ALTER TABLE calls ADD COLUMN stream_error TEXT;
         CREATE INDEX IF NOT EXISTS calls_handoff ON calls(seq) WHERE handoff IS NOT NULL;",
    ),
    // 4: the call's agent and who answered its stream.
    (
        4,
        "ALTER TABLE calls ADD COLUMN agent TEXT;
         ALTER TABLE calls ADD COLUMN bot TEXT;",
    ),
    // 5: the call's transcript, turn by turn.
    (
        5,
        "CREATE TABLE call_transcript (
             call_log_id TEXT NOT NULL,
             role TEXT NOT NULL,
             text TEXT NOT NULL,
             at INTEGER NOT NULL
         );
         CREATE INDEX call_transcript_call ON call_transcript(call_log_id);",
    ),
    // 6: the events outbox: each signed event for the user's backend, written with the change
    // it reports, until it is delivered or given up.
    (
        6,
        "CREATE TABLE events (
             seq INTEGER PRIMARY KEY AUTOINCREMENT,
             id TEXT NOT NULL UNIQUE,
             type TEXT NOT NULL,
             call_log_id TEXT,
             body TEXT NOT NULL,
             created_at INTEGER NOT NULL,
             status TEXT NOT NULL DEFAULT 'pending',
             attempts INTEGER NOT NULL DEFAULT 0,
             next_at INTEGER NOT NULL,
             last_error TEXT
         );
         CREATE INDEX events_due ON events(status, next_at);
         CREATE INDEX events_call ON events(call_log_id, status, seq);",
    ),
];

/// Brings the schema to `SCHEMA_VERSION`, one transaction per version; refuses a newer one.
pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the database has schema version {version}, newer than this program's {SCHEMA_VERSION}"
        )));
    }
    for (step, sql) in STEPS.iter().filter(|(step, _)| *step > version) {
        conn.execute_batch(&format!(
            "BEGIN; {sql} PRAGMA user_version = {step}; COMMIT;"
        ))?;
    }
    Ok(())
}

/// Calls left live by a process that stopped without closing them (a crash, a `kill -9`) are
/// `interrupted` as of `now`, with that status in their history, in one transaction; answers
/// how many.
pub(super) fn mark_interrupted(conn: &Connection, now: i64) -> rusqlite::Result<usize> {
    const LIVE: &str = "status IN ('queued','initiated','connected','in-progress')";
    conn.execute_batch("BEGIN")?;
    let marked = (|| {
        conn.execute(
            &format!(
                "INSERT INTO call_history (call_log_id, status, at)
                 SELECT call_log_id, 'interrupted', ?1 FROM calls WHERE {LIVE}"
            ),
            [now],
        )?;
        conn.execute(
            &format!(
                "UPDATE calls SET status = 'interrupted', ended_at = ?1,
                     end_reason = COALESCE(end_reason, 'process-stopped') WHERE {LIVE}"
            ),
            [now],
        )
    })();
    match marked {
        Ok(n) => conn.execute_batch("COMMIT").map(|()| n),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
