//! Where a call is: its status, from `queued` to a final one. Owned here, below both the call
//! log that stores it and the metrics that count final ones.

use serde::Serialize;

/// Where a call is. Final states have the highest rank and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Queued,
    Initiated,
    Connected,
    InProgress,
    Completed,
    Failed,
    Busy,
    NoAnswer,
    Canceled,
    Interrupted,
    RejectedCapacity,
    /// A relayed call whose bot could not be reached (`BOT_FALLBACK=hangup`).
    BotUnavailable,
}

impl Status {
    pub const ALL: [Status; 12] = [
        Status::Queued,
        Status::Initiated,
        Status::Connected,
        Status::InProgress,
        Status::Completed,
        Status::Failed,
        Status::Busy,
        Status::NoAnswer,
        Status::Canceled,
        Status::Interrupted,
        Status::RejectedCapacity,
        Status::BotUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Initiated => "initiated",
            Status::Connected => "connected",
            Status::InProgress => "in-progress",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Busy => "busy",
            Status::NoAnswer => "no-answer",
            Status::Canceled => "canceled",
            Status::Interrupted => "interrupted",
            Status::RejectedCapacity => "rejected-capacity",
            Status::BotUnavailable => "bot-unavailable",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Exotel's `Status` in a status callback (docs/exotel.md §4).
    pub fn from_exotel(s: &str) -> Option<Status> {
        match s.to_ascii_lowercase().as_str() {
            "completed" => Some(Status::Completed),
            "failed" => Some(Status::Failed),
            "busy" => Some(Status::Busy),
            "no-answer" | "no_answer" | "noanswer" => Some(Status::NoAnswer),
            "canceled" | "cancelled" => Some(Status::Canceled),
            "in-progress" | "answered" => Some(Status::InProgress),
            "ringing" => Some(Status::Initiated),
            "queued" => Some(Status::Queued),
            _ => None,
        }
    }

    fn rank(self) -> u8 {
        match self {
            Status::Queued => 0,
            Status::Initiated => 1,
            Status::Connected => 2,
            Status::InProgress => 3,
            _ => 4,
        }
    }

    /// Whether moving from `current` to `self` is forward (statuses never move backwards).
    pub fn is_after(self, current: Status) -> bool {
        self.rank() > current.rank()
    }

    pub fn is_final(self) -> bool {
        self.rank() == 4
    }
}
