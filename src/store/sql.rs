//! The one interface every stored table is read and written through, whichever database holds
//! it: [`Db`], a connection that runs a statement with parameters and answers rows of
//! [`Value`]s. SQLite (`store::sqlite`) and PostgreSQL (`store::postgres`) implement it.
//!
//! Statements are written once, in the SQL both databases accept: numbered parameters `?1`,
//! `?2`… (the PostgreSQL side numbers them `$1`, `$2`…), `ON CONFLICT … DO NOTHING` or
//! `DO UPDATE` rather than SQLite's `INSERT OR …`, `RETURNING` rather than `changes()`, and
//! `CAST(… AS BIGINT)` around sums. Only the schema differs, and each backend keeps its own.
//!
//! This module knows no database: no socket, no file.

use std::fmt;

/// One value in or out of a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// What went wrong, as the callers decide on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The database could not be reached or written (a full disk, a lock held too long, a
    /// server down or restarting): the same work may succeed later and is kept for then.
    Unavailable,
    /// A uniqueness or other constraint refused the row.
    Constraint,
    /// Anything else: the statement or its values are wrong; retrying cannot help.
    Other,
}

/// A database error: its kind and the database's own words.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn other(message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::Other,
            message: message.into(),
        }
    }

    /// Whether the same work may succeed later (see [`ErrorKind::Unavailable`]).
    pub fn is_unavailable(&self) -> bool {
        self.kind == ErrorKind::Unavailable
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Which database a connection is to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection. Its owner is one OS thread (both databases block in the kernel): coroutines
/// hand that thread work and wait for the answer.
pub trait Db {
    fn backend(&self) -> Backend;
    /// Runs one statement; answers how many rows it changed.
    fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<usize>;
    /// Runs one statement; answers its rows.
    fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>>;
    /// Runs statements separated by `;`, without parameters.
    fn batch(&self, sql: &str) -> Result<()>;
}

impl dyn Db + '_ {
    /// The first row's `read`, if there is a row.
    pub fn row<T>(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
        read: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        self.query(sql, params)?.first().map(read).transpose()
    }

    /// Each row's `read`, in order.
    pub fn rows<T>(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
        read: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.query(sql, params)?.iter().map(read).collect()
    }

    /// Runs `work` in one transaction: committed when it succeeds, rolled back when it fails.
    pub fn transaction<T>(&self, work: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        self.batch("BEGIN")?;
        match work(self) {
            Ok(done) => self.batch("COMMIT").map(|()| done),
            Err(e) => {
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

/// A statement's parameters, each borrowed as a [`ToValue`]: `params![id, n as i64]`.
macro_rules! params {
    ($($p:expr),* $(,)?) => {
        &[$(&$p as &dyn $crate::store::sql::ToValue),*] as &[&dyn $crate::store::sql::ToValue]
    };
}
pub(crate) use params;

/// One row of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Column `i` as `T`.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T> {
        let value = self
            .0
            .get(i)
            .ok_or_else(|| Error::other(format!("no column {i}")))?;
        T::from_value(value).map_err(|e| Error::other(format!("column {i}: {}", e.message)))
    }
}

/// A Rust value as a statement's parameter.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

/// A column's value as a Rust value.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Result<Self>;
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                // Every integer stored here fits an i64 (counts, milliseconds, limits).
                Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
        impl FromValue for $t {
            fn from_value(value: &Value) -> Result<Self> {
                match value {
                    Value::Int(n) => <$t>::try_from(*n)
                        .map_err(|_| Error::other(format!("{n} is out of range"))),
                    other => Err(mismatch("an integer", other)),
                }
            }
        }
    )*};
}
integers!(i32, i64, u16, u32, u64, usize);

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, T::to_value)
    }
}

fn mismatch(wanted: &str, got: &Value) -> Error {
    Error::other(format!("wanted {wanted}, the database has {got:?}"))
}

impl FromValue for Value {
    fn from_value(value: &Value) -> Result<Self> {
        Ok(value.clone())
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self> {
        match value {
            Value::Text(s) => Ok(s.clone()),
            other => Err(mismatch("text", other)),
        }
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self> {
        match value {
            Value::Int(n) => Ok(*n != 0),
            other => Err(mismatch("a boolean", other)),
        }
    }
}

impl FromValue for f64 {
    fn from_value(value: &Value) -> Result<Self> {
        match value {
            Value::Real(x) => Ok(*x),
            Value::Int(n) => Ok(*n as f64),
            other => Err(mismatch("a number", other)),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_both_ways_and_refuse_what_does_not_fit() {
        assert_eq!(Some(3u32).to_value(), Value::Int(3));
        assert_eq!(None::<String>.to_value(), Value::Null);
        assert_eq!("a".to_value(), Value::Text("a".into()));
        let row = Row(vec![Value::Int(-1), Value::Null, Value::Text("x".into())]);
        assert_eq!(row.get::<i64>(0).unwrap(), -1);
        assert!(row.get::<u32>(0).is_err(), "a negative count is refused");
        assert_eq!(row.get::<Option<i64>>(1).unwrap(), None);
        assert!(row.get::<String>(1).is_err(), "NULL is not text");
        assert!(row.get::<i64>(2).is_err());
        assert!(row.get::<bool>(0).unwrap());
        assert!(row.get::<i64>(3).is_err(), "no such column");
    }
}
