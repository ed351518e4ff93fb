//! What `exotel-voicebot campaign status <id>` shows: a campaign's progress from
//! `GET /campaigns/{id}`, as a bar that redraws in place on a terminal, or as one plain line per
//! update when the output is a file or a pipe.
//!
//! ```text
//! reminders-nov [##############----------------]  47%  dialed 150  answered 131  failed 9  left 160  96/min  ~1m40s  running
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The figures of one look at a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub name: String,
    pub status: String,
    pub total: u64,
    /// Attempts sent to Exotel, retries included.
    pub dialed: u64,
    /// Contacts whose call was answered and completed.
    pub answered: u64,
    /// Contacts finished without a conversation (busy, no answer, failed, unknown).
    pub failed: u64,
    /// Contacts skipped or canceled.
    pub skipped: u64,
    /// Contacts not finished: pending or on a call now.
    pub left: u64,
}

impl Progress {
    /// Reads `GET /campaigns/{id}`'s answer; fields it lacks count as zero.
    pub fn from_answer(v: &serde_json::Value) -> Progress {
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        Progress {
            name: v["name"].as_str().unwrap_or("").to_owned(),
            status: v["status"].as_str().unwrap_or("").to_owned(),
            total: n("total"),
            dialed: n("dialed"),
            answered: n("completed"),
            failed: n("failed"),
            skipped: n("skippedDnc") + n("canceled"),
            left: n("pending") + n("inFlight"),
        }
    }

    /// Whether the campaign will not dial again.
    pub fn finished(&self) -> bool {
        self.status == "completed" || self.status == "canceled"
    }

    fn done(&self) -> u64 {
        self.total.saturating_sub(self.left)
    }
}

/// Dial rate over the last minute, from successive looks.
#[derive(Debug, Default)]
pub struct Rate {
    seen: VecDeque<(Instant, u64)>,
}

impl Rate {
    /// Notes `dialed` at `at`; answers calls per minute over the last minute seen (`None`
    /// until two looks a second apart).
    pub fn note(&mut self, at: Instant, dialed: u64) -> Option<f64> {
        self.seen.push_back((at, dialed));
        while self
            .seen
            .front()
            .is_some_and(|(t, _)| at.duration_since(*t) > Duration::from_secs(60))
        {
            self.seen.pop_front();
        }
        let (t0, d0) = *self.seen.front()?;
        let span = at.duration_since(t0).as_secs_f64();
        (span >= 1.0).then(|| (dialed.saturating_sub(d0)) as f64 * 60.0 / span)
    }
}

/// `1h05m`, `3m20s`, `45s`.
fn duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The figures after the bar (or alone, on a plain line).
fn figures(p: &Progress, per_minute: Option<f64>) -> String {
    let mut out = format!(
        "dialed {}  answered {}  failed {}  left {}",
        p.dialed, p.answered, p.failed, p.left
    );
    if p.skipped > 0 {
        out.push_str(&format!("  skipped {}", p.skipped));
    }
    match per_minute {
        Some(rate) => {
            out.push_str(&format!("  {rate:.0}/min"));
            if rate > 0.0 && p.left > 0 && !p.finished() {
                out.push_str(&format!("  ~{}", duration(p.left as f64 * 60.0 / rate)));
            }
        }
        None => out.push_str("  -/min"),
    }
    out.push_str("  ");
    out.push_str(&p.status);
    out
}

/// The bar, `width` cells wide, with the percentage done.
pub fn bar(p: &Progress, per_minute: Option<f64>, width: usize) -> String {
    let fraction = if p.total == 0 {
        1.0
    } else {
        p.done() as f64 / p.total as f64
    };
    let filled = ((fraction * width as f64).round() as usize).min(width);
    format!(
        "{} [{}{}] {:>3.0}%  {}",
        p.name,
        "#".repeat(filled),
        "-".repeat(width - filled),
        fraction * 100.0,
        figures(p, per_minute)
    )
}

/// One plain line, for a file or a pipe.
pub fn line(p: &Progress, per_minute: Option<f64>) -> String {
    format!(
        "{} {}/{}  {}",
        p.name,
        p.done(),
        p.total,
        figures(p, per_minute)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(done: u64) -> Progress {
        Progress {
            name: "reminders-nov".into(),
            status: "running".into(),
            total: 300,
            dialed: done + 10,
            answered: done - 9,
            failed: 9,
            skipped: 0,
            left: 300 - done,
        }
    }

    #[test]
    fn the_bar_fills_with_what_is_done() {
        let p = progress(150);
        assert_eq!(
            bar(&p, Some(96.0), 30),
            "reminders-nov [###############---------------]  50%  dialed 160  answered 141  failed 9  left 150  96/min  ~1m34s  running"
        );
        assert_eq!(
            line(&p, None),
            "reminders-nov 150/300  dialed 160  answered 141  failed 9  left 150  -/min  running"
        );
    }

    #[test]
    fn the_rate_is_over_the_last_minute() {
        let mut rate = Rate::default();
        let t = Instant::now();
        assert_eq!(rate.note(t, 0), None);
        assert_eq!(rate.note(t + Duration::from_secs(30), 50), Some(100.0));
        assert_eq!(rate.note(t + Duration::from_secs(90), 110), Some(60.0));
    }
}
