//! Delivering the outbox's events (`store::outbox`) to the user's backend (`EVENTS_URL`),
//! signed the Standard Webhooks way: headers `webhook-id` (the event's, the same on every
//! attempt), `webhook-timestamp` (Unix seconds) and `webhook-signature: v1,<base64 of the
//! HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the base64 part of `EVENTS_SECRET`.
//!
//! At least once, in order per call: one thread, its own connection to the call log's
//! database, the oldest due event of each call at a time; a `2xx` ends it, anything else is
//! tried again after 1 s, 2 s, 4 s … (at most an hour, ±20 %) until `EVENTS_RETRY_HOURS` have
//! passed since it was made (then `failed`, kept for `GET /events` and a retry by hand).
//! Nothing here runs on a call's path: a receiver that is slow or down delays events only.

use crate::config::EventsConfig;
use crate::metrics::{EventOutcome, Metrics};
use crate::store::outbox::{self, StoredEvent};
use crate::store::schema::Owner;
use crate::store::sql::Db;
use crate::store::Location;
use base64::Engine as _;
use std::sync::Arc;
use std::time::Duration;

/// How long a receiver has to answer one event.
pub const DELIVERY_TIMEOUT_S: u64 = 10;
/// Events tried in one pass at most (each call's oldest due one).
const BATCH: usize = 32;
/// How long the deliverer rests when nothing is due.
const IDLE: Duration = Duration::from_millis(200);
/// The longest wait between two attempts.
const MAX_BACKOFF_MS: i64 = 3_600_000;
/// Delivered and failed events are kept this long after the retry window, then deleted.
const KEEP_AFTER_MS: i64 = 7 * 24 * 3_600_000;

/// The signature Standard Webhooks asks for: base64 of HMAC-SHA256(`key`, "{id}.{ts}.{body}").
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let signed = ring::hmac::sign(&key, format!("{id}.{timestamp}.{body}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(signed.as_ref())
}

/// Starts the deliverer's thread on its own connection to the database at `at`.
pub fn start(at: &Location, config: EventsConfig, metrics: Arc<Metrics>) -> Result<(), String> {
    let conn = at
        .connect(Owner::Events)
        .map_err(|e| format!("{at}: {e}"))?;
    std::thread::Builder::new()
        .name("events".into())
        .spawn(move || run(conn.as_ref(), &config, &metrics))
        .map(drop)
        .map_err(|e| e.to_string())
}

fn run(conn: &dyn Db, config: &EventsConfig, metrics: &Metrics) {
    let mut next_prune = 0;
    loop {
        let now = crate::calls::log::now_ms();
        if now >= next_prune {
            let cutoff = now - config.retry_for.as_millis() as i64 - KEEP_AFTER_MS;
            if let Err(e) = outbox::prune(conn, cutoff) {
                crate::warn!("events.prune_failed", error = e);
            }
            next_prune = now + 3_600_000;
        }
        let due = match outbox::due(conn, now, BATCH) {
            Ok(due) => due,
            Err(e) => {
                crate::warn!("events.read_failed", error = e);
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if let Ok(oldest) = outbox::oldest_pending(conn) {
            metrics.events_oldest_pending(oldest.map(|at| now - at));
        }
        if due.is_empty() {
            std::thread::sleep(IDLE);
        }
        for event in due {
            deliver(conn, config, metrics, &event);
        }
    }
}

/// One attempt at one event, and what the outbox keeps of it.
fn deliver(conn: &dyn Db, config: &EventsConfig, metrics: &Metrics, event: &StoredEvent) {
    let answer = post(config, event);
    let now = crate::calls::log::now_ms();
    let written = match &answer {
        Ok(()) => {
            metrics.event(EventOutcome::Delivered);
            outbox::delivered(conn, event.seq)
        }
        Err(why) => {
            let next = next_attempt(event, config, now);
            metrics.event(match next {
                Some(_) => EventOutcome::Retried,
                None => EventOutcome::Failed,
            });
            crate::warn!(
                "events.not_taken",
                event = event.id,
                callLogId = event.call_log_id.as_deref().unwrap_or(""),
                error = why,
                retryInMs = next.map_or(-1, |at| at - now)
            );
            outbox::not_taken(conn, event.seq, why, next)
        }
    };
    if let Err(e) = written {
        crate::error!("events.write_failed", event = event.id, error = e);
    }
}

/// The event POSTed, signed; `Err` says why it was not taken.
fn post(config: &EventsConfig, event: &StoredEvent) -> Result<(), String> {
    let timestamp = crate::calls::log::now_ms() / 1000;
    let signed = signature(&config.key, &event.id, timestamp, &event.body);
    let response = minreq::post(&config.url)
        .with_header("Content-Type", "application/json")
        .with_header("webhook-id", &event.id)
        .with_header("webhook-timestamp", timestamp.to_string())
        .with_header("webhook-signature", format!("v1,{signed}"))
        .with_body(event.body.as_str())
        .with_timeout(DELIVERY_TIMEOUT_S)
        .with_max_redirects(0)
        .send()
        .map_err(|e| e.to_string())?;
    match response.status_code {
        200..=299 => Ok(()),
        status => Err(format!("the receiver answered {status}")),
    }
}

/// When to try again after `event`'s attempt that just failed; `None` once its retry window
/// has passed.
fn next_attempt(event: &StoredEvent, config: &EventsConfig, now: i64) -> Option<i64> {
    let give_up_at = event.created_at + config.retry_for.as_millis() as i64;
    if now >= give_up_at {
        return None;
    }
    let exponent = event.attempts.clamp(0, 22) as u32;
    let backoff = (1000i64 << exponent).min(MAX_BACKOFF_MS);
    // ±20 %, so that events failed together are not retried together.
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    let jitter = backoff / 5 * (i64::from(byte[0]) - 128) / 128;
    Some((now + backoff + jitter).min(give_up_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_standard_webhooks_own_example() {
        // The example of the Standard Webhooks specification's reference implementation.
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
