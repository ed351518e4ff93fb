//! When a campaign may dial: its calling window (hours of the day on chosen days, in a time
//! zone) and the clock it is read against.
//!
//! Time zones: the binary carries no time-zone database, so a window's `timezone` is
//! `Asia/Kolkata` (its old name `Asia/Calcutta`), `UTC`, or a fixed offset such as `+05:30`.
//! India keeps one offset all year, which is what a dialer for Indian numbers needs; a zone
//! with daylight saving is refused by name rather than read wrong.

/// Minutes in a day.
const DAY_MINUTES: i64 = 24 * 60;
const MINUTE_MS: i64 = 60_000;
/// `mon` … `sun`, as the API spells them; bit `i` of [`Window::days`] is `DAY_NAMES[i]`.
pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A calling window, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Minutes after local midnight; `start < end`.
    pub start: i64,
    pub end: i64,
    /// The zone's offset from UTC, in minutes.
    pub offset: i64,
    /// Bit `i` set: the window opens on `DAY_NAMES[i]`.
    pub days: u8,
}

impl Window {
    /// Reads `start`/`end` (`HH:MM`), `timezone` and `days`; the error names the field.
    pub fn parse(
        start: &str,
        end: &str,
        timezone: &str,
        days: &[String],
    ) -> Result<Window, String> {
        let start = clock_time(start).map_err(|e| format!("window.start {e}"))?;
        let end = clock_time(end).map_err(|e| format!("window.end {e}"))?;
        if start >= end {
            return Err(
                "window.start must come before window.end on the same day (a window across midnight is not supported: make it two campaigns)"
                    .into(),
            );
        }
        let offset = zone_offset(timezone).map_err(|e| format!("window.timezone {e}"))?;
        let mut mask = 0u8;
        for day in days {
            let i = DAY_NAMES
                .iter()
                .position(|d| d.eq_ignore_ascii_case(day.trim()))
                .ok_or_else(|| {
                    format!("window.days {day:?} is not one of {}", DAY_NAMES.join(", "))
                })?;
            mask |= 1 << i;
        }
        if mask == 0 {
            return Err("window.days is empty: the campaign would never dial".into());
        }
        Ok(Window {
            start,
            end,
            offset,
            days: mask,
        })
    }

    /// Whether the window is open at `ms` (milliseconds since the epoch).
    pub fn is_open(&self, ms: i64) -> bool {
        let local_minutes = (ms.div_euclid(MINUTE_MS)) + self.offset;
        let day = local_minutes.div_euclid(DAY_MINUTES);
        let minute = local_minutes.rem_euclid(DAY_MINUTES);
        self.days & (1 << weekday(day)) != 0 && (self.start..self.end).contains(&minute)
    }

    /// When the window next opens at or after `ms` (`ms` itself when open).
    pub fn next_open(&self, ms: i64) -> i64 {
        if self.is_open(ms) {
            return ms;
        }
        let local_minutes = ms.div_euclid(MINUTE_MS) + self.offset;
        let today = local_minutes.div_euclid(DAY_MINUTES);
        (0..=7)
            .map(|n| today + n)
            .filter(|day| self.days & (1 << weekday(*day)) != 0)
            .map(|day| (day * DAY_MINUTES + self.start - self.offset) * MINUTE_MS)
            .find(|&at| at > ms)
            .unwrap_or(ms)
    }
}

/// Monday = 0 for a count of days since 1970-01-01 (a Thursday).
fn weekday(days_since_epoch: i64) -> u32 {
    (days_since_epoch + 3).rem_euclid(7) as u32
}

/// `HH:MM` as minutes after midnight; `24:00` is the end of the day.
fn clock_time(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a time of day as HH:MM (09:00, 21:30)");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if ((0..24).contains(&h) && (0..60).contains(&m)) || (h == 24 && m == 0) {
        Ok(h * 60 + m)
    } else {
        Err(bad())
    }
}

/// A zone's offset in minutes: `Asia/Kolkata`, `UTC` or `±HH:MM`.
pub fn zone_offset(zone: &str) -> Result<i64, String> {
    match zone.trim() {
        "Asia/Kolkata" | "Asia/Calcutta" | "IST" => Ok(330),
        "UTC" | "Etc/UTC" | "GMT" | "Z" => Ok(0),
        z if z.starts_with(['+', '-']) => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let minutes = clock_time(&z[1..]).map_err(|_| {
                format!("{zone:?} is not an offset as +HH:MM")
            })?;
            if minutes > 14 * 60 {
                return Err(format!("{zone:?} is further from UTC than any zone"));
            }
            Ok(sign * minutes)
        }
        _ => Err(format!(
            "{zone:?} is not known here: use Asia/Kolkata, UTC or a fixed offset such as +05:30 (the binary carries no time-zone database)"
        )),
    }
}

/// An RFC 3339 time (`2026-11-26T09:00:00+05:30`, seconds and fraction optional, `Z` for
/// UTC) as milliseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a time as 2026-11-26T09:00:00+05:30");
    let s = s.trim();
    let (date, rest) = s.split_once(['T', ' ']).ok_or_else(bad)?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>());
    let (Some(Ok(y)), Some(Ok(mo)), Some(Ok(d))) = (ymd.next(), ymd.next(), ymd.next()) else {
        return Err(bad());
    };
    if !(1..=12).contains(&mo) || !(1..=days_in_month(y, mo)).contains(&d) {
        return Err(format!("{s:?} names a day its month does not have"));
    }
    let zone_at = rest
        .find(['Z', 'z', '+', '-'])
        .ok_or_else(|| format!("{s:?} has no time zone: end it with Z or +05:30"))?;
    let (time, zone) = rest.split_at(zone_at);
    let offset = match zone {
        "Z" | "z" => 0,
        z => zone_offset(z).map_err(|_| bad())?,
    };
    let mut hms = time.splitn(3, ':');
    let h: i64 = hms.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let m: i64 = hms.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let sec: f64 = match hms.next() {
        Some(v) => v.parse().map_err(|_| bad())?,
        None => 0.0,
    };
    if !(0..24).contains(&h) || !(0..60).contains(&m) || !(0.0..61.0).contains(&sec) {
        return Err(bad());
    }
    let days = days_from_civil(y, mo, d);
    let minutes = days * DAY_MINUTES + h * 60 + m - offset;
    Ok(minutes * MINUTE_MS + (sec * 1000.0).round() as i64)
}

/// Days in month `m` (1-12) of year `y`, Gregorian.
fn days_in_month(y: i64, m: i64) -> i64 {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The dialer's clock: the system's, or (`CAMPAIGN_CLOCK_START`) one that started at a chosen
/// time and runs at the same pace, for rehearsing a campaign's window and for the tests.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    offset_ms: i64,
}

impl Clock {
    pub fn system() -> Clock {
        Clock { offset_ms: 0 }
    }

    /// A clock that reads `start_ms` now.
    pub fn starting_at(start_ms: i64) -> Clock {
        Clock {
            offset_ms: start_ms - crate::calls::log::now_ms(),
        }
    }

    /// Milliseconds since the epoch, by this clock.
    pub fn now_ms(&self) -> i64 {
        crate::calls::log::now_ms() + self.offset_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn india(days: &[&str]) -> Window {
        let days: Vec<String> = days.iter().map(|d| d.to_string()).collect();
        Window::parse("09:00", "21:00", "Asia/Kolkata", &days).unwrap()
    }

    #[test]
    fn times_are_read_in_their_zone() {
        // 2026-11-26 is a Thursday.
        let t = parse_time("2026-11-26T09:00:00+05:30").unwrap();
        assert_eq!(t, parse_time("2026-11-26T03:30:00Z").unwrap());
        assert_eq!(t, 1_795_663_800_000);
        assert_eq!(parse_time("2026-11-26T03:30Z").unwrap(), t);
        assert!(parse_time("2026-11-26T09:00").is_err(), "no zone");
        assert!(parse_time("26/11/2026").is_err());
    }

    #[test]
    fn the_window_opens_at_its_start_and_closes_at_its_end_on_its_days() {
        let w = india(&["thu"]);
        let at = |s: &str| parse_time(s).unwrap();
        assert!(!w.is_open(at("2026-11-26T08:59:59+05:30")));
        assert!(w.is_open(at("2026-11-26T09:00:00+05:30")));
        assert!(w.is_open(at("2026-11-26T20:59:59+05:30")));
        assert!(!w.is_open(at("2026-11-26T21:00:00+05:30")));
        // Friday is not one of its days; the next opening is a week later.
        assert!(!w.is_open(at("2026-11-27T10:00:00+05:30")));
        assert_eq!(
            w.next_open(at("2026-11-26T21:00:00+05:30")),
            at("2026-12-03T09:00:00+05:30")
        );
        assert_eq!(
            w.next_open(at("2026-11-26T08:00:00+05:30")),
            at("2026-11-26T09:00:00+05:30")
        );
    }

    #[test]
    fn bad_windows_are_named() {
        let all: Vec<String> = DAY_NAMES.iter().map(|d| d.to_string()).collect();
        for (start, end, zone, named) in [
            ("9am", "21:00", "UTC", "window.start"),
            ("09:00", "25:00", "UTC", "window.end"),
            ("21:00", "09:00", "UTC", "window.start"),
            ("09:00", "21:00", "Europe/London", "window.timezone"),
        ] {
            let e = Window::parse(start, end, zone, &all).unwrap_err();
            assert!(e.starts_with(named), "{e}");
        }
        assert!(Window::parse("09:00", "21:00", "UTC", &["funday".into()])
            .unwrap_err()
            .contains("window.days"));
        assert_eq!(zone_offset("-03:00"), Ok(-180));
    }
}
