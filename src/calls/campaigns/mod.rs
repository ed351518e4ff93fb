//! Campaigns: a list of contacts dialed from one phone with one agent, within a concurrency
//! limit, a rate, a calling window and a retry policy.
//!
//! The map: [`Settings`] is what a campaign asks for, read once from JSON or from a CSV
//! upload's query ([`contacts`] checks the rows, [`window`] the hours); the [`dialer`] thread
//! places the calls through a [`Telephony`] (the server's lines, slots and call log) and keeps
//! every step in [`crate::store`], so that after a crash it resumes where it stopped and no
//! attempt is sent twice. This file is what the API asks of campaigns (`routes::campaigns`).

pub mod contacts;
pub mod dialer;
pub mod leadership;
pub mod progress;
pub mod window;

use crate::calls::CallLogId;
use crate::calls::{Refusal, Refused};
use crate::http::Params;
use crate::store::campaigns::{CampaignRow, NewCampaign, NewContact};
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use window::{Clock, Window};

mod settings;
pub use settings::*;

/// Limits of a campaign's settings.
pub const MAX_CONCURRENT: u32 = 1_000;
pub const MAX_CALLS_PER_MINUTE: u32 = 60_000;
pub const MAX_ATTEMPTS: u32 = 10;
/// A week, at most, between attempts.
pub const MAX_RETRY_WAIT_S: u64 = 7 * 24 * 3600;
/// Rows of `/campaigns/{id}/calls` per page unless `limit` says otherwise, and at most.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1_000;

/// How an attempt ended, as the campaign counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Completed,
    Busy,
    NoAnswer,
    Failed,
    /// Exotel may or may not have placed it: its request was in flight when the process died,
    /// or no answer came in time.
    Unknown,
    /// Never dialed: the number is on the do-not-call list.
    SkippedDnc,
    /// Never dialed: the campaign was canceled first.
    Canceled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Busy => "busy",
            Outcome::NoAnswer => "no-answer",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
            Outcome::SkippedDnc => "skipped-dnc",
            Outcome::Canceled => "canceled",
        }
    }

    /// The outcome of a call whose row in the call log has this final status; `None` for
    /// `interrupted` (the process stopped: Exotel is to be asked).
    pub fn of_call_status(status: &str) -> Option<Outcome> {
        match status {
            "completed" => Some(Outcome::Completed),
            "busy" => Some(Outcome::Busy),
            // Exotel's `canceled` is a call that ended before it was answered.
            "no-answer" | "canceled" => Some(Outcome::NoAnswer),
            "interrupted" => None,
            _ => Some(Outcome::Failed),
        }
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct CampaignMetrics {
    /// Attempts sent to Exotel.
    pub dialed: AtomicU64,
    /// Contacts skipped for the do-not-call list.
    pub skipped_dnc: AtomicU64,
    /// Attempts ended, by outcome (the order of [`Outcome`]'s variants).
    pub outcomes: [AtomicU64; 7],
    /// Campaigns dialing now, and attempts open now (gauges the dialer sets).
    pub running: AtomicU64,
    pub in_flight: AtomicU64,
}

impl CampaignMetrics {
    /// Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(1024);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.push_str("# HELP exotel_voicebot_campaigns_running Campaigns dialing now (running or waiting for their window).\n# TYPE exotel_voicebot_campaigns_running gauge\n");
        out.push_str(&format!(
            "exotel_voicebot_campaigns_running {}\n",
            get(&self.running)
        ));
        out.push_str("# HELP exotel_voicebot_campaign_calls_in_flight Campaign attempts sent and not yet ended.\n# TYPE exotel_voicebot_campaign_calls_in_flight gauge\n");
        out.push_str(&format!(
            "exotel_voicebot_campaign_calls_in_flight {}\n",
            get(&self.in_flight)
        ));
        out.push_str("# HELP exotel_voicebot_campaign_dials_total Campaign attempts sent to Exotel.\n# TYPE exotel_voicebot_campaign_dials_total counter\n");
        out.push_str(&format!(
            "exotel_voicebot_campaign_dials_total {}\n",
            get(&self.dialed)
        ));
        out.push_str("# HELP exotel_voicebot_campaign_attempts_ended_total Campaign attempts ended, by outcome.\n# TYPE exotel_voicebot_campaign_attempts_ended_total counter\n");
        for (i, outcome) in OUTCOMES.iter().enumerate() {
            out.push_str(&format!(
                "exotel_voicebot_campaign_attempts_ended_total{{outcome=\"{}\"}} {}\n",
                outcome.as_str(),
                get(&self.outcomes[i])
            ));
        }
        out
    }

    fn ended(&self, outcome: Outcome) {
        let i = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0);
        self.outcomes[i].fetch_add(1, Ordering::Relaxed);
    }
}

const OUTCOMES: [Outcome; 7] = [
    Outcome::Completed,
    Outcome::Busy,
    Outcome::NoAnswer,
    Outcome::Failed,
    Outcome::Unknown,
    Outcome::SkippedDnc,
    Outcome::Canceled,
];

/// The campaigns of the server: their API, and the way to their dialer.
pub struct Campaigns {
    store: Store,
    clock: Clock,
    pub metrics: Arc<CampaignMetrics>,
    /// Wakes the dialer (a campaign was created or changed).
    wake: mpsc::Sender<dialer::Event>,
    /// The dialer's end of `wake`, until [`Campaigns::start_dialer`] takes it.
    queue: Mutex<Option<mpsc::Receiver<dialer::Event>>>,
}

impl Campaigns {
    pub fn new(store: Store, clock: Clock) -> Campaigns {
        let (wake, queue) = mpsc::channel();
        Campaigns {
            store,
            clock,
            metrics: Arc::new(CampaignMetrics::default()),
            wake,
            queue: Mutex::new(Some(queue)),
        }
    }

    /// Starts the dialer thread over `telephony` (once; later calls do nothing). With
    /// `shared` (PostgreSQL), it dials only while this instance holds the dialer's lease.
    pub fn start_dialer<T: Telephony>(
        &self,
        telephony: Arc<T>,
        shared: Option<&crate::calls::shared::Shared>,
    ) {
        let Some(queue) = self.queue.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let leadership = match shared {
            Some(shared) => leadership::Leadership::shared(
                self.store.clone(),
                shared.holder.clone(),
                shared.lease,
            ),
            None => leadership::Leadership::Alone,
        };
        let dialer = dialer::Dialer::new(
            self.store.clone(),
            self.clock,
            telephony,
            self.metrics.clone(),
            self.wake.clone(),
            queue,
        );
        dialer::start(dialer.with_leadership(leadership));
    }

    fn wake(&self) {
        let _ = self.wake.send(dialer::Event::Changed);
    }

    /// Creates a campaign from its settings and checked contacts (`POST /campaigns`).
    /// `phone_known` and `agent_known` say whether a phone of `/phones` and an agent of
    /// `/agents` exist.
    pub fn create(
        &self,
        settings: Settings,
        checked: contacts::Checked,
        phone_known: impl Fn(&str) -> bool,
        agent_known: impl Fn(&str) -> bool,
    ) -> Result<Created, NotCreated> {
        let checked_settings = settings.check().map_err(Refusal::invalid)?;
        names_known(&settings, phone_known, agent_known)?;
        if checked.contacts.is_empty() {
            return Err(NotCreated::NoContacts(checked.rejected));
        }
        let now = self.clock.now_ms();
        let status = checked_settings.status_at(now);
        let rejected = checked.rejected;
        let (id, total) = self
            .write(&settings, checked.contacts, status, now)
            .map_err(Refusal::store)?;
        crate::info!(
            "campaign.created",
            campaign = id,
            name = settings.name,
            contacts = total,
            rejected = rejected.count,
            from = settings.from.as_deref().unwrap_or("environment")
        );
        self.wake();
        Ok(Created {
            id,
            status,
            total,
            rejected,
            settings,
        })
    }

    /// What [`Campaigns::create`] would make of an upload, without making it: the same
    /// checks and refusals, and nothing written (the console's preview before **Start**).
    pub fn preview(
        &self,
        settings: &Settings,
        checked: contacts::Checked,
        phone_known: impl Fn(&str) -> bool,
        agent_known: impl Fn(&str) -> bool,
    ) -> Result<contacts::Checked, NotCreated> {
        settings.check().map_err(Refusal::invalid)?;
        names_known(settings, phone_known, agent_known)?;
        if checked.contacts.is_empty() {
            return Err(NotCreated::NoContacts(checked.rejected));
        }
        Ok(checked)
    }

    /// Writes a new campaign and its contacts; answers its id and how many contacts it has.
    fn write(
        &self,
        settings: &Settings,
        contacts: Vec<contacts::Contact>,
        status: &str,
        now: i64,
    ) -> Result<(String, usize), String> {
        let id = CallLogId::generate().as_str().to_owned();
        let rows: Vec<NewContact> = contacts
            .into_iter()
            .map(|c| NewContact {
                params: c.params_json(),
                to: c.to,
            })
            .collect();
        let total = rows.len();
        self.store.campaign_create(
            NewCampaign {
                id: id.clone(),
                name: settings.name.clone(),
                status: status.into(),
                settings: serde_json::to_string(settings).unwrap_or_default(),
                created_at: now,
            },
            rows,
        )?;
        Ok((id, total))
    }

    /// Every campaign, newest first, as lists show it.
    pub fn list(&self) -> Result<Vec<serde_json::Value>, Refusal> {
        let rows = self.store.campaigns().map_err(Refusal::store)?;
        Ok(rows.iter().map(summary).collect())
    }

    /// Where a campaign stands, with counts by outcome and by attempt.
    pub fn progress(&self, id: &str) -> Result<serde_json::Value, Refusal> {
        let row = self.find(id)?;
        let counts = self
            .store
            .campaign_counts(row.id.clone())
            .map_err(Refusal::store)?;
        let outcome = |name: &str| {
            counts
                .by_outcome
                .iter()
                .find(|(o, _)| o == name)
                .map_or(0, |(_, n)| *n)
        };
        let mut shown = summary(&row);
        let failed =
            outcome("failed") + outcome("busy") + outcome("no-answer") + outcome("unknown");
        let extra = serde_json::json!({
            "dialed": counts.dialed,
            "completed": outcome("completed"),
            "failed": failed,
            "skippedDnc": outcome("skipped-dnc"),
            "canceled": outcome("canceled"),
            "pending": counts.pending,
            "inFlight": counts.in_flight,
            "retrying": counts.retrying,
            "outcomes": counts.by_outcome.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "attempts": counts.by_attempt.iter().map(|(a, n)| (a.to_string(), *n)).collect::<std::collections::BTreeMap<_, _>>(),
            "now": crate::calls::log::iso_8601(self.clock.now_ms()),
            "windowOpensAt": self.window_opens_at(&row),
        });
        if let (Some(to), serde_json::Value::Object(extra)) = (shown.as_object_mut(), extra) {
            to.extend(extra);
        }
        Ok(shown)
    }

    /// Pauses, resumes or cancels a campaign; answers where it stands after.
    pub fn control(&self, id: &str, action: &str) -> Result<serde_json::Value, Refusal> {
        let row = self.find(id)?;
        let now = self.clock.now_ms();
        let (from, to): (&'static [&'static str], &'static str) = match action {
            "pause" => (dialer::DIALING, "paused"),
            // Back to the status its clock and window say, as the dialer would set it. Settings
            // that no longer read: `running`, and the dialer reports them.
            "resume" => (
                &["paused"],
                Settings::read_stored(&row.settings).map_or("running", |c| c.status_at(now)),
            ),
            "cancel" => (
                &["scheduled", "running", "waiting-window", "paused"],
                "canceled",
            ),
            _ => {
                return Err(Refusal::not_found(format!(
                    "no action {action:?}: pause, resume or cancel"
                )))
            }
        };
        match self
            .store
            .campaign_set_status(row.id.clone(), from, to, None, now)
            .map_err(Refusal::store)?
        {
            Some(was) if from.contains(&was.as_str()) => {
                if to == "canceled" {
                    if let Ok(n) = self.store.campaign_cancel_pending(row.id.clone()) {
                        crate::info!("campaign.canceled", campaign = row.id, contacts = n);
                    }
                } else {
                    crate::info!("campaign.status", campaign = row.id, status = to, was = was);
                }
                self.wake();
                self.progress(&row.id)
            }
            Some(was) => Err(Refusal::new(
                Refused::Conflict,
                "campaign_state",
                format!("campaign {} is {was}: it cannot {action}", row.id),
            )),
            None => Err(not_found(id)),
        }
    }

    /// A page of a campaign's contacts with their last call, by row, after row `after`.
    pub fn calls(
        &self,
        id: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<crate::store::campaigns::ContactReport>, Refusal> {
        let row = self.find(id)?;
        self.store
            .campaign_contacts(row.id, after, limit)
            .map_err(Refusal::store)
    }

    /// Every contact with attempts, final status, duration and recording, as CSV; answers the
    /// campaign's id and the file.
    pub fn calls_csv(&self, id: &str) -> Result<(String, Vec<u8>), Refusal> {
        let row = self.find(id)?;
        let mut out = csv::Writer::from_writer(Vec::new());
        let _ = out.write_record([
            "row",
            "to",
            "params",
            "attempts",
            "status",
            "callLogId",
            "callSid",
            "durationS",
            "recording",
        ]);
        let mut after = 0;
        loop {
            let page = self
                .store
                .campaign_contacts(row.id.clone(), after, MAX_PAGE)
                .map_err(Refusal::store)?;
            for c in &page {
                let status = c.outcome.clone().unwrap_or_else(|| c.state.clone());
                let status = if c.state == "done" {
                    status
                } else {
                    c.state.clone()
                };
                let _ = out.write_record([
                    c.row.to_string(),
                    c.to.clone(),
                    c.params.to_string(),
                    c.attempts.to_string(),
                    status,
                    c.call_log_id.clone().unwrap_or_default(),
                    c.call_sid.clone().unwrap_or_default(),
                    c.duration_s.map(|d| d.to_string()).unwrap_or_default(),
                    c.recording.clone().unwrap_or_default(),
                ]);
            }
            match page.last() {
                Some(last) if page.len() == MAX_PAGE => after = last.row,
                _ => break,
            }
        }
        Ok((row.id, out.into_inner().unwrap_or_default()))
    }

    /// When a campaign waiting for its window (or its start) may dial next.
    fn window_opens_at(&self, row: &CampaignRow) -> Option<String> {
        if row.status != "waiting-window" && row.status != "scheduled" {
            return None;
        }
        let checked = Settings::read_stored(&row.settings).ok()?;
        let now = self.clock.now_ms();
        let from = checked.start_at_ms.map_or(now, |at| at.max(now));
        Some(crate::calls::log::iso_8601(checked.window.next_open(from)))
    }

    /// Whether a campaign with this id exists (a `not_found` refusal if not).
    pub fn exists(&self, id: &str) -> Result<(), Refusal> {
        self.find(id).map(|_| ())
    }

    fn find(&self, id: &str) -> Result<CampaignRow, Refusal> {
        match self.store.campaign(id.to_owned()) {
            Ok(Some(row)) => Ok(row),
            Ok(None) => Err(not_found(id)),
            Err(e) => Err(Refusal::store(e)),
        }
    }
}

/// The phone (`from`) and the agent a campaign names must exist: 400 naming which does not.
fn names_known(
    settings: &Settings,
    phone_known: impl Fn(&str) -> bool,
    agent_known: impl Fn(&str) -> bool,
) -> Result<(), Refusal> {
    if let Some(from) = settings.from.as_deref().filter(|f| !phone_known(f)) {
        return Err(Refusal::new(
            Refused::Invalid,
            "unknown_phone",
            format!("from {from} is not one of /phones (POST /phones adds it; leave from out for the environment's EXOTEL_* line)"),
        ));
    }
    if let Some(agent) = settings.agent.as_deref().filter(|a| !agent_known(a)) {
        return Err(Refusal::new(
            Refused::Invalid,
            "unknown_agent",
            format!("agent {agent:?} is not one of /agents (POST /agents adds it)"),
        ));
    }
    Ok(())
}

/// A campaign as lists show it.
pub fn summary(row: &CampaignRow) -> serde_json::Value {
    let settings: serde_json::Value = serde_json::from_str(&row.settings).unwrap_or_default();
    serde_json::json!({
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "total": row.total,
        "createdAt": crate::calls::log::iso_8601(row.created_at),
        "updatedAt": crate::calls::log::iso_8601(row.updated_at),
        "lastError": row.last_error,
        "settings": settings,
    })
}

fn not_found(id: &str) -> Refusal {
    Refusal::not_found(format!("no campaign {id}"))
}

/// A new campaign as stored: its id, status, size, the rows refused and its settings.
pub struct Created {
    pub id: String,
    pub status: &'static str,
    pub total: usize,
    pub rejected: crate::calls::rejects::Rejects<contacts::Rejected>,
    pub settings: Settings,
}

/// Why no campaign was created: a refusal, or no contact could be taken (these rows say why).
pub enum NotCreated {
    Refused(Refusal),
    NoContacts(crate::calls::rejects::Rejects<contacts::Rejected>),
}

impl From<Refusal> for NotCreated {
    fn from(refusal: Refusal) -> NotCreated {
        NotCreated::Refused(refusal)
    }
}

/// What the dialer needs from the server to place a call: its lines, slots, do-not-call list,
/// call log and Exotel. [`crate::calls::place`] implements it for the running server.
pub trait Telephony: Send + Sync + 'static {
    /// A call taken off the server's hands until it is sent or withdrawn.
    type Prepared: Send;

    /// Whether the number (E.164) is on the do-not-call list.
    fn do_not_call(&self, to: &str) -> bool;

    /// Takes a slot on the server and on the order's line and makes the request; nothing is
    /// sent yet.
    fn prepare(&self, order: &Order) -> Result<Self::Prepared, NotNow>;

    /// Sends a prepared call to Exotel; `answered` runs with how it went (on another thread).
    fn send(&self, call: Self::Prepared, answered: Box<dyn FnOnce(Dialed) + Send>);

    /// Gives back a prepared call's slot without sending it.
    fn withdraw(&self, call: Self::Prepared);

    /// Asks the line's account how a call went (after a restart lost its callback): its
    /// outcome when final, `None` while it is still going.
    fn ask(&self, from: Option<&str>, call_sid: &str) -> Result<Option<Outcome>, String>;

    /// Whether the server is shutting down (then nothing new is dialed).
    fn draining(&self) -> bool;
}

/// One call the dialer asks for.
#[derive(Debug, Clone)]
pub struct Order {
    pub call_log_id: CallLogId,
    /// E.164.
    pub to: String,
    pub from: Option<String>,
    pub agent: Option<String>,
    pub params: Vec<(String, String)>,
    pub campaign: String,
}

/// Why a call could not be prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotNow {
    /// No slot free (on the server or the line): try again shortly.
    Busy(String),
    /// The campaign cannot dial at all (its phone is gone, Exotel is not configured).
    Broken(String),
}

/// How Exotel answered a campaign's `Calls/connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialed {
    Placed {
        call_sid: String,
    },
    /// Nothing was placed.
    Failed(String),
    /// No answer in time: the call may have been placed.
    Unknown(String),
}

#[cfg(test)]
mod tests;
