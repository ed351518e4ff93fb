//! Concurrency slots (`MAX_CONCURRENT_CALLS`): every live call, inbound and outbound, holds one
//! from the moment `/call` is accepted (or the webhook answers an inbound call) until its media
//! stream stops, a final status arrives, or `CALL_SLOT_TIMEOUT_S` passes.
//!
//! A slot also knows its call's CallSid once Exotel has given it, so that a webhook or a status
//! callback for the same callLogId under another CallSid cannot take the call over or end it,
//! and when an outbound call that never connected is due to be asked about (see
//! `exotel::watchdog`), so that a lost status callback costs minutes, not hours.
//!
//! A call placed on a phone of `/phones` with its own `maxConcurrent` also counts against that
//! phone's limit ([`LineLimit`]), and its slot keeps the phone's account so the watchdog asks
//! the account that placed it.
//!
//! In memory only: after a restart no call is live (the call log marks them interrupted).

use super::CallLogId;
use crate::exotel::ExotelClient;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Slots {
    max: usize,
    timeout: Duration,
    /// The time, read where a slot is taken or counted: the monotonic clock, or a test's.
    clock: crate::timer::Clock,
    held: Mutex<HashMap<CallLogId, Held>>,
    /// Slots that ran out while another call was being admitted, for the next sweep to report.
    expired: Mutex<Vec<Expired>>,
    /// On PostgreSQL, the leases that count every instance's calls (`calls::shared`).
    leases: Option<super::shared::Shared>,
}

#[derive(Debug, Clone)]
struct Held {
    taken: Instant,
    /// A call whose media has not connected by then gives its slot back (its token has
    /// expired, so it never will).
    connect_by: Option<Instant>,
    /// Exotel's CallSid for the call, once known.
    call_sid: Option<String>,
    /// An outbound call placed and not yet streaming: when to ask Exotel how it went.
    check_at: Option<Instant>,
    /// The account that placed it, to ask.
    account: Option<Arc<ExotelClient>>,
    /// The phone it holds a place on, when that phone has a limit of its own.
    line: Option<String>,
}

impl Held {
    fn live(&self, now: Instant, timeout: Duration) -> bool {
        self.expiry(now, timeout).is_none()
    }

    /// Why the slot has run out at `now`, if it has.
    fn expiry(&self, now: Instant, timeout: Duration) -> Option<Expiry> {
        if now.duration_since(self.taken) >= timeout {
            Some(Expiry::SlotTimeout)
        } else if self.connect_by.is_some_and(|by| now >= by) {
            Some(Expiry::NoMedia)
        } else {
            None
        }
    }

    /// The earliest moment this slot may come back without anyone releasing it.
    fn comes_back_by(&self, timeout: Duration) -> Instant {
        let mut at = self.taken + timeout;
        for t in [self.connect_by, self.check_at].into_iter().flatten() {
            at = at.min(t);
        }
        at
    }
}

/// Why a slot ran out without being released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Its media never connected before its token expired.
    NoMedia,
    /// `CALL_SLOT_TIMEOUT_S` passed.
    SlotTimeout,
}

/// A slot that ran out, for its row to be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub id: CallLogId,
    pub why: Expiry,
}

/// A call to ask Exotel about (see [`Slots::due_for_check`]).
pub struct DueCheck {
    pub id: CallLogId,
    pub call_sid: String,
    pub account: Arc<ExotelClient>,
}

/// The call is live under another CallSid.
#[derive(Debug, PartialEq, Eq)]
pub struct OtherCallSid {
    pub live: String,
}

/// Every slot is taken.
#[derive(Debug, PartialEq, Eq)]
pub struct SlotsFull {
    pub max: usize,
}

/// Why [`Slots::acquire_new`] gave no slot.
#[derive(Debug, PartialEq, Eq)]
pub enum NewCallRefused {
    /// `MAX_CONCURRENT_CALLS` calls are live.
    Full { max: usize },
    /// The phone's own `maxConcurrent` calls are live on it.
    LineFull { phone: String, max: usize },
    /// A live call already holds this id.
    InUse,
    /// The shared slots' database could not be asked (PostgreSQL down): no call is admitted
    /// until it can be.
    Unavailable(String),
}

/// A phone's own limit: at most `max` live calls hold a place on `phone`.
#[derive(Debug, Clone, Copy)]
pub struct LineLimit<'a> {
    pub phone: &'a str,
    pub max: usize,
}

impl Slots {
    pub fn new(max: usize, timeout: Duration) -> Slots {
        Slots::with_clock(max, timeout, crate::timer::Clock::monotonic())
    }

    /// Slots that read the time from `clock` (a test's, which it moves by hand).
    pub fn with_clock(max: usize, timeout: Duration, clock: crate::timer::Clock) -> Slots {
        Slots {
            max,
            timeout,
            clock,
            held: Mutex::new(HashMap::new()),
            expired: Mutex::new(Vec::new()),
            leases: None,
        }
    }

    /// Slots that also hold a lease for each call (`calls::shared::leases`), so that the
    /// limits count every instance's calls.
    pub fn with_leases(mut self, leases: super::shared::Shared) -> Slots {
        self.leases = Some(leases);
        self
    }

    /// Gives back the leases of slots that ran out or were released here.
    fn release_leases<'a>(&self, ids: impl IntoIterator<Item = &'a CallLogId>) {
        if let Some(leases) = &self.leases {
            for id in ids {
                leases.release_lease(id.as_str());
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CallLogId, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot for the call; a call that holds one already keeps it.
    pub fn acquire(&self, id: &CallLogId) -> Result<(), SlotsFull> {
        self.take(id, None, None, true)
            .map_err(|_| SlotsFull { max: self.max })
    }

    /// Takes a slot for a call that must not be live yet (`POST /call`, a campaign's dial),
    /// within `line`'s limit as well when it has one. Checked and taken under one lock, so two
    /// requests with the same id cannot both get one.
    pub fn acquire_new(
        &self,
        id: &CallLogId,
        line: Option<LineLimit<'_>>,
    ) -> Result<(), NewCallRefused> {
        self.take(id, None, line, false)
    }

    /// Takes a slot (within `line`'s limit too) that is given back at `connect_by` unless
    /// [`Slots::connected`] is called. A call that holds one already keeps it.
    pub fn acquire_until_connected(
        &self,
        id: &CallLogId,
        connect_by: Instant,
        line: Option<LineLimit<'_>>,
    ) -> Result<(), NewCallRefused> {
        self.take(id, Some(connect_by), line, true)
    }

    /// The call's media stream started: its slot no longer waits for it, and Exotel need not
    /// be asked about it.
    pub fn connected(&self, id: &CallLogId) {
        if let Some(h) = self.lock().get_mut(id) {
            h.connect_by = None;
            h.check_at = None;
        }
    }

    /// Binds the call's slot to Exotel's CallSid. A slot already bound to another CallSid is
    /// refused: that request is not about this call. A call holding no slot binds nothing.
    pub fn bind_call_sid(&self, id: &CallLogId, call_sid: &str) -> Result<(), OtherCallSid> {
        let mut held = self.lock();
        let Some(h) = held.get_mut(id) else {
            return Ok(());
        };
        match &h.call_sid {
            Some(live) if live != call_sid => Err(OtherCallSid { live: live.clone() }),
            Some(_) => Ok(()),
            None => {
                h.call_sid = Some(call_sid.to_owned());
                Ok(())
            }
        }
    }

    /// The CallSid the call's slot is bound to, if it holds one that is.
    pub fn call_sid(&self, id: &CallLogId) -> Option<String> {
        self.lock().get(id).and_then(|h| h.call_sid.clone())
    }

    /// Asks for `account` to be asked about this call at `at`, unless its media starts first.
    pub fn check_at(&self, id: &CallLogId, at: Instant, account: &Arc<ExotelClient>) {
        if let Some(h) = self.lock().get_mut(id) {
            h.check_at = Some(at);
            h.account = Some(account.clone());
        }
    }

    /// The calls due to be asked about at `now`, with their CallSids and accounts; each is due
    /// again only when [`Slots::check_at`] says so.
    pub fn due_for_check(&self, now: Instant) -> Vec<DueCheck> {
        let mut held = self.lock();
        let mut due = Vec::new();
        for (id, h) in held.iter_mut() {
            if h.check_at.is_some_and(|at| now >= at) {
                h.check_at = None;
                if let (Some(call_sid), Some(account)) = (&h.call_sid, &h.account) {
                    due.push(DueCheck {
                        id: id.clone(),
                        call_sid: call_sid.clone(),
                        account: account.clone(),
                    });
                }
            }
        }
        due
    }

    /// Takes out every slot that has run out, with why, including those dropped while making
    /// room for other calls since the last sweep.
    pub fn sweep(&self, now: Instant) -> Vec<Expired> {
        let mut out = std::mem::take(&mut *self.expired.lock().unwrap_or_else(|e| e.into_inner()));
        let timeout = self.timeout;
        let before = out.len();
        self.lock().retain(|id, h| match h.expiry(now, timeout) {
            Some(why) => {
                out.push(Expired {
                    id: id.clone(),
                    why,
                });
                false
            }
            None => true,
        });
        self.release_leases(out[before..].iter().map(|e| &e.id));
        out
    }

    /// Seconds until a slot is expected back without anyone releasing one: the earliest of
    /// every held slot's token expiry, Exotel check and slot timeout (at least 1).
    pub fn retry_after(&self) -> u64 {
        let now = self.clock.now();
        let timeout = self.timeout;
        self.lock()
            .values()
            .map(|h| h.comes_back_by(timeout).saturating_duration_since(now))
            .min()
            .map_or(1, |d| d.as_secs().max(1))
    }

    /// Takes a slot; a call already holding one keeps it when `held_is_ok`, else is refused.
    /// With leases, the slot taken here is kept only if the lease is given too.
    fn take(
        &self,
        id: &CallLogId,
        connect_by: Option<Instant>,
        line: Option<LineLimit<'_>>,
        held_is_ok: bool,
    ) -> Result<(), NewCallRefused> {
        let Some(fresh) = self.take_here(id, connect_by, line, held_is_ok)? else {
            return Ok(());
        };
        let (Some(leases), true) = (&self.leases, fresh) else {
            return Ok(());
        };
        let limit = line.map(|l| (l.phone, l.max));
        leases
            .take_lease(id.as_str(), limit, self.max)
            .inspect_err(|_| {
                self.lock().remove(id);
            })
            .map_err(|refused| match refused {
                super::shared::LeaseRefused::Full { max } => NewCallRefused::Full { max },
                super::shared::LeaseRefused::LineFull { phone, max } => {
                    NewCallRefused::LineFull { phone, max }
                }
                super::shared::LeaseRefused::Unavailable(e) => NewCallRefused::Unavailable(e),
            })
    }

    /// This instance's part of [`Slots::take`]: `Some(true)` when a slot was taken now,
    /// `Some(false)` when the call held one already.
    fn take_here(
        &self,
        id: &CallLogId,
        connect_by: Option<Instant>,
        line: Option<LineLimit<'_>>,
        held_is_ok: bool,
    ) -> Result<Option<bool>, NewCallRefused> {
        let now = self.clock.now();
        let mut held = self.lock();
        if held.get(id).is_some_and(|h| h.live(now, self.timeout)) {
            return if held_is_ok {
                Ok(Some(false))
            } else {
                Err(NewCallRefused::InUse)
            };
        }
        // With leases the database counts every instance's calls; this instance's own count
        // may hold calls whose media another instance took up.
        let counted_here = self.leases.is_none();
        if counted_here && held.len() >= self.max {
            let timeout = self.timeout;
            let mut expired = self.expired.lock().unwrap_or_else(|e| e.into_inner());
            let before = expired.len();
            held.retain(|id, h| match h.expiry(now, timeout) {
                Some(why) => {
                    expired.push(Expired {
                        id: id.clone(),
                        why,
                    });
                    false
                }
                None => true,
            });
            self.release_leases(expired[before..].iter().map(|e| &e.id));
            if held.len() >= self.max {
                return Err(NewCallRefused::Full { max: self.max });
            }
        }
        if let Some(limit) = line.filter(|_| counted_here) {
            let on_line = held
                .values()
                .filter(|h| h.line.as_deref() == Some(limit.phone) && h.live(now, self.timeout))
                .count();
            if on_line >= limit.max {
                return Err(NewCallRefused::LineFull {
                    phone: limit.phone.to_owned(),
                    max: limit.max,
                });
            }
        }
        held.insert(
            id.clone(),
            Held {
                taken: now,
                connect_by,
                call_sid: None,
                check_at: None,
                account: None,
                line: line.map(|l| l.phone.to_owned()),
            },
        );
        Ok(Some(true))
    }

    /// Gives the call's slot back (nothing if it holds none).
    pub fn release(&self, id: &CallLogId) {
        if self.lock().remove(id).is_some() {
            self.release_leases([id]);
        }
    }

    pub fn holds(&self, id: &CallLogId) -> bool {
        self.lock().contains_key(id)
    }

    /// Live calls (slots held and not timed out).
    pub fn live(&self) -> usize {
        let now = self.clock.now();
        self.lock()
            .values()
            .filter(|h| h.live(now, self.timeout))
            .count()
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Live calls on each phone that has a limit of its own.
    pub fn lines(&self) -> HashMap<String, usize> {
        let now = self.clock.now();
        let mut on = HashMap::new();
        for held in self.lock().values().filter(|h| h.live(now, self.timeout)) {
            if let Some(line) = &held.line {
                *on.entry(line.clone()).or_insert(0) += 1;
            }
        }
        on
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::timer::Clock;

    #[test]
    fn slots_are_counted_released_and_timed_out() {
        let clock = Clock::manual();
        let slots = Slots::with_clock(2, Duration::from_millis(50), clock.clone());
        let (a, b, c) = (
            CallLogId::generate(),
            CallLogId::generate(),
            CallLogId::generate(),
        );
        slots.acquire(&a).unwrap();
        slots.acquire(&a).unwrap();
        slots.acquire(&b).unwrap();
        assert_eq!(slots.acquire(&c), Err(SlotsFull { max: 2 }));
        slots.release(&a);
        slots.acquire(&c).unwrap();
        clock.advance(Duration::from_millis(49));
        assert_eq!(slots.live(), 2, "not yet");
        clock.advance(Duration::from_millis(1));
        assert_eq!(slots.live(), 0);
        slots.acquire(&a).unwrap();
        assert!(slots.holds(&a) && !slots.holds(&b));
    }

    #[test]
    fn a_new_call_cannot_take_an_id_that_is_live() {
        let clock = Clock::manual();
        let slots = Slots::with_clock(1, Duration::from_millis(50), clock.clone());
        let a = CallLogId::generate();
        slots.acquire_new(&a, None).unwrap();
        assert_eq!(slots.acquire_new(&a, None), Err(NewCallRefused::InUse));
        assert_eq!(
            slots.acquire_new(&CallLogId::generate(), None),
            Err(NewCallRefused::Full { max: 1 })
        );
        // Once the slot has timed out, the id is no longer live.
        clock.advance(Duration::from_millis(50));
        slots.acquire_new(&a, None).unwrap();
    }

    #[test]
    fn a_phone_limit_holds_beside_the_server_limit() {
        let slots = Slots::new(3, Duration::from_secs(60));
        let line = |phone| Some(LineLimit { phone, max: 1 });
        let (a, b, c, d) = (
            CallLogId::generate(),
            CallLogId::generate(),
            CallLogId::generate(),
            CallLogId::generate(),
        );
        slots.acquire_new(&a, line("+911")).unwrap();
        assert_eq!(
            slots.acquire_new(&b, line("+911")),
            Err(NewCallRefused::LineFull {
                phone: "+911".into(),
                max: 1
            })
        );
        slots.acquire_new(&b, line("+912")).unwrap();
        slots.acquire_new(&c, None).unwrap();
        assert_eq!(
            slots.acquire_new(&d, line("+913")),
            Err(NewCallRefused::Full { max: 3 })
        );
        slots.release(&a);
        slots.acquire_new(&d, line("+911")).unwrap();
    }

    #[test]
    fn an_unconnected_inbound_slot_comes_back_at_its_deadline() {
        let clock = Clock::manual();
        let slots = Slots::with_clock(1, Duration::from_secs(60), clock.clone());
        let (a, b) = (CallLogId::generate(), CallLogId::generate());
        slots
            .acquire_until_connected(&a, clock.now() + Duration::from_millis(30), None)
            .unwrap();
        assert!(slots.acquire(&b).is_err());
        clock.advance(Duration::from_millis(29));
        assert!(slots.acquire(&b).is_err(), "not before its deadline");
        clock.advance(Duration::from_millis(1));
        slots.acquire(&b).unwrap();
        let c = CallLogId::generate();
        slots.release(&b);
        slots
            .acquire_until_connected(&c, clock.now() + Duration::from_millis(30), None)
            .unwrap();
        slots.connected(&c);
        clock.advance(Duration::from_millis(40));
        assert_eq!(slots.live(), 1, "a connected call keeps its slot");
    }
}
