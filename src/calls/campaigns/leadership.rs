//! Which instance's dialer dials. One instance alone (SQLite) always does. Instances sharing
//! PostgreSQL take turns holding one lease, `leaders.dialer`: the holder dials every campaign,
//! so each campaign's `callsPerMinute` and `maxConcurrent` hold across the instances, and
//! when it dies the lease lapses (`INSTANCE_LEASE_S`) and another instance takes over,
//! reconciling the open attempts as after a restart.
//!
//! A holder that cannot renew its lease stops dialing before the lease can lapse, so that two
//! instances never dial at once, even one that is slow rather than dead.

use crate::store::Store;
use std::time::{Duration, Instant};

/// The lease's name.
const DIALER: &str = "dialer";

/// This instance's part in the dialing.
pub enum Leadership {
    /// One instance: it dials.
    Alone,
    /// One of several: it dials while it holds the lease.
    Shared {
        store: Store,
        holder: String,
        lease: Duration,
        /// When the lease was last taken or renewed.
        renewed: Option<Instant>,
        next_renewal: Instant,
    },
}

impl Leadership {
    pub fn shared(store: Store, holder: String, lease: Duration) -> Leadership {
        Leadership::Shared {
            store,
            holder,
            lease,
            renewed: None,
            next_renewal: Instant::now(),
        }
    }

    /// Whether this instance dials now, renewing (or trying to take) the lease when due.
    pub fn leads(&mut self) -> bool {
        let Leadership::Shared {
            store,
            holder,
            lease,
            renewed,
            next_renewal,
        } = self
        else {
            return true;
        };
        let now = Instant::now();
        if now >= *next_renewal {
            *next_renewal = now + *lease / 6;
            let was = renewed.is_some();
            match store.lead(DIALER, holder.clone(), crate::calls::log::now_ms(), *lease) {
                Ok(true) => {
                    *renewed = Some(now);
                    if !was {
                        crate::info!("dialer.leading", instance = holder);
                    }
                }
                Ok(false) => {
                    if was {
                        crate::warn!("dialer.lead_lost", instance = holder);
                    }
                    *renewed = None;
                }
                Err(e) => crate::warn!("dialer.lead_unknown", instance = holder, error = e),
            }
        }
        // Stops two renewals short of the lease's end, whatever the database said since.
        let margin = *lease / 3;
        renewed.is_some_and(|at| now.duration_since(at) + margin < *lease)
    }

    /// How long a follower waits before it asks again.
    pub fn retry_in(&self) -> Duration {
        match self {
            Leadership::Alone => Duration::ZERO,
            Leadership::Shared { lease, .. } => *lease / 6,
        }
    }
}
