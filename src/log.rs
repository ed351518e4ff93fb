//! One line per event on stderr: `2026-11-24T17:52:22.123Z INFO call.placed callLogId=… key=value`.
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

/// Stops (or resumes) every log line of this process: for the fuzzers, whose millions of
/// inputs would otherwise spend their time writing lines nobody reads.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// Writes one event line. `fields` are `key=value` pairs; values with spaces or quotes are quoted.
pub fn event(level: Level, name: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    if QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
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
    // One write call per line keeps lines whole when several threads log at once.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
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
