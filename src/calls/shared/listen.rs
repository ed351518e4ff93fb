//! Hearing of calls ended by another instance (a status callback, a Passthru or Exotel's call
//! details taken up there): `NOTIFY` on [`CALL_ENDED`] from the transaction that ends a call,
//! and a look at the calls' history every [`POLL_EVERY`] as a backstop. The instance holding
//! the call's slot gives it back.

use super::{now_ms, CALL_ENDED};
use crate::store::schema::Owner;
use crate::store::schema::STORED_CHANGED;
use crate::store::sql::{params, Db};
use crate::store::Location;
use std::time::{Duration, Instant};

/// What to do when another instance changed what every instance keeps in memory.
pub type StoredChanged = Box<dyn Fn(Option<&str>) + Send>;

/// How often the listener also looks for calls that ended meanwhile, in case a notification
/// was lost (a reconnect).
pub const POLL_EVERY: Duration = Duration::from_secs(5);

/// Starts the thread that hears of calls ended by another instance (a status callback, a
/// Passthru or Exotel's call details taken up there) and gives back their slots here: at once
/// through `NOTIFY`, and by looking at the calls' history every [`POLL_EVERY`] as a backstop.
///
/// It also hears of changes other instances made to what every instance keeps in memory (the
/// do-not-call list, phones, agents), and hands each to `stored_changed` (`None`: everything
/// may have changed, after a (re)connection).
pub fn listen(
    at: &Location,
    slots: std::sync::Arc<crate::calls::slots::Slots>,
    stored_changed: StoredChanged,
) {
    let Location::Postgres(url) = at else {
        return;
    };
    let mut listener = crate::store::postgres::Listener::new(url, &[CALL_ENDED, STORED_CHANGED]);
    // Listening before the server takes its first request: a call ended elsewhere from then
    // on is heard.
    if let Err(e) = listener.wait(Duration::ZERO) {
        crate::warn!("shared.listen_failed", error = e);
    }
    let at = at.clone();
    let spawned = std::thread::Builder::new()
        .name("listener".into())
        .spawn(move || {
            let mut poll = Poll::new(at);
            loop {
                match listener.wait(POLL_EVERY) {
                    Ok(heard) => {
                        if heard.connected {
                            stored_changed(None);
                        }
                        // A large upload announces itself once per batch: read once.
                        let mut applied: Vec<&str> = Vec::new();
                        for (channel, payload) in &heard.notifications {
                            match channel.as_str() {
                                STORED_CHANGED if applied.contains(&payload.as_str()) => {}
                                STORED_CHANGED => {
                                    stored_changed(Some(payload));
                                    applied.push(payload);
                                }
                                _ => ended(&slots, [payload.as_str()].into_iter(), "notified"),
                            }
                        }
                    }
                    Err(e) => {
                        crate::warn!("shared.listen_failed", error = e);
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
                if let Some(ids) = poll.due() {
                    ended(&slots, ids.iter().map(String::as_str), "polled");
                }
            }
        });
    if let Err(e) = spawned {
        crate::error!("shared.listener_not_started", error = e);
    }
}

/// Calls that ended elsewhere: the slots this instance holds for them come back.
fn ended<'a>(
    slots: &crate::calls::slots::Slots,
    ids: impl Iterator<Item = &'a str>,
    how: &'static str,
) {
    for id in ids {
        let Ok(id) = crate::calls::CallLogId::parse(id) else {
            continue;
        };
        if slots.holds(&id) {
            slots.release(&id);
            crate::info!("call.ended_elsewhere", callLogId = id, heard = how);
        }
    }
}

/// The backstop: the calls that reached a final status since the last look.
struct Poll {
    at: Location,
    conn: Option<Box<dyn Db + Send>>,
    since: i64,
    next: Instant,
}

impl Poll {
    fn new(at: Location) -> Poll {
        Poll {
            at,
            conn: None,
            since: now_ms(),
            next: Instant::now() + POLL_EVERY,
        }
    }

    /// When due, the calls ended since the last look (with a margin for commits that were
    /// in flight then).
    fn due(&mut self) -> Option<Vec<String>> {
        if Instant::now() < self.next {
            return None;
        }
        self.next = Instant::now() + POLL_EVERY;
        let now = now_ms();
        if self.conn.is_none() {
            self.conn = self.at.connect(Owner::Events).ok();
        }
        let conn: &dyn Db = self.conn.as_deref()?;
        let ids = conn.rows(
            "SELECT DISTINCT call_log_id FROM call_history WHERE at >= ?1 AND status NOT IN
                 ('queued', 'initiated', 'connected', 'in-progress')",
            params![self.since - 2 * POLL_EVERY.as_millis() as i64],
            |r| r.get(0),
        );
        match ids {
            Ok(ids) => {
                self.since = now;
                Some(ids)
            }
            Err(e) => {
                crate::warn!("shared.poll_failed", error = e);
                self.conn = None;
                None
            }
        }
    }
}
