//! The unit tests of `calls/campaigns/mod.rs`.

use super::*;

fn settings(redial_unknown: bool) -> Settings {
    Settings {
        name: "t".into(),
        from: None,
        agent: None,
        max_concurrent: 1,
        calls_per_minute: 60,
        retry: Retry {
            on: vec![Outcome::Busy],
            attempts: 3,
            wait_seconds: 5,
        },
        window: WindowSpec::default(),
        start_at: None,
        redial_unknown,
    }
}

#[test]
fn retries_follow_the_policy_and_unknown_waits_for_redial_unknown() {
    let s = settings(false);
    let wait = Some(std::time::Duration::from_secs(5));
    assert_eq!(s.retry_after(Outcome::Busy, 1), wait);
    assert_eq!(s.retry_after(Outcome::Busy, 2), wait);
    assert_eq!(
        s.retry_after(Outcome::Busy, 3),
        None,
        "three attempts in all"
    );
    assert_eq!(s.retry_after(Outcome::NoAnswer, 1), None, "not in retry.on");
    assert_eq!(s.retry_after(Outcome::Completed, 1), None);
    assert_eq!(
        s.retry_after(Outcome::Unknown, 1),
        None,
        "not redialed by default"
    );
    let s = settings(true);
    assert_eq!(s.retry_after(Outcome::Unknown, 1), wait);
    assert_eq!(s.retry_after(Outcome::Unknown, 3), None);
}

#[test]
fn call_statuses_map_to_outcomes() {
    assert_eq!(
        Outcome::of_call_status("completed"),
        Some(Outcome::Completed)
    );
    assert_eq!(Outcome::of_call_status("canceled"), Some(Outcome::NoAnswer));
    assert_eq!(
        Outcome::of_call_status("bot-unavailable"),
        Some(Outcome::Failed)
    );
    assert_eq!(
        Outcome::of_call_status("interrupted"),
        None,
        "Exotel is asked"
    );
}
