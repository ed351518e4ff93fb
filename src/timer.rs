//! Waits handed to may (socket timeouts, `park_timeout`), rounded the way may's timers want.
//!
//! may keeps one timer queue per distinct duration (may 0.3 timeout_list.rs: a map keyed by the
//! interval in nanoseconds). A wait of arbitrary length, such as "until the next chunk is due"
//! or "until the request's deadline", would allocate a queue, install it in the timer heap and
//! wake the timer thread every time. Rounded up to whole milliseconds, the waits of a running
//! server fall into a few hundred queues that are reused. Owns that rule, and the [`Clock`]
//! the call bookkeeping reads (the monotonic clock, or one a test moves by hand).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where deadline-keeping state (slots, media tokens) reads the time: [`Instant::now`], or a
/// manual clock that moves only when a test says, so that its tests race no real deadline.
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<ManualClock>>);

#[derive(Debug)]
struct ManualClock {
    start: Instant,
    elapsed_ns: AtomicU64,
}

impl Clock {
    pub fn monotonic() -> Clock {
        Clock(None)
    }

    /// A clock that stands still until [`Clock::advance`].
    pub fn manual() -> Clock {
        Clock(Some(Arc::new(ManualClock {
            start: Instant::now(),
            elapsed_ns: AtomicU64::new(0),
        })))
    }

    pub fn now(&self) -> Instant {
        match &self.0 {
            None => Instant::now(),
            Some(m) => m.start + Duration::from_nanos(m.elapsed_ns.load(Ordering::Acquire)),
        }
    }

    /// Moves a manual clock on by `by`; the monotonic clock moves by itself.
    pub fn advance(&self, by: Duration) {
        if let Some(m) = &self.0 {
            m.elapsed_ns
                .fetch_add(by.as_nanos() as u64, Ordering::AcqRel);
        }
    }
}

/// `wait` rounded up to whole milliseconds: never shorter than asked, at most 1 ms longer.
/// In 64-bit arithmetic (`as_nanos` is 128-bit, and its division a call: every turn rounds).
pub fn whole_millis(wait: Duration) -> Duration {
    let sub_millis = wait.subsec_nanos().div_ceil(1_000_000);
    Duration::from_millis(
        wait.as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(sub_millis)),
    )
}

#[cfg(test)]
mod tests {
    use super::whole_millis;
    use std::time::Duration;

    #[test]
    fn rounds_up_to_whole_milliseconds() {
        assert_eq!(
            whole_millis(Duration::from_nanos(1)),
            Duration::from_millis(1)
        );
        assert_eq!(
            whole_millis(Duration::from_millis(7)),
            Duration::from_millis(7)
        );
        assert_eq!(
            whole_millis(Duration::from_micros(7_001)),
            Duration::from_millis(8)
        );
        assert_eq!(whole_millis(Duration::ZERO), Duration::ZERO);
        assert_eq!(
            whole_millis(Duration::new(3, 999_999_001)),
            Duration::from_secs(4)
        );
        assert_eq!(
            whole_millis(Duration::new(3, 1)),
            Duration::from_millis(3_001)
        );
        assert_eq!(whole_millis(Duration::MAX), Duration::from_millis(u64::MAX));
    }
}
