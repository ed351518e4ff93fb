//! [`Db`] on SQLite: the embedded default, one file in `DATA_DIR` (`calls.db`) in WAL mode.
//! Statements go through the connection's statement cache: parsing SQL again for each call
//! log event was a third of its writer's time under a call-heavy load (perf:
//! `sqlite3RunParser`).

use super::sql::{Backend, Db, Error, ErrorKind, Result, Row, ToValue, Value};
use rusqlite::types::{ToSqlOutput, ValueRef};
use std::path::Path;

/// A connection to a SQLite file.
pub struct Sqlite {
    pub conn: rusqlite::Connection,
}

impl Sqlite {
    /// Opens (creating) the file, in WAL mode, waiting up to 5 s for another writer's lock.
    pub fn open(path: &Path) -> Result<Sqlite> {
        let conn = rusqlite::Connection::open(path).map_err(Error::from)?;
        let db = Sqlite { conn };
        db.conn.pragma_update(None, "journal_mode", "WAL")?;
        db.conn.busy_timeout(std::time::Duration::from_secs(5))?;
        db.conn.set_prepared_statement_cache_capacity(64);
        Ok(db)
    }

    /// An empty database in memory (tests).
    #[cfg(test)]
    pub fn memory() -> Sqlite {
        Sqlite {
            conn: rusqlite::Connection::open_in_memory().expect("SQLite opens in memory"),
        }
    }
}

struct Param<'a>(&'a dyn ToValue);

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Owned(match self.0.to_value() {
            Value::Null => rusqlite::types::Value::Null,
            Value::Int(n) => rusqlite::types::Value::Integer(n),
            Value::Real(x) => rusqlite::types::Value::Real(x),
            Value::Text(s) => rusqlite::types::Value::Text(s),
        }))
    }
}

fn bound<'a>(params: &'a [&'a dyn ToValue]) -> Vec<Param<'a>> {
    params.iter().map(|p| Param(*p)).collect()
}

fn value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Int(n),
        ValueRef::Real(x) => Value::Real(x),
        ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(String::from_utf8_lossy(t).into()),
    }
}

impl Db for Sqlite {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<usize> {
        let params = bound(params);
        Ok(self
            .conn
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params.iter()))?)
    }

    fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>> {
        let params = bound(params);
        let mut statement = self.conn.prepare_cached(sql)?;
        let columns = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(params.iter()))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(value(row.get_ref(i)?));
            }
            out.push(Row(values));
        }
        Ok(out)
    }

    fn batch(&self, sql: &str) -> Result<()> {
        Ok(self.conn.execute_batch(sql)?)
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        use rusqlite::ErrorCode::*;
        let kind = match e.sqlite_error_code() {
            Some(
                DiskFull
                | SystemIoFailure
                | CannotOpen
                | ReadOnly
                | DatabaseBusy
                | DatabaseLocked
                | FileLockingProtocolFailed
                | OutOfMemory,
            ) => ErrorKind::Unavailable,
            Some(ConstraintViolation) => ErrorKind::Constraint,
            _ => ErrorKind::Other,
        };
        Error {
            kind,
            message: e.to_string(),
        }
    }
}
