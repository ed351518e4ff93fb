//! The schema in SQLite (`DATA_DIR/calls.db`): the call log's tables, versioned with
//! `PRAGMA user_version` ([`SCHEMA_VERSION`]) since the first release, then the store's
//! (phones, agents, campaigns, the do-not-call list), made if missing and given the columns
//! added since.

use crate::store::sql::{self, params, Db};

/// The call log's schema version this code writes; older databases are migrated on open.
pub const SCHEMA_VERSION: i32 = 6;

/// Every table, brought to this program's schema.
pub fn migrate(conn: &dyn Db) -> sql::Result<()> {
    migrate_call_log(conn)?;
    store_tables(conn)
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
fn migrate_call_log(conn: &dyn Db) -> sql::Result<()> {
    let version: i32 = conn
        .row("PRAGMA user_version", params![], |r| r.get(0))?
        .unwrap_or(0);
    if version > SCHEMA_VERSION {
        return Err(sql::Error::other(format!(
            "the database has schema version {version}, newer than this program's {SCHEMA_VERSION}"
        )));
    }
    for (step, sql) in STEPS.iter().filter(|(step, _)| *step > version) {
        conn.batch(&format!(
            "BEGIN; {sql} PRAGMA user_version = {step}; COMMIT;"
        ))?;
    }
    Ok(())
}

/// The store's tables, made when missing; agents kept before a column existed get it (NULL:
/// the default).
fn store_tables(conn: &dyn Db) -> sql::Result<()> {
    conn.batch(STORE_TABLES)?;
    // PRAGMA table_info's second column is each column's name.
    let columns: Vec<String> = conn.rows("PRAGMA table_info(agents)", params![], |r| r.get(1))?;
    for column in ["handoff", "protocol", "realtime", "api_key"] {
        if !columns.iter().any(|c| c == column) {
            conn.batch(&format!("ALTER TABLE agents ADD COLUMN {column} TEXT;"))?;
        }
    }
    Ok(())
}

const STORE_TABLES: &str = "
    CREATE TABLE IF NOT EXISTS dnc (number TEXT PRIMARY KEY, added_at INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS phones (
        number TEXT PRIMARY KEY, api_key TEXT NOT NULL, api_token TEXT NOT NULL,
        sid TEXT NOT NULL, subdomain TEXT NOT NULL, api_base_url TEXT, app_id TEXT,
        max_concurrent INTEGER, agent TEXT
    );
    CREATE TABLE IF NOT EXISTS agents (
        name TEXT PRIMARY KEY, bot TEXT NOT NULL, url TEXT, headers TEXT, greeting TEXT,
        handoff TEXT
    );
    CREATE TABLE IF NOT EXISTS campaigns (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE, name TEXT NOT NULL, status TEXT NOT NULL,
        settings TEXT NOT NULL, total INTEGER NOT NULL,
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, last_error TEXT
    );
    CREATE TABLE IF NOT EXISTS contacts (
        campaign_id TEXT NOT NULL, row INTEGER NOT NULL,
        to_number TEXT NOT NULL, params TEXT NOT NULL,
        state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        next_at INTEGER NOT NULL DEFAULT 0, outcome TEXT, call_log_id TEXT,
        PRIMARY KEY (campaign_id, row)
    );
    CREATE INDEX IF NOT EXISTS contacts_due ON contacts(campaign_id, state, next_at, row);
    CREATE TABLE IF NOT EXISTS attempts (
        call_log_id TEXT PRIMARY KEY, campaign_id TEXT NOT NULL, row INTEGER NOT NULL,
        attempt INTEGER NOT NULL, state TEXT NOT NULL, outcome TEXT, call_sid TEXT,
        started_at INTEGER NOT NULL, ended_at INTEGER,
        UNIQUE (campaign_id, row, attempt)
    );
    CREATE INDEX IF NOT EXISTS attempts_open ON attempts(state) WHERE state != 'done';
    CREATE INDEX IF NOT EXISTS attempts_campaign ON attempts(campaign_id, attempt);";
