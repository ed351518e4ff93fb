//! How each call's stream ended, kept in memory for the Passthru applet that Exotel's flow may
//! run right after it: whether the caller is to be handed to a person, and why.
//!
//! The Passthru request holds a caller on the line until it is answered, so its decision is a
//! lookup here, never the disk: by our callLogId (`CustomField`), else by Exotel's CallSid.
//! Entries live [`KEPT_FOR`]; the call log keeps the lasting record.

use super::CallLogId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long after its stream ended a call's Passthru is answered from memory.
pub const KEPT_FOR: Duration = Duration::from_secs(30 * 60);
/// Entries are swept at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Where a handoff came from, for `/metrics` (the bot's own reason is free text; this is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffSource {
    /// The bot asked (`Outbox::hand_off`, or a relayed bot's `handoff` event).
    Bot,
    /// `HANDOFF_DTMF`.
    Dtmf,
    /// The bot could not be reached and `BOT_FALLBACK=handoff`.
    BotUnavailable,
    /// The call's agent hands off after every bot (`handoff: always`).
    Agent,
}

impl HandoffSource {
    pub const ALL: [HandoffSource; 4] = [
        HandoffSource::Bot,
        HandoffSource::Dtmf,
        HandoffSource::BotUnavailable,
        HandoffSource::Agent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HandoffSource::Bot => "bot",
            HandoffSource::Dtmf => "dtmf",
            HandoffSource::BotUnavailable => "bot-unavailable",
            HandoffSource::Agent => "agent",
        }
    }

    /// The source of a handoff with this reason.
    pub fn of_reason(reason: &str) -> HandoffSource {
        match reason {
            "dtmf" => HandoffSource::Dtmf,
            "bot-unavailable" => HandoffSource::BotUnavailable,
            "agent" => HandoffSource::Agent,
            _ => HandoffSource::Bot,
        }
    }
}

/// A call whose stream has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub id: CallLogId,
    /// Why the caller is to be handed off; `None`: not to be.
    pub handoff: Option<String>,
}

/// What a Passthru request names, against the calls that ended here lately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The call, named by a request whose CallSid is the call's own.
    Found(Ended),
    /// A call that ended here, named with a CallSid that is not its own: the request is not
    /// about that call, and learns nothing of it.
    WrongCallSid(CallLogId),
    /// No call that ended here lately.
    Unknown,
}

/// A call's entry: its handoff, its CallSid (when the stream gave one) and when it ended.
struct Entry {
    handoff: Option<String>,
    call_sid: Option<String>,
    at: Instant,
}

#[derive(Default)]
struct Table {
    by_id: HashMap<CallLogId, Entry>,
    by_call_sid: HashMap<String, CallLogId>,
    swept: Option<Instant>,
}

#[derive(Default)]
pub struct Handoffs {
    table: Mutex<Table>,
    /// On PostgreSQL, each stream's end is also written for the other instances: Exotel's
    /// Passthru may reach any of them.
    shared: Option<super::shared::Shared>,
}

impl Handoffs {
    pub fn shared(shared: Option<super::shared::Shared>) -> Handoffs {
        Handoffs {
            shared,
            ..Handoffs::default()
        }
    }

    /// A call's stream ended, handing off or not.
    pub fn stream_ended(&self, id: &CallLogId, call_sid: Option<&str>, handoff: Option<String>) {
        if let Some(shared) = &self.shared {
            shared.publish_stream_end(super::shared::grants::StreamEnded {
                call_log_id: id.as_str().to_owned(),
                call_sid: call_sid.filter(|s| !s.is_empty()).map(str::to_owned),
                handoff: handoff.clone(),
            });
        }
        let now = Instant::now();
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if t.swept
            .is_none_or(|at| now.duration_since(at) >= SWEEP_EVERY)
        {
            t.by_id
                .retain(|_, entry| now.duration_since(entry.at) < KEPT_FOR);
            let Table {
                by_id, by_call_sid, ..
            } = &mut *t;
            by_call_sid.retain(|_, id| by_id.contains_key(id));
            t.swept = Some(now);
        }
        let call_sid = call_sid.filter(|s| !s.is_empty()).map(str::to_owned);
        if let Some(sid) = &call_sid {
            t.by_call_sid.insert(sid.clone(), id.clone());
        }
        let entry = Entry {
            handoff,
            call_sid,
            at: now,
        };
        t.by_id.insert(id.clone(), entry);
    }

    /// The call a Passthru request is about: by callLogId, else by CallSid. A call whose
    /// stream gave a CallSid is found only by a request with that CallSid, as status callbacks
    /// are (a `CustomField` is easy to learn; Exotel's CallSid for the call is not).
    pub fn find(&self, call_log_id: Option<&str>, call_sid: Option<&str>) -> Lookup {
        let t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let id = call_log_id
            .and_then(|id| CallLogId::parse(id).ok())
            .filter(|id| t.by_id.contains_key(id))
            .or_else(|| call_sid.and_then(|sid| t.by_call_sid.get(sid).cloned()));
        let Some((id, entry)) = id.and_then(|id| t.by_id.get(&id).map(|e| (id, e))) else {
            return Lookup::Unknown;
        };
        if entry.call_sid.is_some() && entry.call_sid.as_deref() != call_sid {
            return Lookup::WrongCallSid(id);
        }
        Lookup::Found(Ended {
            handoff: entry.handoff.clone(),
            id,
        })
    }

    /// As [`Handoffs::find`], for a call whose stream ended on another instance (PostgreSQL):
    /// its end is asked of the database, for up to [`ELSEWHERE_WAIT`] while that instance's
    /// write is on its way. Waits (a coroutine parks).
    pub fn find_elsewhere(&self, call_log_id: Option<&str>, call_sid: Option<&str>) -> Lookup {
        let Some(shared) = &self.shared else {
            return Lookup::Unknown;
        };
        let deadline = Instant::now() + ELSEWHERE_WAIT;
        loop {
            match shared.stream_end(call_log_id, call_sid) {
                Ok(Some(ended)) => return elsewhere(ended, call_sid),
                Ok(None) if Instant::now() < deadline => {
                    may::coroutine::sleep(Duration::from_millis(20))
                }
                Ok(None) => return Lookup::Unknown,
                Err(e) => {
                    crate::warn!("passthru.shared_unknown", error = e);
                    return Lookup::Unknown;
                }
            }
        }
    }
}

/// How long a Passthru waits for another instance's word on how the stream ended: the stream
/// ends before Exotel asks, and its end is written a few milliseconds after.
pub const ELSEWHERE_WAIT: Duration = Duration::from_secs(1);

/// A stream's end from the database, judged as [`Handoffs::find`] judges its own.
fn elsewhere(ended: super::shared::grants::StreamEnded, call_sid: Option<&str>) -> Lookup {
    let Ok(id) = CallLogId::parse(&ended.call_log_id) else {
        return Lookup::Unknown;
    };
    if ended.call_sid.is_some() && ended.call_sid.as_deref() != call_sid {
        return Lookup::WrongCallSid(id);
    }
    Lookup::Found(Ended {
        handoff: ended.handoff,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_found_by_their_id_or_their_call_sid() {
        let h = Handoffs::default();
        let a = CallLogId::parse("call-a").unwrap();
        let b = CallLogId::parse("call-b").unwrap();
        h.stream_ended(&a, Some("CA1"), Some("billing".into()));
        h.stream_ended(&b, None, None);
        let found = |lookup: Lookup| match lookup {
            Lookup::Found(ended) => ended,
            other => panic!("not found: {other:?}"),
        };
        assert_eq!(
            found(h.find(Some("call-a"), Some("CA1")))
                .handoff
                .as_deref(),
            Some("billing")
        );
        assert_eq!(found(h.find(None, Some("CA1"))).id, a);
        assert_eq!(found(h.find(Some("nobody"), Some("CA1"))).id, a);
        assert_eq!(found(h.find(Some("call-b"), None)).handoff, None);
        assert_eq!(h.find(Some("nobody"), Some("CA9")), Lookup::Unknown);
    }

    #[test]
    fn a_call_with_a_call_sid_is_not_found_under_another() {
        let h = Handoffs::default();
        let a = CallLogId::parse("call-a").unwrap();
        h.stream_ended(&a, Some("CA1"), Some("billing".into()));
        assert_eq!(
            h.find(Some("call-a"), Some("CA-made-up")),
            Lookup::WrongCallSid(a.clone())
        );
        assert_eq!(h.find(Some("call-a"), None), Lookup::WrongCallSid(a));
    }
}
