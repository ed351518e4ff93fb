//! [`Db`] on PostgreSQL (`DATABASE_URL=postgres://…`), through the synchronous `postgres`
//! client: it blocks its thread, which is always one of the store's own, never a coroutine.
//!
//! Values cross as PostgreSQL's binary types, chosen by the type the server gives each
//! parameter and column: [`Value::Int`] is sent as whatever integer (or boolean, or text) the
//! parameter is, so one statement serves both databases. A lost connection is
//! [`ErrorKind::Unavailable`], and the next statement connects again: the call log's writer
//! keeps its events until then.

use super::sql::{Backend, Db, Error, ErrorKind, Result, Row, ToValue, Value};
use bytes::BytesMut;
use postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

/// How long connecting may take before the database counts as unavailable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Prepared statements kept per connection; past it the cache starts again.
const STATEMENT_CACHE: usize = 128;

/// A connection, made again when lost.
pub struct Postgres {
    url: String,
    client: RefCell<Option<Connected>>,
}

struct Connected {
    client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
}

impl Postgres {
    /// Connects now, so that a wrong URL or password is an error at start.
    pub fn connect(url: &str) -> Result<Postgres> {
        let db = Postgres {
            url: url.to_owned(),
            client: RefCell::new(None),
        };
        db.with(|_| Ok(()))?;
        Ok(db)
    }

    fn open(&self) -> Result<Connected> {
        let mut config: postgres::Config = self
            .url
            .parse()
            .map_err(|e| Error::other(format!("DATABASE_URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("exotel-voicebot");
        let client = config
            .connect(super::postgres_tls::Rustls::new())
            .map_err(Error::from)?;
        Ok(Connected {
            client,
            statements: HashMap::new(),
        })
    }

    /// Runs `work` on the connection, connecting first when there is none; a connection that
    /// failed is dropped, for the next call to make anew.
    fn with<T>(&self, work: impl FnOnce(&mut Connected) -> Result<T>) -> Result<T> {
        let mut slot = self.client.borrow_mut();
        if slot.as_ref().is_none_or(|c| c.client.is_closed()) {
            *slot = Some(self.open()?);
        }
        let connected = slot.as_mut().expect("connected above");
        let answer = work(connected);
        if matches!(&answer, Err(e) if e.is_unavailable()) || connected.client.is_closed() {
            *slot = None;
        }
        answer
    }
}

impl Connected {
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        let statement = self.client.prepare(&numbered_dollars(sql))?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

/// `postgres://user:secret@host/db` as `postgres://user:…@host/db`, for logs and errors.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            let hidden = if userinfo.contains(':') { ":…" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{tail}")
        }
        None => url.to_owned(),
    }
    .split("password=")
    .next()
    .unwrap_or_default()
    .to_owned()
}

/// `sql` with SQLite's numbered parameters `?N` written as PostgreSQL's `$N` (a bare `?` takes
/// the next number), outside quoted strings and names.
pub fn numbered_dollars(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quote: Option<char> = None;
    let mut next = 1;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '?') => {
                out.push('$');
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    digits = next.to_string();
                }
                next = digits.parse::<usize>().unwrap_or(next) + 1;
                out.push_str(&digits);
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// A connection of its own that listens on some channels (`LISTEN`), connecting again (and
/// listening again) after a lost connection: notifications sent meanwhile are lost, which is
/// why its users also look for themselves after each (re)connection ([`Heard::connected`]).
pub struct Listener {
    url: String,
    channels: Vec<String>,
    client: Option<postgres::Client>,
}

/// What one wait heard.
#[derive(Debug, Default)]
pub struct Heard {
    /// The connection is new: anything announced before it was missed.
    pub connected: bool,
    /// Each notification's channel and payload, in order.
    pub notifications: Vec<(String, String)>,
}

impl Listener {
    pub fn new(url: &str, channels: &[&str]) -> Listener {
        Listener {
            url: url.to_owned(),
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
            client: None,
        }
    }

    /// What arrives within `wait` (nothing when it passes quietly).
    pub fn wait(&mut self, wait: Duration) -> Result<Heard> {
        let mut heard = Heard::default();
        if self.client.as_ref().is_none_or(postgres::Client::is_closed) {
            let mut config: postgres::Config = self
                .url
                .parse()
                .map_err(|e| Error::other(format!("DATABASE_URL: {e}")))?;
            config.connect_timeout(CONNECT_TIMEOUT);
            let mut client = config.connect(super::postgres_tls::Rustls::new())?;
            for channel in &self.channels {
                client.batch_execute(&format!("LISTEN {channel}"))?;
            }
            self.client = Some(client);
            heard.connected = true;
        }
        let client = self.client.as_mut().expect("connected above");
        let payloads_or = {
            use postgres::fallible_iterator::FallibleIterator as _;
            let mut notifications = client.notifications();
            let mut payloads = Vec::new();
            // The first waits; after it, only what is already there: the caller acts, then
            // waits again.
            let mut patience = wait;
            loop {
                match notifications.timeout_iter(patience).next() {
                    Ok(Some(n)) => payloads.push((n.channel().to_owned(), n.payload().to_owned())),
                    Ok(None) => break Ok(payloads),
                    Err(e) => break Err(e),
                }
                patience = Duration::ZERO;
            }
        };
        match payloads_or {
            Ok(notifications) => {
                heard.notifications = notifications;
                Ok(heard)
            }
            Err(e) => {
                self.client = None;
                Err(e.into())
            }
        }
    }
}

struct Param(Value);

impl std::fmt::Debug for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Param {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        match &self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(n) => match *ty {
                Type::INT8 => n.to_sql(ty, out),
                Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
                Type::BOOL => (*n != 0).to_sql(ty, out),
                Type::FLOAT8 => (*n as f64).to_sql(ty, out),
                _ => n.to_string().as_str().to_sql(ty, out),
            },
            Value::Real(x) => match *ty {
                Type::FLOAT4 => (*x as f32).to_sql(ty, out),
                _ => x.to_sql(ty, out),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<Value, BoxError> {
        Ok(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            Type::VOID => Value::Null,
            _ => Value::Text(<&str>::from_sql(ty, raw)?.to_owned()),
        })
    }

    fn from_sql_null(_: &Type) -> std::result::Result<Value, BoxError> {
        Ok(Value::Null)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::VOID || <&str as FromSql>::accepts(ty) || {
            matches!(
                *ty,
                Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL | Type::FLOAT8 | Type::FLOAT4
            )
        }
    }
}

fn bound(params: &[&dyn ToValue]) -> Vec<Param> {
    params.iter().map(|p| Param(p.to_value())).collect()
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Db for Postgres {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<usize> {
        let params = bound(params);
        self.with(|c| {
            let statement = c.statement(sql)?;
            let n = c.client.execute(&statement, &refs(&params))?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>> {
        let params = bound(params);
        self.with(|c| {
            let statement = c.statement(sql)?;
            let rows = c.client.query(&statement, &refs(&params))?;
            rows.iter()
                .map(|row| {
                    (0..row.len())
                        .map(|i| row.try_get::<_, Value>(i).map_err(Error::from))
                        .collect::<Result<Vec<Value>>>()
                        .map(Row)
                })
                .collect()
        })
    }

    fn batch(&self, sql: &str) -> Result<()> {
        self.with(|c| Ok(c.client.batch_execute(sql)?))
    }
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Error {
        use postgres::error::SqlState;
        let kind = match e.code() {
            None => ErrorKind::Unavailable,
            Some(code) if code.code().starts_with("23") => ErrorKind::Constraint,
            // Connection exceptions, insufficient resources, shutting down, a serialization
            // failure or deadlock: the same work may succeed once the database is back.
            Some(code)
                if code.code().starts_with("08")
                    || code.code().starts_with("53")
                    || code.code().starts_with("57P")
                    || *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED =>
            {
                ErrorKind::Unavailable
            }
            Some(_) => ErrorKind::Other,
        };
        let message = match e.as_db_error() {
            Some(db) => format!("{}: {}", db.severity(), db.message()),
            None => e.to_string(),
        };
        Error { kind, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_parameters_become_dollars_outside_strings() {
        assert_eq!(
            numbered_dollars("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d = ?12 AND e = ?"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d = $12 AND e = $13"
        );
        assert_eq!(numbered_dollars("x = ? OR y = ?"), "x = $1 OR y = $2");
        assert_eq!(numbered_dollars(r#"SELECT "?1" "#), r#"SELECT "?1" "#);
    }

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            without_password("postgres://app:s3cret@db.example:5432/voice?sslmode=require"),
            "postgres://app:…@db.example:5432/voice?sslmode=require"
        );
        assert_eq!(
            without_password("postgres://app@127.0.0.1:5/postgres"),
            "postgres://app@127.0.0.1:5/postgres"
        );
        assert_eq!(
            without_password("postgres://h/db?user=a&password=b"),
            "postgres://h/db?user=a&"
        );
    }
}
