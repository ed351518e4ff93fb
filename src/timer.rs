//! Waits handed to may (socket timeouts, `park_timeout`), rounded the way may's timers want.
//!
//! may keeps one timer queue per distinct duration (may 0.3 timeout_list.rs: a map keyed by the
//! interval in nanoseconds). A wait of arbitrary length, such as "until the next chunk is due"
//! or "until the request's deadline", would allocate a queue, install it in the timer heap and
//! wake the timer thread every time. Rounded up to whole milliseconds, the waits of a running
//! server fall into a few hundred queues that are reused. Owns that rule only.

use std::time::Duration;

/// `wait` rounded up to whole milliseconds: never shorter than asked, at most 1 ms longer.
pub fn whole_millis(wait: Duration) -> Duration {
    Duration::from_millis(wait.as_nanos().div_ceil(1_000_000) as u64)
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
    }
}
