//! The unit tests of `media/session.rs`.

use super::{Pacer, PACING_SLACK};
use std::time::{Duration, Instant};

#[test]
fn a_chunk_goes_when_less_than_the_lead_and_its_slack_is_queued() {
    let lead = Duration::from_millis(200);
    let edge = lead + PACING_SLACK;
    assert!(Pacer::allows(Duration::ZERO, lead));
    assert!(Pacer::allows(lead, lead), "due now");
    assert!(
        Pacer::allows(edge - Duration::from_micros(1), lead),
        "due within the slack"
    );
    assert!(!Pacer::allows(edge, lead));
    let dry = Instant::now() + Duration::from_secs(1);
    assert_eq!(Pacer::next_send(dry, lead), Some(dry - edge));
}

#[test]
fn the_pacer_paces_from_its_first_chunk_and_starts_afresh_after_running_dry() {
    let mut pacer = Pacer::default();
    let t0 = Instant::now();
    assert_eq!(pacer.ahead(t0), Duration::ZERO);
    pacer.sent(t0, Duration::from_millis(200));
    pacer.sent(t0 + Duration::from_millis(50), Duration::from_millis(200));
    // Chunk k is due from the first send, not from the last: no drift.
    assert_eq!(pacer.runs_dry_at(), Some(t0 + Duration::from_millis(400)));
    assert_eq!(
        pacer.ahead(t0 + Duration::from_millis(100)),
        Duration::from_millis(300)
    );
    assert_eq!(pacer.ahead(t0 + Duration::from_millis(400)), Duration::ZERO);
    assert_eq!(
        pacer.runs_dry_at(),
        None,
        "an underrun starts a fresh clock"
    );
}
