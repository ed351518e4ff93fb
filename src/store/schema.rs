//! Where the stored state lives ([`Location`]: a SQLite file, or PostgreSQL by
//! `DATABASE_URL`), each owner's connection to it, and the schema: one file per backend
//! ([`sqlite`], [`postgres`]), each with its tables and its version.

use super::sql::{self, Db};
use std::fmt;
use std::path::PathBuf;

#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

/// Where the stored state lives.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// `DATA_DIR/calls.db`, the embedded default.
    Sqlite(PathBuf),
    /// `DATABASE_URL=postgres://…`: shared by every instance that names it.
    #[cfg(feature = "postgres")]
    Postgres(String),
}

/// Which owner a connection is for: each has its own connection and thread, and its own
/// durability (see [`Location::connect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The call log's writer: many small writes, grouped; on SQLite a power cut may lose its
    /// last milliseconds of commits (a crash of the process loses none).
    CallLog,
    /// Phones, agents, campaigns, the do-not-call list: every commit durable, since a campaign
    /// attempt is written before Exotel is asked and must never be sent twice.
    Store,
    /// The events deliverer.
    Events,
}

/// PostgreSQL's channel on which a call's end is announced (its callLogId), when the
/// transaction that wrote it commits (`calls::log`'s writer; `calls::shared::listen` hears it).
pub const CALL_ENDED: &str = "evb_call_ended";

/// PostgreSQL's channel on which a change to what every instance keeps in memory (the
/// do-not-call list, phones, agents) is announced (`store::tell_instances`).
pub const STORED_CHANGED: &str = "evb_stored_changed";

/// SQLite's page cache for the call log, in KiB. Its default (2 MiB) fills as the call log
/// grows and would be a fifth of the server's memory on a small board; the call log appends
/// and looks up single rows, which the kernel's page cache serves as well.
pub const PAGE_CACHE_KIB: i64 = 512;

impl Location {
    /// A connection for `owner`, set up for it.
    pub fn connect(&self, owner: Owner) -> sql::Result<Box<dyn Db + Send>> {
        match self {
            Location::Sqlite(path) => {
                let db = super::sqlite::Sqlite::open(path)?;
                if owner == Owner::CallLog {
                    db.conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
                    db.conn.pragma_update(None, "synchronous", "NORMAL")?;
                }
                Ok(Box::new(db))
            }
            #[cfg(feature = "postgres")]
            Location::Postgres(url) => {
                // Every owner's commits are durable: `synchronous_commit = off`, the likeness
                // of the call log's SQLite setting, loses the last commits when the database
                // server (not the machine) crashes, which tests/postgres.rs saw happen.
                Ok(Box::new(super::postgres::Postgres::connect(url)?))
            }
        }
    }

    /// The SQLite file, when the state lives in one.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match self {
            Location::Sqlite(path) => Some(path),
            #[cfg(feature = "postgres")]
            Location::Postgres(_) => None,
        }
    }
}

/// The location as a log line or an error may show it: a file's path, or a URL with its
/// password left out.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            #[cfg(feature = "postgres")]
            Location::Postgres(url) => f.write_str(&super::postgres::without_password(url)),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Brings every table to this program's schema on `conn` (one transaction per step); refuses
/// a database whose schema is newer than this program's.
pub fn prepare(conn: &dyn Db) -> sql::Result<()> {
    match conn.backend() {
        sql::Backend::Sqlite => sqlite::migrate(conn),
        #[cfg(feature = "postgres")]
        sql::Backend::Postgres => postgres::migrate(conn),
        #[cfg(not(feature = "postgres"))]
        sql::Backend::Postgres => Err(sql::Error::other("built without PostgreSQL")),
    }
}
