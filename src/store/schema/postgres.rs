//! The schema in PostgreSQL (`DATABASE_URL`): every table in one place, versioned in
//! `schema_version`. Several instances may start at once, so a migration holds an advisory
//! lock for its transaction: one instance migrates, the others wait and find it done.
//!
//! The tables and columns are SQLite's (`schema::sqlite`), with PostgreSQL's types: every
//! integer is a `BIGINT` (SQLite's are 64-bit), and the tables SQLite orders by its implicit
//! `rowid` have a `rowid` column of their own, so that one statement reads both.

use crate::store::sql::{self, params, Db};

/// The schema this code writes.
pub const SCHEMA_VERSION: i32 = 2;

/// Any fixed number, the same in every instance: the advisory lock migrations take.
const MIGRATION_LOCK: i64 = 0x6576_625f_7363_6865;

const STEPS: [(i32, &str); SCHEMA_VERSION as usize] = [
    (
        1,
        "CREATE TABLE calls (
         seq BIGSERIAL PRIMARY KEY,
         call_log_id TEXT NOT NULL UNIQUE,
         direction TEXT NOT NULL,
         from_number TEXT, to_number TEXT, caller_id TEXT,
         call_sid TEXT, stream_sid TEXT,
         status TEXT NOT NULL,
         created_at BIGINT NOT NULL, answered_at BIGINT, ended_at BIGINT,
         duration_s BIGINT, end_reason TEXT,
         frames_in BIGINT NOT NULL DEFAULT 0, bytes_in BIGINT NOT NULL DEFAULT 0,
         frames_out BIGINT NOT NULL DEFAULT 0, bytes_out BIGINT NOT NULL DEFAULT 0,
         dtmf TEXT NOT NULL DEFAULT '',
         recording_path TEXT, exotel_recording_url TEXT, last_error TEXT,
         do_not_call BIGINT NOT NULL DEFAULT 0,
         handoff TEXT, handoff_answer BIGINT, disconnected_by TEXT,
         stream_status TEXT, stream_duration_s BIGINT, stream_error TEXT,
         agent TEXT, bot TEXT
     );
     CREATE INDEX calls_call_sid ON calls(call_sid);
     CREATE INDEX calls_status ON calls(status, seq);
     CREATE INDEX calls_handoff ON calls(seq) WHERE handoff IS NOT NULL;
     CREATE TABLE call_history (
         rowid BIGSERIAL PRIMARY KEY,
         call_log_id TEXT NOT NULL, status TEXT NOT NULL, at BIGINT NOT NULL
     );
     CREATE INDEX call_history_call ON call_history(call_log_id);
     CREATE TABLE call_transcript (
         rowid BIGSERIAL PRIMARY KEY,
         call_log_id TEXT NOT NULL, role TEXT NOT NULL, text TEXT NOT NULL, at BIGINT NOT NULL
     );
     CREATE INDEX call_transcript_call ON call_transcript(call_log_id);
     CREATE TABLE events (
         seq BIGSERIAL PRIMARY KEY,
         id TEXT NOT NULL UNIQUE,
         type TEXT NOT NULL,
         call_log_id TEXT,
         body TEXT NOT NULL,
         created_at BIGINT NOT NULL,
         status TEXT NOT NULL DEFAULT 'pending',
         attempts BIGINT NOT NULL DEFAULT 0,
         next_at BIGINT NOT NULL,
         last_error TEXT
     );
     CREATE INDEX events_due ON events(status, next_at);
     CREATE INDEX events_call ON events(call_log_id, status, seq);
     CREATE TABLE dnc (number TEXT PRIMARY KEY, added_at BIGINT NOT NULL);
     CREATE TABLE phones (
         number TEXT PRIMARY KEY, api_key TEXT NOT NULL, api_token TEXT NOT NULL,
         sid TEXT NOT NULL, subdomain TEXT NOT NULL, api_base_url TEXT, app_id TEXT,
         max_concurrent BIGINT, agent TEXT
     );
     CREATE TABLE agents (
         name TEXT PRIMARY KEY, bot TEXT NOT NULL, url TEXT, headers TEXT, greeting TEXT,
         handoff TEXT, protocol TEXT, realtime TEXT, api_key TEXT
     );
     CREATE TABLE campaigns (
         seq BIGSERIAL PRIMARY KEY,
         id TEXT NOT NULL UNIQUE, name TEXT NOT NULL, status TEXT NOT NULL,
         settings TEXT NOT NULL, total BIGINT NOT NULL,
         created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, last_error TEXT
     );
     CREATE TABLE contacts (
         campaign_id TEXT NOT NULL, row BIGINT NOT NULL,
         to_number TEXT NOT NULL, params TEXT NOT NULL,
         state TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0,
         next_at BIGINT NOT NULL DEFAULT 0, outcome TEXT, call_log_id TEXT,
         PRIMARY KEY (campaign_id, row)
     );
     CREATE INDEX contacts_due ON contacts(campaign_id, state, next_at, row);
     CREATE INDEX contacts_call ON contacts(call_log_id);
     CREATE TABLE attempts (
         call_log_id TEXT PRIMARY KEY, campaign_id TEXT NOT NULL, row BIGINT NOT NULL,
         attempt BIGINT NOT NULL, state TEXT NOT NULL, outcome TEXT, call_sid TEXT,
         started_at BIGINT NOT NULL, ended_at BIGINT,
         UNIQUE (campaign_id, row, attempt)
     );
     CREATE INDEX attempts_open ON attempts(state) WHERE state != 'done';
     CREATE INDEX attempts_campaign ON attempts(campaign_id, attempt);",
    ),
    // 2: the instances sharing the database, the calls' slots as their leases, media tokens
    // and call plans any instance can take up (`calls::shared`), and the dialer's lease
    // (`calls::campaigns::leadership`).
    (
        2,
        "CREATE TABLE instances (
             id TEXT PRIMARY KEY, started_at BIGINT NOT NULL, heartbeat_at BIGINT NOT NULL
         );
         CREATE TABLE slot_leases (
             call_log_id TEXT PRIMARY KEY, holder TEXT NOT NULL, line TEXT,
             expires_at BIGINT NOT NULL
         );
         CREATE INDEX slot_leases_holder ON slot_leases(holder);
         CREATE TABLE media_grants (
             token TEXT PRIMARY KEY, call_log_id TEXT NOT NULL, expires_at BIGINT NOT NULL,
             over_capacity BIGINT NOT NULL, taken_by TEXT
         );
         CREATE INDEX media_grants_call ON media_grants(call_log_id);
         CREATE INDEX media_grants_expiry ON media_grants(expires_at);
         CREATE INDEX call_history_at ON call_history(at);
         CREATE TABLE stream_ends (
             call_log_id TEXT PRIMARY KEY, call_sid TEXT, handoff TEXT, ended_at BIGINT NOT NULL
         );
         CREATE INDEX stream_ends_call_sid ON stream_ends(call_sid);
         CREATE TABLE leaders (
             name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL
         );
         CREATE TABLE call_plans (
             call_log_id TEXT PRIMARY KEY, plan TEXT NOT NULL, expires_at BIGINT NOT NULL
         );",
    ),
];

/// Every table, brought to [`SCHEMA_VERSION`] under the migration lock.
pub fn migrate(conn: &dyn Db) -> sql::Result<()> {
    conn.transaction(|tx| {
        tx.query("SELECT pg_advisory_xact_lock(?1)", params![MIGRATION_LOCK])?;
        tx.batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
        let version: i32 = tx
            .row("SELECT MAX(version) FROM schema_version", params![], |r| {
                r.get::<Option<i32>>(0)
            })?
            .flatten()
            .unwrap_or(0);
        if version > SCHEMA_VERSION {
            return Err(sql::Error::other(format!(
                "the database has schema version {version}, newer than this program's {SCHEMA_VERSION}"
            )));
        }
        for (step, sql) in STEPS.iter().filter(|(step, _)| *step > version) {
            tx.batch(sql)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                params![*step],
            )?;
        }
        Ok(())
    })
}
