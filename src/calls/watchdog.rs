//! The watchdog: one OS thread that brings calls nobody else will end to a final state, so that
//! their slots come back and their rows do not stay open for good.
//!
//! - A call whose media never connected before its token expired (an inbound webhook, or a
//!   stream-mode call that was never answered) has its slot back and its row `failed`, end
//!   reason `no-media`.
//! - An outbound call that was placed and has had no status by its ring time plus
//!   `CALL_CHECK_MARGIN_S` (a wrong public URL, a callback Exotel could not deliver) is asked
//!   about through Exotel's call-details API and closed from the answer; a call still ringing or
//!   talking is asked again a minute later.
//!
//! Exotel's API blocks in the kernel, which is why this is a thread and not a coroutine.

use super::log::{CallLog, LogEvent, MediaCounts, Status};
use super::shared::Shared;
use super::slots::{DueCheck, Expired, Expiry, Slots};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the watchdog looks.
const TICK: Duration = Duration::from_secs(1);
/// A call Exotel still reports as ringing or in progress is asked about again after this.
const RECHECK: Duration = Duration::from_secs(60);

/// Starts the thread. Each call is asked about through the account that placed it (its slot
/// keeps it). With `shared` (PostgreSQL), a call whose media another instance took up is left
/// to that instance, and `orphans` settles the calls of instances that died.
pub fn start(
    slots: Arc<Slots>,
    call_log: CallLog,
    shared: Option<Shared>,
    mut orphans: Option<super::orphans::Orphans>,
) {
    let spawned = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || loop {
            std::thread::sleep(TICK);
            let now = Instant::now();
            if let Some(orphans) = &mut orphans {
                orphans.settle(&call_log, now);
            }
            for expired in slots.sweep(now) {
                if !media_elsewhere(shared.as_ref(), &expired) {
                    close_expired(&call_log, expired);
                }
            }
            for due in slots.due_for_check(now) {
                check(&slots, &call_log, due);
            }
        });
    if let Err(e) = spawned {
        crate::error!("watchdog.not_started", error = e);
    }
}

/// Whether a call this instance waited for in vain has its media on another instance.
fn media_elsewhere(shared: Option<&Shared>, expired: &Expired) -> bool {
    let (Some(shared), Expiry::NoMedia) = (shared, expired.why) else {
        return false;
    };
    match shared.media_elsewhere(expired.id.as_str()) {
        Ok(true) => {
            crate::info!(
                "call.media_elsewhere",
                callLogId = expired.id,
                detail = "another instance took up its media; its slot here is released"
            );
            true
        }
        Ok(false) => false,
        // Unknown: the call is left open rather than closed wrongly; its instance, or Exotel's
        // callback, ends it.
        Err(e) => {
            crate::warn!("call.media_unknown", callLogId = expired.id, error = e);
            true
        }
    }
}

fn close_expired(call_log: &CallLog, expired: Expired) {
    match expired.why {
        Expiry::NoMedia => {
            crate::warn!(
                "call.no_media",
                callLogId = expired.id,
                detail = "its media never connected before its token expired; slot released"
            );
            call_log.record(LogEvent::MediaEnded {
                id: expired.id,
                status: Some(Status::Failed),
                reason: "no-media".into(),
                counts: MediaCounts::default(),
            });
        }
        // A call past CALL_SLOT_TIMEOUT_S may still be talking: its row is left to its media
        // session or Exotel's callback, only its slot is back.
        Expiry::SlotTimeout => crate::warn!(
            "call.slot_timeout",
            callLogId = expired.id,
            detail = "CALL_SLOT_TIMEOUT_S passed; slot released"
        ),
    }
}

/// Asks Exotel how the call went; a final answer closes it as the status callback would have.
fn check(slots: &Slots, call_log: &CallLog, due: DueCheck) {
    let DueCheck {
        id,
        call_sid,
        account,
    } = due;
    let call_sid = call_sid.as_str();
    let answer = account.call_details(call_sid);
    let status = answer
        .as_ref()
        .ok()
        .and_then(|d| Status::from_exotel(&d.status));
    match (&answer, status) {
        (Ok(details), Some(status)) if status.is_final() => {
            crate::info!(
                "call.checked",
                callLogId = id,
                callSid = call_sid,
                status = details.status,
                detail = "no status callback came; closed from Exotel's call details"
            );
            slots.release(&id);
            call_log.record(LogEvent::ExotelStatus {
                custom_field: Some(id.as_str().to_owned()),
                call_sid: Some(call_sid.to_owned()),
                status: Some(status),
                duration_s: details.duration_s,
                recording_url: None,
            });
        }
        (Ok(details), _) => {
            crate::info!(
                "call.checked",
                callLogId = id,
                callSid = call_sid,
                status = details.status,
                detail = "still going; asked again in a minute"
            );
            slots.check_at(&id, Instant::now() + RECHECK, &account);
        }
        (Err(e), _) => {
            crate::warn!(
                "call.check_failed",
                callLogId = id,
                callSid = call_sid,
                error = e,
                detail = "asked again in a minute"
            );
            slots.check_at(&id, Instant::now() + RECHECK, &account);
        }
    }
}
