//! One line per event on stderr: `2026-11-24T17:52:22.123Z INFO call.placed callLogId=… key=value`,
//! or with `LOG_FORMAT=json` one JSON object per line for log shippers:
//! `{"ts":"2026-11-24T17:52:22.123Z","level":"INFO","event":"call.placed","callLogId":"…"}`.
//! `LOG_LEVEL` (`info`, `warn`, `error`, `off`) drops the lines below it.
//!
//! Owns the log format and nothing else. It must not be called per media frame: the hot path
//! counts, and a later event reports the counts.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// The lowest level written: 0 info, 1 warn, 2 error, 3 nothing.
static MIN_LEVEL: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `LOG_LEVEL` and `LOG_FORMAT`, read by `config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Settings {
    /// The lowest level written; `None` writes nothing.
    pub level: Option<Level>,
    pub json: bool,
}

impl Settings {
    /// Everything from info up, as text: the default.
    pub const DEFAULT: Settings = Settings {
        level: Some(Level::Info),
        json: false,
    };

    /// `LOG_LEVEL`'s value.
    pub fn parse_level(text: &str) -> Option<Option<Level>> {
        match text.to_ascii_lowercase().as_str() {
            "info" | "debug" | "trace" => Some(Some(Level::Info)),
            "warn" | "warning" => Some(Some(Level::Warn)),
            "error" => Some(Some(Level::Error)),
            "off" | "none" => Some(None),
            _ => None,
        }
    }
}

fn rank(level: Level) -> u8 {
    match level {
        Level::Info => 0,
        Level::Warn => 1,
        Level::Error => 2,
    }
}

/// Lines kept instead of written while capturing (see [`Captured`]), the newest at most.
const CAPTURE_LINES: usize = 10_000;
static CAPTURING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static CAPTURED: std::sync::Mutex<std::collections::VecDeque<String>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

/// For tests that run a server inside their own process: from the first `Captured::start`, the
/// process's log lines are kept in memory instead of written, and a test that fails prints them
/// when its guard drops. A passing run stays quiet, even where a test provokes errors on purpose.
pub struct Captured(());

impl Captured {
    pub fn start() -> Captured {
        CAPTURING.store(true, std::sync::atomic::Ordering::Relaxed);
        Captured(())
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let lines = std::mem::take(&mut *CAPTURED.lock().unwrap_or_else(|p| p.into_inner()));
            // eprint!, not stderr: the test harness shows it with the failure.
            eprint!("server log:\n{}", lines.into_iter().collect::<String>());
        }
    }
}

/// Applies `LOG_LEVEL` and `LOG_FORMAT` to every line from now on.
pub fn init(settings: &Settings) {
    use std::sync::atomic::Ordering::Relaxed;
    MIN_LEVEL.store(settings.level.map_or(3, rank), Relaxed);
    JSON.store(settings.json, Relaxed);
}

/// Stops (or resumes) every log line of this process: for the fuzzers, whose millions of
/// inputs would otherwise spend their time writing lines nobody reads.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// Writes one event line. `fields` are `key=value` pairs; values with spaces or quotes are quoted.
pub fn event(level: Level, name: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    use std::sync::atomic::Ordering::Relaxed;
    if QUIET.load(Relaxed) || rank(level) < MIN_LEVEL.load(Relaxed) {
        return;
    }
    let line = if JSON.load(Relaxed) {
        json_line(level, name, fields)
    } else {
        text_line(level, name, fields)
    };
    if CAPTURING.load(Relaxed) {
        let mut kept = CAPTURED.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == CAPTURE_LINES {
            kept.pop_front();
        }
        kept.push_back(line);
        return;
    }
    // One write call per line keeps lines whole when several threads log at once.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn text_line(level: Level, name: &str, fields: &[(&str, &dyn std::fmt::Display)]) -> String {
    let mut line = String::with_capacity(128);
    write_utc_timestamp(&mut line, SystemTime::now());
    let _ = write!(line, " {} {}", level.as_str(), name);
    for (key, value) in fields {
        let value = value.to_string();
        if value.is_empty() || value.contains([' ', '"', '=', '\n', '\r', '\t']) {
            let _ = write!(line, " {key}={value:?}");
        } else {
            let _ = write!(line, " {key}={value}");
        }
    }
    line.push('\n');
    line
}

/// One JSON object; every value is a string, as the text format writes it.
fn json_line(level: Level, name: &str, fields: &[(&str, &dyn std::fmt::Display)]) -> String {
    let mut ts = String::with_capacity(24);
    write_utc_timestamp(&mut ts, SystemTime::now());
    let mut object = serde_json::Map::with_capacity(fields.len() + 3);
    object.insert("ts".into(), ts.into());
    object.insert("level".into(), level.as_str().into());
    object.insert("event".into(), name.into());
    for (key, value) in fields {
        object.insert((*key).into(), value.to_string().into());
    }
    let mut line = serde_json::Value::Object(object).to_string();
    line.push('\n');
    line
}

/// `info!("event.name", key = value, ...)`
#[macro_export]
macro_rules! info {
    ($name:expr $(, $key:ident = $value:expr)* $(,)?) => {
        $crate::log::event($crate::log::Level::Info, $name, &[$((stringify!($key), &$value as &dyn ::std::fmt::Display)),*])
    };
}

/// `warn!("event.name", key = value, ...)`
#[macro_export]
macro_rules! warn {
    ($name:expr $(, $key:ident = $value:expr)* $(,)?) => {
        $crate::log::event($crate::log::Level::Warn, $name, &[$((stringify!($key), &$value as &dyn ::std::fmt::Display)),*])
    };
}

/// `error!("event.name", key = value, ...)`
#[macro_export]
macro_rules! error {
    ($name:expr $(, $key:ident = $value:expr)* $(,)?) => {
        $crate::log::event($crate::log::Level::Error, $name, &[$((stringify!($key), &$value as &dyn ::std::fmt::Display)),*])
    };
}

/// RFC 3339 UTC with milliseconds, without a date crate (civil-from-days, Howard Hinnant's
/// public-domain algorithm).
pub fn write_utc_timestamp(out: &mut String, at: SystemTime) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        since.subsec_millis()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_match_known_dates() {
        let mut s = String::new();
        write_utc_timestamp(
            &mut s,
            UNIX_EPOCH + Duration::from_millis(1_795_542_742_123),
        );
        assert_eq!(s, "2026-11-24T17:52:22.123Z");
        s.clear();
        write_utc_timestamp(&mut s, UNIX_EPOCH + Duration::from_secs(951_782_400));
        assert_eq!(s, "2000-02-29T00:00:00.000Z");
    }
}
