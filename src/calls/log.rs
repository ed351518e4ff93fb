//! The call log: one row per call, plus each call's status history and transcript, in the
//! stored state's database (`store`: SQLite's `$DATA_DIR/calls.db`, or PostgreSQL).
//!
//! One OS thread owns the connection (docs/ARCHITECTURE.md §2: both databases block in the
//! kernel, so never on a coroutine). Coroutines hand it [`LogEvent`]s without waiting; reads wait for their answer on a
//! `may` channel. Events arrive at lifecycle moments only, never per media frame. A status never
//! moves backwards, so repeated or late events (Exotel's callbacks repeat) change nothing.

pub use super::status::Status;
use super::CallLogId;
use crate::metrics::Metrics;
use crate::store::sql::{self, params, Db, Row, ToValue};
use crate::store::{schema, Location};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Outbound,
    Inbound,
    /// A call from the console's browser to an agent (`POST /agents/{name}/web-call`).
    Web,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
            Direction::Web => "web",
        }
    }
}

/// Media counts for the row, from the session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaCounts {
    pub frames_in: u64,
    pub bytes_in: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
    pub dtmf: String,
    /// Why the call's bot failed, if it did: kept as the row's `lastError`.
    pub error: Option<String>,
}

/// Something that happened to a call.
#[derive(Debug, Clone)]
pub enum LogEvent {
    /// `POST /call` was accepted: a new outbound row, `queued`.
    Requested {
        id: CallLogId,
        to: String,
        caller_id: String,
    },
    /// Exotel accepted `Calls/connect`: `initiated`.
    Placed { id: CallLogId, call_sid: String },
    /// No call: Exotel refused, or nothing was sent. `failed` with the reason.
    PlaceFailed { id: CallLogId, error: String },
    /// `/call` could not tell whether Exotel placed the call (504); noted, status kept.
    PlaceUnknown { id: CallLogId, error: String },
    /// The connect webhook answered for the call (a new inbound row, or the outbound one).
    Connected {
        id: CallLogId,
        direction: Direction,
        call_sid: String,
        from: String,
        to: String,
    },
    /// The media stream started: `in-progress`.
    MediaStarted {
        id: CallLogId,
        stream_sid: String,
        call_sid: String,
        from: String,
        to: String,
        recording_path: Option<String>,
        /// The agent the call was given, if any.
        agent: Option<String>,
        /// Who answers the stream, as `media.connected` logs it (`agent:NAME/echo`,
        /// `BOT=relay`, `server-bot`, `capacity-tone`).
        bot: String,
    },
    /// The media stream ended: `status` (normally `completed`; none when another socket took
    /// the call over), the reason and the counts.
    MediaEnded {
        id: CallLogId,
        status: Option<Status>,
        reason: String,
        counts: MediaCounts,
    },
    /// The caller pressed the do-not-call key; their number is on the list now.
    DoNotCall { id: CallLogId },
    /// The call's stream ended handing the caller to a person, for this reason.
    Handoff { id: CallLogId, reason: String },
    /// Exotel's Passthru after the stream: how the stream ended, and what we answered.
    StreamEnd(Box<StreamEnd>),
    /// Words of the call, as its bot heard or said them.
    Transcript {
        id: CallLogId,
        speaker: crate::bot::Speaker,
        text: String,
    },
    /// Exotel's status callback, matched by `CustomField`, else `CallSid`.
    ExotelStatus {
        custom_field: Option<String>,
        call_sid: Option<String>,
        status: Option<Status>,
        duration_s: Option<u64>,
        recording_url: Option<String>,
    },
}

impl LogEvent {
    /// The call the event is about, as a log line names it: its callLogId, else Exotel's
    /// CustomField or CallSid.
    fn call(&self) -> String {
        match self {
            LogEvent::Requested { id, .. }
            | LogEvent::Placed { id, .. }
            | LogEvent::PlaceFailed { id, .. }
            | LogEvent::PlaceUnknown { id, .. }
            | LogEvent::Connected { id, .. }
            | LogEvent::MediaStarted { id, .. }
            | LogEvent::MediaEnded { id, .. }
            | LogEvent::DoNotCall { id }
            | LogEvent::Transcript { id, .. }
            | LogEvent::Handoff { id, .. } => id.as_str().to_owned(),
            LogEvent::StreamEnd(end) => end
                .custom_field
                .clone()
                .or_else(|| end.call_sid.clone())
                .unwrap_or_default(),
            LogEvent::ExotelStatus {
                custom_field,
                call_sid,
                ..
            } => custom_field
                .clone()
                .or_else(|| call_sid.clone())
                .unwrap_or_default(),
        }
    }
}

/// What Exotel's Passthru said of a stream's end, matched by `CustomField`, else `CallSid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamEnd {
    pub custom_field: Option<String>,
    pub call_sid: Option<String>,
    pub stream_sid: Option<String>,
    /// `Stream[Status]`: `completed`, `failed`, …
    pub status: Option<String>,
    pub duration_s: Option<i64>,
    pub recording_url: Option<String>,
    /// `bot` or `user`.
    pub disconnected_by: Option<String>,
    /// `Stream[DetailedStatus]` or an error field, on failures.
    pub error: Option<String>,
    /// What we answered (200 or 302).
    pub answer: u16,
}

/// One call as `GET /calls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRow {
    pub call_log_id: String,
    pub direction: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub caller_id: Option<String>,
    pub call_sid: Option<String>,
    pub stream_sid: Option<String>,
    pub status: String,
    /// Unix milliseconds, and beside each the same moment in ISO 8601 (UTC, as the logs write
    /// it), for people and for tools that parse dates.
    pub created_at: i64,
    pub created_at_iso: String,
    pub answered_at: Option<i64>,
    pub answered_at_iso: Option<String>,
    pub ended_at: Option<i64>,
    pub ended_at_iso: Option<String>,
    pub duration_s: Option<i64>,
    pub end_reason: Option<String>,
    pub frames_in: i64,
    pub bytes_in: i64,
    pub frames_out: i64,
    pub bytes_out: i64,
    pub dtmf: String,
    pub recording_path: Option<String>,
    pub exotel_recording_url: Option<String>,
    pub last_error: Option<String>,
    /// The caller pressed the do-not-call key during the call.
    pub do_not_call: bool,
    /// Why the caller was handed to a person, when they were.
    pub handoff: Option<String>,
    /// What the Passthru after the stream was answered (200 or 302).
    pub handoff_answer: Option<i64>,
    /// Who ended the stream, by Exotel's Passthru: `bot` or `user`.
    pub disconnected_by: Option<String>,
    /// The stream's status and length by Exotel's Passthru, and its error on failures.
    pub stream_status: Option<String>,
    pub stream_duration_s: Option<i64>,
    pub stream_error: Option<String>,
    /// The agent the call was given, and who answered its stream (see `LogEvent::MediaStarted`).
    pub agent: Option<String>,
    pub bot: Option<String>,
    /// Status changes in order, with Unix milliseconds (`GET /calls/{id}` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<StatusChange>,
    /// The `before` cursor value for the next page.
    #[serde(skip)]
    pub seq: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    pub status: String,
    pub at: i64,
    pub at_iso: String,
}

/// One turn of a call's transcript (`GET /calls/{callLogId}/transcript`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptTurn {
    /// `bot` or `caller`.
    pub role: String,
    pub text: String,
    pub at: i64,
    pub at_iso: String,
}

/// Unix milliseconds as ISO 8601 in UTC: `2026-11-24T17:52:22.123Z`.
pub fn iso_8601(ms: i64) -> String {
    let at = UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    let mut out = String::with_capacity(24);
    crate::log::write_utc_timestamp(&mut out, at);
    out
}

/// What `GET /calls` asks for.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub limit: usize,
    /// Only calls older than this cursor.
    pub before: Option<i64>,
    pub status: Option<Status>,
    pub direction: Option<Direction>,
    /// Only calls handed to a person.
    pub handoff: bool,
    /// Only calls with this text in one of their numbers (from, to, caller id).
    pub number: Option<String>,
    pub agent: Option<String>,
    /// Only calls begun at or after `since` and before `until` (Unix milliseconds).
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Only the call with this callLogId or CallSid.
    pub id: Option<String>,
    /// Only the calls a campaign placed (its attempts).
    pub campaign: Option<String>,
}

/// An event and when it happened: a write retried after a disk failure keeps its own time.
#[derive(Debug, Clone)]
struct Stamped {
    event: LogEvent,
    at: i64,
}

/// Work on the writer's connection.
type DbWork = Box<dyn FnOnce(&dyn Db) + Send>;

enum Op {
    Write(Stamped),
    List(
        ListQuery,
        may::sync::mpsc::Sender<Result<Vec<CallRow>, String>>,
    ),
    Get(
        String,
        may::sync::mpsc::Sender<Result<Option<CallRow>, String>>,
    ),
    /// A call's transcript, in order; `None` when there is no such call.
    Transcript(
        String,
        may::sync::mpsc::Sender<Result<Option<Vec<TranscriptTurn>>, String>>,
    ),
    /// Answers once everything sent before it is written.
    Sync(may::sync::mpsc::Sender<()>),
    /// Work on the events outbox (`outbox`), on the writer's connection, after what was sent
    /// before it is written.
    Outbox(DbWork),
    /// The process is stopping: one last try to write everything, then one line naming what
    /// could not be written (a full disk), and the answer.
    Close(may::sync::mpsc::Sender<()>),
    /// Deletes ended calls created before this time (ms since the epoch); answers the
    /// recordings they held.
    Prune(i64, mpsc::Sender<Result<Pruned, String>>),
    /// On PostgreSQL: live calls created before this time that no instance holds (at most so
    /// many).
    Orphans(i64, usize, mpsc::Sender<Result<Vec<Orphan>, String>>),
}

/// The handle coroutines use. Cloning shares the writer.
#[derive(Clone)]
pub struct CallLog {
    ops: mpsc::Sender<Op>,
    /// The live calls, followed from the events as they are recorded.
    live: Arc<live::LiveCalls>,
}

/// What opening the log found.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    /// Calls that were live when the process last died, now `interrupted`.
    pub interrupted: usize,
}

/// Now, in Unix milliseconds: the call log's (and the store's) unit of time.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl CallLog {
    /// Opens (or creates) the database, migrates it, marks calls left live by a crash as
    /// `interrupted`, and starts the writer thread.
    pub fn open(at: &Location, metrics: Arc<Metrics>) -> Result<(CallLog, Opened), String> {
        CallLog::open_with_outbox(at, metrics, false)
    }

    /// As [`CallLog::open`]; with `outbox`, calls' changes also write events for the user's
    /// backend (`outbox`), in the same transactions.
    pub fn open_with_outbox(
        at: &Location,
        metrics: Arc<Metrics>,
        outbox: bool,
    ) -> Result<(CallLog, Opened), String> {
        let conn = at
            .connect(schema::Owner::CallLog)
            .map_err(|e| format!("{at}: {e}"))?;
        // One instance alone owns every live row; among several, another's live calls are
        // theirs (a dead one's are settled by `calls::orphans`).
        let alone = at.sqlite_path().is_some();
        let interrupted = schema::prepare(conn.as_ref())
            .and_then(|()| match alone {
                true => mark_interrupted(conn.as_ref(), now_ms()),
                false => Ok(0),
            })
            .map_err(|e| format!("{at}: {e}"))?;
        let (ops, queue) = mpsc::channel::<Op>();
        let mut writer = Writer::new(conn, at.clone(), metrics);
        writer.outbox = outbox;
        std::thread::Builder::new()
            .name("call-log".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| e.to_string())?;
        Ok((
            CallLog {
                ops,
                live: Default::default(),
            },
            Opened { interrupted },
        ))
    }

    /// Hands an event to the writer; never waits.
    pub fn record(&self, event: LogEvent) {
        let at = now_ms();
        self.live.follow(&event, at);
        if self.ops.send(Op::Write(Stamped { event, at })).is_err() {
            crate::error!("calllog.writer_gone", detail = "an event was not written");
        }
    }

    /// The live calls as the events recorded so far tell (from memory).
    pub fn live(&self) -> &live::LiveCalls {
        &self.live
    }

    /// Newest first. Waits for the writer (coroutine-safe).
    pub fn list(&self, query: ListQuery) -> Result<Vec<CallRow>, String> {
        self.ask(|reply| Op::List(query, reply))
    }

    pub fn get(&self, id: &str) -> Result<Option<CallRow>, String> {
        self.ask(|reply| Op::Get(id.to_owned(), reply))
    }

    /// Asks the writer a question and waits for its answer (coroutine-safe).
    fn ask<T>(
        &self,
        question: impl FnOnce(may::sync::mpsc::Sender<Result<T, String>>) -> Op,
    ) -> Result<T, String> {
        let (tx, rx) = may::sync::mpsc::channel();
        self.ops
            .send(question(tx))
            .map_err(|_| "the call log is closed")?;
        rx.recv()
            .map_err(|_| "the call log is closed".to_string())?
    }

    /// Runs `work` on the events outbox (`outbox::list`, `outbox::retry`). Waits for the
    /// writer (coroutine-safe), which writes everything recorded before it first.
    pub fn outbox<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Db) -> sql::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        self.ask(|reply| {
            Op::Outbox(Box::new(move |conn| {
                let _ = reply.send(work(conn).map_err(|e| e.to_string()));
            }))
        })
    }

    /// A call's transcript, in order (`None`: no such call). Waits for the writer
    /// (coroutine-safe), which writes everything recorded before it first.
    pub fn transcript(&self, id: &str) -> Result<Option<Vec<TranscriptTurn>>, String> {
        self.ask(|reply| Op::Transcript(id.to_owned(), reply))
    }

    /// Deletes the rows (and status history) of calls created before `cutoff` that have
    /// ended; answers how many and the recording files they named, for the caller to delete.
    /// Blocks: call it from a thread.
    pub fn prune(&self, cutoff: SystemTime) -> Result<Pruned, String> {
        let cutoff_ms = cutoff
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let (tx, rx) = mpsc::channel();
        self.ops
            .send(Op::Prune(cutoff_ms, tx))
            .map_err(|_| "the call log is closed")?;
        rx.recv()
            .map_err(|_| "the call log is closed".to_string())?
    }

    /// On PostgreSQL, the live calls created before `cutoff` whose slot no instance holds any
    /// more (their instance died), at most `limit`. Blocks: call it from a thread.
    pub fn orphans(&self, cutoff: SystemTime, limit: usize) -> Result<Vec<Orphan>, String> {
        let cutoff_ms = cutoff
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let (tx, rx) = mpsc::channel();
        self.ops
            .send(Op::Orphans(cutoff_ms, limit, tx))
            .map_err(|_| "the call log is closed")?;
        rx.recv()
            .map_err(|_| "the call log is closed".to_string())?
    }

    /// Waits until every event recorded so far is written.
    pub fn sync(&self) {
        let (tx, rx) = may::sync::mpsc::channel();
        if self.ops.send(Op::Sync(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// At shutdown: tries once more to write every event recorded so far, even while the disk
    /// has been failing, and says in one line how many could not be and which calls they were
    /// (their rows stay as last written; a live one is marked `interrupted` at the next start,
    /// as after a crash).
    pub fn close(&self) {
        let (tx, rx) = may::sync::mpsc::channel();
        if self.ops.send(Op::Close(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

/// A live call that no instance holds (`CallLog::orphans`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub call_log_id: String,
    pub call_sid: Option<String>,
    /// Its caller id, to and from numbers: one of them may be a phone of `/phones`, whose
    /// account placed or took it.
    pub numbers: [Option<String>; 3],
}

/// What [`CallLog::prune`] deleted.
#[derive(Debug, Default)]
pub struct Pruned {
    pub calls: usize,
    /// The recording files the deleted rows named, for the caller to delete.
    pub recordings: Vec<String>,
}

mod events;
pub mod live;
mod recovery;
mod rows;
mod writer;

use events::*;
use recovery::*;
use rows::*;
use writer::*;

#[cfg(test)]
mod tests;
