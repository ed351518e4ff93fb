//! On PostgreSQL, the calls an instance left live when it died: rows that no lease holds any
//! more (`calls::shared`), settled by the instances still running through Exotel's call
//! details, as a restarted server settles its own placed calls. A final status from Exotel ends
//! the row with Exotel's word (and duration); a call Exotel still reports going is asked about
//! again at the next round (half a lease later); a call Exotel was never asked to place (no CallSid) or whose account
//! no instance knows is `interrupted`, end reason `instance-lost`.
//!
//! Exotel's API blocks in the kernel: this runs on the watchdog's thread.

use super::log::{CallLog, LogEvent, MediaCounts, Orphan, Status};
use super::CallLogId;
use crate::exotel::ExotelClient;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Calls looked at in one round at most.
const PER_ROUND: usize = 50;

/// The account that placed or took a call, by its numbers (a phone of `/phones`, else the
/// environment's line).
pub type AccountFor = Box<dyn Fn(&Orphan) -> Option<Arc<ExotelClient>> + Send>;

pub struct Orphans {
    /// How long a dead instance's leases outlive it (`INSTANCE_LEASE_S`): the age a row must
    /// have, and half of it the time between rounds.
    lease: Duration,
    accounts: AccountFor,
    next_round: Instant,
}

impl Orphans {
    pub fn new(lease: Duration, accounts: AccountFor) -> Orphans {
        Orphans {
            lease,
            accounts,
            next_round: Instant::now(),
        }
    }

    /// One round when due: each orphan asked about (or closed), at most [`PER_ROUND`].
    pub fn settle(&mut self, call_log: &CallLog, now: Instant) {
        if now < self.next_round {
            return;
        }
        self.next_round = now + self.lease / 2;
        let orphans = match call_log.orphans(SystemTime::now() - self.lease, PER_ROUND) {
            Ok(orphans) => orphans,
            Err(e) => return crate::warn!("orphans.unread", error = e),
        };
        for orphan in orphans {
            self.settle_one(call_log, &orphan);
        }
    }

    /// Settles one call, or leaves it for the next round (Exotel says it goes on, or could
    /// not be asked).
    fn settle_one(&self, call_log: &CallLog, orphan: &Orphan) {
        let Ok(id) = CallLogId::parse(&orphan.call_log_id) else {
            return;
        };
        let (Some(call_sid), Some(account)) = (&orphan.call_sid, (self.accounts)(orphan)) else {
            crate::warn!(
                "call.instance_lost",
                callLogId = id,
                detail = "its instance died and Exotel cannot be asked about it: interrupted"
            );
            call_log.record(LogEvent::MediaEnded {
                id,
                status: Some(Status::Interrupted),
                reason: "instance-lost".into(),
                counts: MediaCounts::default(),
            });
            return;
        };
        let details = match account.call_details(call_sid) {
            Ok(details) => details,
            Err(e) => return crate::warn!("call.check_failed", callLogId = id, error = e),
        };
        // A call Exotel still reports going is left for the next round.
        let Some(status) = Status::from_exotel(&details.status).filter(|s| s.is_final()) else {
            return;
        };
        crate::info!(
            "call.settled_elsewhere",
            callLogId = id,
            status = details.status
        );
        call_log.record(LogEvent::ExotelStatus {
            custom_field: Some(id.as_str().to_owned()),
            call_sid: Some(call_sid.clone()),
            status: Some(status),
            duration_s: details.duration_s,
            recording_url: None,
        });
    }
}
