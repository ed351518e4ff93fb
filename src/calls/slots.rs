//! Concurrency slots (`MAX_CONCURRENT_CALLS`): every live call, inbound and outbound, holds one
//! from the moment `/call` is accepted (or the webhook answers an inbound call) until its media
//! stream stops, a final status arrives, or `CALL_SLOT_TIMEOUT_S` passes.
//!
//! In memory only: after a restart no call is live (the call log marks them interrupted).

use super::CallLogId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Slots {
    max: usize,
    timeout: Duration,
    held: Mutex<HashMap<CallLogId, Held>>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    taken: Instant,
    /// An inbound call whose media has not connected by then gives its slot back (its token
    /// has expired, so it never will).
    connect_by: Option<Instant>,
}

impl Held {
    fn live(&self, now: Instant, timeout: Duration) -> bool {
        now.duration_since(self.taken) < timeout && self.connect_by.is_none_or(|by| now < by)
    }
}

/// Every slot is taken.
#[derive(Debug, PartialEq, Eq)]
pub struct SlotsFull {
    pub max: usize,
}

/// Why [`Slots::acquire_new`] gave no slot.
#[derive(Debug, PartialEq, Eq)]
pub enum NewCallRefused {
    Full {
        max: usize,
    },
    /// A live call already holds this id.
    InUse,
}

impl Slots {
    pub fn new(max: usize, timeout: Duration) -> Slots {
        Slots {
            max,
            timeout,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a slot for the call; a call that holds one already keeps it.
    pub fn acquire(&self, id: &CallLogId) -> Result<(), SlotsFull> {
        self.take(id, None, true)
            .map_err(|_| SlotsFull { max: self.max })
    }

    /// Takes a slot for a call that must not be live yet (`POST /call`). Checked and taken under
    /// one lock, so two requests with the same id cannot both get one.
    pub fn acquire_new(&self, id: &CallLogId) -> Result<(), NewCallRefused> {
        self.take(id, None, false)
    }

    /// Takes a slot that is given back at `connect_by` unless [`Slots::connected`] is called.
    pub fn acquire_until_connected(
        &self,
        id: &CallLogId,
        connect_by: Instant,
    ) -> Result<(), SlotsFull> {
        self.take(id, Some(connect_by), true)
            .map_err(|_| SlotsFull { max: self.max })
    }

    /// The call's media stream started: its slot no longer waits for it.
    pub fn connected(&self, id: &CallLogId) {
        if let Some(h) = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(id)
        {
            h.connect_by = None;
        }
    }

    /// Takes a slot; a call already holding one keeps it when `held_is_ok`, else is refused.
    fn take(
        &self,
        id: &CallLogId,
        connect_by: Option<Instant>,
        held_is_ok: bool,
    ) -> Result<(), NewCallRefused> {
        let now = Instant::now();
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.get(id).is_some_and(|h| h.live(now, self.timeout)) {
            return if held_is_ok {
                Ok(())
            } else {
                Err(NewCallRefused::InUse)
            };
        }
        if held.len() >= self.max {
            let timeout = self.timeout;
            held.retain(|_, h| h.live(now, timeout));
            if held.len() >= self.max {
                return Err(NewCallRefused::Full { max: self.max });
            }
        }
        held.insert(
            id.clone(),
            Held {
                taken: now,
                connect_by,
            },
        );
        Ok(())
    }

    /// Gives the call's slot back (nothing if it holds none).
    pub fn release(&self, id: &CallLogId) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    pub fn holds(&self, id: &CallLogId) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(id)
    }

    /// Live calls (slots held and not timed out).
    pub fn live(&self) -> usize {
        let now = Instant::now();
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.values().filter(|h| h.live(now, self.timeout)).count()
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_released_and_timed_out() {
        let slots = Slots::new(2, Duration::from_millis(50));
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
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(slots.live(), 0);
        slots.acquire(&a).unwrap();
        assert!(slots.holds(&a) && !slots.holds(&b));
    }

    #[test]
    fn a_new_call_cannot_take_an_id_that_is_live() {
        let slots = Slots::new(1, Duration::from_millis(50));
        let a = CallLogId::generate();
        slots.acquire_new(&a).unwrap();
        assert_eq!(slots.acquire_new(&a), Err(NewCallRefused::InUse));
        assert_eq!(
            slots.acquire_new(&CallLogId::generate()),
            Err(NewCallRefused::Full { max: 1 })
        );
        // Once the slot has timed out, the id is no longer live.
        std::thread::sleep(Duration::from_millis(60));
        slots.acquire_new(&a).unwrap();
    }

    #[test]
    fn an_unconnected_inbound_slot_comes_back_at_its_deadline() {
        let slots = Slots::new(1, Duration::from_secs(60));
        let (a, b) = (CallLogId::generate(), CallLogId::generate());
        slots
            .acquire_until_connected(&a, Instant::now() + Duration::from_millis(30))
            .unwrap();
        assert!(slots.acquire(&b).is_err());
        std::thread::sleep(Duration::from_millis(40));
        slots.acquire(&b).unwrap();
        let c = CallLogId::generate();
        slots.release(&b);
        slots
            .acquire_until_connected(&c, Instant::now() + Duration::from_millis(30))
            .unwrap();
        slots.connected(&c);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(slots.live(), 1, "a connected call keeps its slot");
    }
}
