//! What each live call is, for the console's live view: its number, direction, phone, agent,
//! status and start, kept in memory from the call log's events as they are recorded, so that
//! an open page costs no database query. A call leaves the board when its row ends; the live
//! view also drops any call that no longer holds a slot (slots always come back), so nothing
//! stays here that the server has let go of.
//!
//! Knows nothing of HTTP, the disk or the network.

use super::{Direction, LogEvent, Status};
use crate::calls::CallLogId;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;

/// One live call as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveCall {
    pub call_log_id: String,
    pub direction: &'static str,
    /// The other party's number.
    pub number: String,
    /// Our number on the call (the caller id it was placed from, or the number called).
    pub phone: String,
    pub agent: Option<String>,
    pub status: &'static str,
    /// When the call began, and when its media started (Unix milliseconds).
    pub started_at: i64,
    pub answered_at: Option<i64>,
}

#[derive(Debug, Default)]
pub struct LiveCalls {
    calls: Mutex<HashMap<CallLogId, LiveCall>>,
}

impl LiveCalls {
    /// Follows one event of the call log, recorded at `at` (Unix milliseconds).
    pub fn follow(&self, event: &LogEvent, at: i64) {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            LogEvent::Requested { id, to, caller_id } => {
                let call = entry(&mut calls, id, Direction::Outbound, at);
                call.number.clone_from(to);
                call.phone.clone_from(caller_id);
            }
            LogEvent::Placed { id, .. } => {
                entry(&mut calls, id, Direction::Outbound, at).status = "initiated"
            }
            LogEvent::Connected {
                id,
                direction,
                from,
                to,
                ..
            } => {
                let call = entry(&mut calls, id, *direction, at);
                let (number, phone) = match direction {
                    Direction::Outbound => (to, from),
                    Direction::Inbound | Direction::Web => (from, to),
                };
                fill(&mut call.number, number);
                fill(&mut call.phone, phone);
                call.status = Status::Connected.as_str();
            }
            LogEvent::MediaStarted {
                id,
                from,
                to,
                agent,
                ..
            } => {
                let call = entry(&mut calls, id, Direction::Inbound, at);
                fill(&mut call.number, from);
                fill(&mut call.phone, to);
                call.agent.clone_from(agent);
                call.status = Status::InProgress.as_str();
                call.answered_at = Some(at);
            }
            _ => {
                if let Some(id) = ended(event) {
                    calls.remove(&id);
                }
            }
        }
    }

    /// The live calls, oldest first; a call `holds` no longer vouches for is let go.
    pub fn snapshot(&self, holds: impl Fn(&CallLogId) -> bool) -> Vec<LiveCall> {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.retain(|id, _| holds(id));
        let mut shown: Vec<LiveCall> = calls.values().cloned().collect();
        drop(calls);
        shown.sort_by(|a, b| (a.started_at, &a.call_log_id).cmp(&(b.started_at, &b.call_log_id)));
        shown
    }
}

/// The call's place on the board, made when it is new.
fn entry<'c>(
    calls: &'c mut HashMap<CallLogId, LiveCall>,
    id: &CallLogId,
    direction: Direction,
    at: i64,
) -> &'c mut LiveCall {
    calls.entry(id.clone()).or_insert_with(|| LiveCall {
        call_log_id: id.as_str().to_owned(),
        direction: direction.as_str(),
        number: String::new(),
        phone: String::new(),
        agent: None,
        status: Status::Queued.as_str(),
        started_at: at,
        answered_at: None,
    })
}

/// The call an event ends, if it ends one.
fn ended(event: &LogEvent) -> Option<CallLogId> {
    match event {
        LogEvent::PlaceFailed { id, .. }
        | LogEvent::MediaEnded {
            id,
            status: Some(_),
            ..
        } => Some(id.clone()),
        LogEvent::ExotelStatus {
            custom_field: Some(field),
            status: Some(status),
            ..
        } if status.is_final() => CallLogId::parse(field).ok(),
        _ => None,
    }
}

/// Sets `field` to `value` unless it has one already or `value` is empty.
fn fill(field: &mut String, value: &str) {
    if field.is_empty() && !value.is_empty() {
        value.clone_into(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_on_the_board_from_its_request_to_its_end() {
        let live = LiveCalls::default();
        let id = CallLogId::generate();
        live.follow(
            &LogEvent::Requested {
                id: id.clone(),
                to: "+919876543210".into(),
                caller_id: "08047112222".into(),
            },
            1_000,
        );
        live.follow(
            &LogEvent::Placed {
                id: id.clone(),
                call_sid: "sid".into(),
            },
            1_100,
        );
        let all = |_: &CallLogId| true;
        let shown = live.snapshot(all);
        assert_eq!(shown.len(), 1);
        assert_eq!(
            (shown[0].number.as_str(), shown[0].phone.as_str()),
            ("+919876543210", "08047112222")
        );
        assert_eq!((shown[0].status, shown[0].started_at), ("initiated", 1_000));
        live.follow(
            &LogEvent::MediaEnded {
                id: id.clone(),
                status: None,
                reason: "replaced".into(),
                counts: Default::default(),
            },
            1_200,
        );
        assert_eq!(live.snapshot(all).len(), 1, "another socket took it over");
        live.follow(
            &LogEvent::MediaEnded {
                id,
                status: Some(Status::Completed),
                reason: "stop".into(),
                counts: Default::default(),
            },
            1_300,
        );
        assert!(live.snapshot(all).is_empty());
    }

    #[test]
    fn a_call_without_a_slot_leaves_the_board() {
        let live = LiveCalls::default();
        let (kept, gone) = (CallLogId::generate(), CallLogId::generate());
        for id in [&kept, &gone] {
            live.follow(
                &LogEvent::Connected {
                    id: id.clone(),
                    direction: Direction::Inbound,
                    call_sid: "s".into(),
                    from: "+919800000001".into(),
                    to: "08047110000".into(),
                },
                5,
            );
        }
        let shown = live.snapshot(|id| *id == kept);
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].call_log_id, kept.as_str());
        assert_eq!(shown[0].number, "+919800000001");
        assert_eq!(live.snapshot(|_| true).len(), 1, "let go for good");
    }
}
