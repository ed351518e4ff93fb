//! The dialer: one OS thread that places every campaign's calls.
//!
//! Each turn it (1) takes in what happened (a campaign created or changed, Exotel's answer to a
//! dial), (2) closes the attempts whose calls have ended (their rows in the call log reached a
//! final status), asking Exotel about those a restart interrupted, and (3) dials what is due:
//! for each campaign inside its window, while fewer than `maxConcurrent` of its attempts are
//! open and its `callsPerMinute` spacing has passed, the next pending contact, unless it is on
//! the do-not-call list.
//!
//! Every step is written down before the next is taken ([`crate::store::campaigns`]): an
//! attempt is in the database before Exotel is asked, so after a crash the dialer
//! (`recover`) finds the ones whose request was in flight and marks them `unknown` instead of
//! dialing the customer again, and asks Exotel about every placed one that is still open: the
//! call log writes in batches, so a `kill -9` can take a call's row while its attempt, written
//! at once, survives. Calls are spaced evenly, never in bursts: the next call is due one
//! interval after the last was decided, so a late turn does not catch up.

use super::window::{Clock, Window};
use super::{dialing_status, CampaignMetrics, Dialed, NotNow, Order, Outcome, Settings, Telephony};
use crate::calls::CallLogId;
use crate::store::campaigns::{CampaignRow, DueContact, Then};
use crate::store::Store;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How often the dialer turns while a campaign may dial, and while none does.
const TICK: Duration = Duration::from_millis(20);
const IDLE_TICK: Duration = Duration::from_millis(250);
/// How often it looks for ended calls, and reads the campaigns again.
const POLL_ENDED: Duration = Duration::from_millis(200);
const RELOAD: Duration = Duration::from_secs(1);
/// After a restart, how often Exotel is asked about an interrupted call, and for how long.
const ASK_EVERY: Duration = Duration::from_secs(5);
const ASK_FOR: Duration = Duration::from_secs(30 * 60);
/// An attempt of unknown fate may be a live call: it keeps its place in the campaign's
/// `maxConcurrent` this long (a default ring time and the call-check margin), so that a
/// restart cannot push more calls at Exotel than the campaign allows.
const UNKNOWN_HOLD: Duration = Duration::from_secs(120);
/// A line with no free slot is tried again after this.
const BUSY_WAIT: Duration = Duration::from_millis(250);
/// Contacts read from the store at once, at most.
const BATCH: usize = 50;

/// The statuses in which a campaign dials (when its clock and window allow).
pub const DIALING: &[&str] = &["scheduled", "running", "waiting-window"];

/// What wakes the dialer.
pub enum Event {
    /// A campaign was created, paused, resumed or canceled.
    Changed,
    /// Exotel answered a dial.
    Answered {
        call_log_id: String,
        campaign: String,
        attempt: i64,
        dialed: Dialed,
    },
}

/// A campaign the dialer keeps.
struct Live {
    settings: Settings,
    window: Window,
    start_at_ms: Option<i64>,
    status: String,
    /// Attempts open (dialing or placed).
    in_flight: usize,
    /// Until when each attempt of unknown fate keeps its place.
    held: Vec<Instant>,
    next_dial: Instant,
    interval: Duration,
    /// Contacts read and not yet dialed.
    queue: VecDeque<DueContact>,
}

/// How a contact's dial went, for the campaign's loop.
enum Dialing {
    /// Sent to Exotel: the next call waits one interval.
    Sent,
    /// Not dialed (no longer pending, or the store refused): on to the next contact.
    Passed,
    /// No slot, or the campaign cannot dial: it waits.
    Wait,
}

/// A placed call whose end a restart hid: Exotel is asked.
struct Asking {
    campaign: String,
    attempt: i64,
    call_sid: Option<String>,
    since: Instant,
    next: Instant,
}

pub struct Dialer<T: Telephony> {
    store: Store,
    clock: Clock,
    telephony: Arc<T>,
    metrics: Arc<CampaignMetrics>,
    events: mpsc::Sender<Event>,
    queue: mpsc::Receiver<Event>,
    campaigns: HashMap<String, Live>,
    asking: HashMap<String, Asking>,
    /// Whether this instance dials (one instance alone always does).
    leadership: super::leadership::Leadership,
}

/// Starts the dialer's thread.
pub fn start<T: Telephony>(dialer: Dialer<T>) {
    let spawned = std::thread::Builder::new()
        .name("dialer".into())
        .spawn(move || dialer.run());
    if let Err(e) = spawned {
        crate::error!("dialer.not_started", error = e);
    }
}

impl<T: Telephony> Dialer<T> {
    pub fn new(
        store: Store,
        clock: Clock,
        telephony: Arc<T>,
        metrics: Arc<CampaignMetrics>,
        events: mpsc::Sender<Event>,
        queue: mpsc::Receiver<Event>,
    ) -> Dialer<T> {
        Dialer {
            store,
            clock,
            telephony,
            metrics,
            events,
            queue,
            campaigns: HashMap::new(),
            asking: HashMap::new(),
            leadership: super::leadership::Leadership::Alone,
        }
    }

    /// A dialer that dials only while this instance leads (`leadership`).
    pub fn with_leadership(mut self, leadership: super::leadership::Leadership) -> Dialer<T> {
        self.leadership = leadership;
        self
    }

    /// Waits until this instance dials, then takes the campaigns up as after a start.
    fn take_the_lead(&mut self) {
        while !self.leadership.leads() {
            // Changes meanwhile are the leader's: it reads the campaigns every second.
            while self.queue.try_recv().is_ok() {}
            std::thread::sleep(self.leadership.retry_in());
        }
        self.campaigns.clear();
        self.asking.clear();
        self.reload();
        self.recover();
    }

    fn run(mut self) {
        self.take_the_lead();
        let (mut polled, mut reloaded) = (Instant::now(), Instant::now());
        loop {
            if !self.leadership.leads() {
                self.take_the_lead();
            }
            match self.queue.recv_timeout(self.wait()) {
                Ok(event) => self.take(event),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(event) = self.queue.try_recv() {
                self.take(event);
            }
            if reloaded.elapsed() >= RELOAD {
                self.reload();
                reloaded = Instant::now();
            }
            if polled.elapsed() >= POLL_ENDED {
                if self.any_open() {
                    self.collect_ended();
                }
                self.ask_exotel();
                polled = Instant::now();
            }
            self.dial_due();
            self.publish();
        }
    }

    /// Whether any attempt may still end: one in flight for a campaign here, or one Exotel is
    /// asked about (a restart's, whose campaign may be over). With none, there is nothing for
    /// [`Dialer::collect_ended`] to find, and the store is not asked five times a second.
    fn any_open(&self) -> bool {
        !self.asking.is_empty() || self.campaigns.values().any(|c| c.in_flight > 0)
    }

    fn any_dialing(&self) -> bool {
        self.campaigns
            .values()
            .any(|c| DIALING.contains(&c.status.as_str()))
    }

    /// How long the next turn waits for an event: its tick, or less when a running campaign's
    /// next call falls due sooner, so that the tick does not slow the pace. A call already due
    /// but held back (no slot, no due contact) waits for the tick: the dialer never spins.
    fn wait(&self) -> Duration {
        let tick = if self.any_dialing() { TICK } else { IDLE_TICK };
        let now = Instant::now();
        self.campaigns
            .values()
            .filter(|c| c.status == "running" && c.next_dial > now)
            .map(|c| c.next_dial - now)
            .fold(tick, Duration::min)
    }

    /// Reads the campaigns that are not finished; keeps what it knew of those it had.
    fn reload(&mut self) {
        let rows = match self.store.campaigns_active() {
            Ok(rows) => rows,
            Err(e) => {
                crate::error!("dialer.store_failed", error = e);
                return;
            }
        };
        let mut seen = Vec::with_capacity(rows.len());
        for row in rows {
            seen.push(row.id.clone());
            match self.campaigns.get_mut(&row.id) {
                Some(live) => {
                    if live.status != row.status {
                        live.queue.clear();
                        live.status = row.status;
                    }
                }
                None => {
                    if let Some(live) = load(&row) {
                        self.campaigns.insert(row.id, live);
                    }
                }
            }
        }
        // Finished campaigns are dropped once nothing of theirs is open.
        self.campaigns
            .retain(|id, live| seen.contains(id) || live.in_flight > 0);
    }

    /// After a start: attempts whose Exotel request was in flight are `unknown` (not dialed
    /// again unless the campaign says `redialUnknown`); placed ones count as open until their
    /// calls end, and Exotel is asked about each, whether or not its call's row survived (a row
    /// that says how the call ended closes it first).
    fn recover(&mut self) {
        let open = match self.store.attempts_open() {
            Ok(open) => open,
            Err(e) => {
                crate::error!("dialer.store_failed", error = e);
                return;
            }
        };
        for attempt in open {
            if let Some(live) = self.campaigns.get_mut(&attempt.campaign_id) {
                live.in_flight += 1;
            }
            if attempt.state != "dialing" {
                self.ask_about(
                    attempt.call_log_id,
                    attempt.campaign_id,
                    attempt.attempt,
                    attempt.call_sid,
                );
                continue;
            }
            crate::warn!(
                "campaign.attempt_unknown",
                campaign = attempt.campaign_id,
                callLogId = attempt.call_log_id,
                attempt = attempt.attempt,
                detail = "its request to Exotel was in flight when the process stopped; not dialed again unless redialUnknown"
            );
            self.finish(
                &attempt.call_log_id,
                &attempt.campaign_id,
                attempt.attempt,
                Outcome::Unknown,
            );
        }
    }

    /// Puts a placed attempt on the list of calls Exotel is asked about (once).
    fn ask_about(
        &mut self,
        call_log_id: String,
        campaign: String,
        attempt: i64,
        call_sid: Option<String>,
    ) {
        let now = Instant::now();
        self.asking.entry(call_log_id).or_insert(Asking {
            campaign,
            attempt,
            call_sid,
            since: now,
            next: now,
        });
    }

    fn take(&mut self, event: Event) {
        match event {
            Event::Changed => self.reload(),
            Event::Answered {
                call_log_id,
                campaign,
                attempt,
                dialed,
            } => match dialed {
                Dialed::Placed { call_sid } => {
                    if let Err(e) = self.store.attempt_placed(call_log_id.clone(), call_sid) {
                        crate::error!("dialer.store_failed", callLogId = call_log_id, error = e);
                    }
                }
                Dialed::Failed(why) => {
                    crate::warn!(
                        "campaign.dial_failed",
                        campaign = campaign,
                        callLogId = call_log_id,
                        error = why
                    );
                    self.finish(&call_log_id, &campaign, attempt, Outcome::Failed);
                }
                Dialed::Unknown(why) => {
                    crate::warn!(
                        "campaign.dial_unknown",
                        campaign = campaign,
                        callLogId = call_log_id,
                        error = why
                    );
                    self.finish(&call_log_id, &campaign, attempt, Outcome::Unknown);
                }
            },
        }
    }

    /// Closes the attempts whose calls have a final status; an interrupted one is asked about.
    fn collect_ended(&mut self) {
        let ended = match self.store.attempts_ended() {
            Ok(ended) => ended,
            Err(e) => {
                crate::error!("dialer.store_failed", error = e);
                return;
            }
        };
        for a in ended {
            match Outcome::of_call_status(&a.call_status) {
                Some(outcome) => self.finish(&a.call_log_id, &a.campaign_id, a.attempt, outcome),
                None => self.ask_about(a.call_log_id, a.campaign_id, a.attempt, a.call_sid),
            }
        }
    }

    /// Asks Exotel about the calls a restart interrupted, through their campaign's line.
    fn ask_exotel(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .asking
            .iter()
            .filter(|(_, a)| now >= a.next)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(asking) = self.asking.get_mut(&id) else {
                continue;
            };
            let from = self
                .campaigns
                .get(&asking.campaign)
                .and_then(|c| c.settings.from.clone());
            let answer = match &asking.call_sid {
                Some(sid) => self.telephony.ask(from.as_deref(), sid),
                None => Err("no CallSid".into()),
            };
            let outcome = match answer {
                Ok(Some(outcome)) => Some(outcome),
                _ if asking.since.elapsed() >= ASK_FOR => Some(Outcome::Unknown),
                Ok(None) => None,
                Err(e) => {
                    crate::warn!("campaign.ask_failed", callLogId = id, error = e);
                    None
                }
            };
            match outcome {
                Some(outcome) => {
                    let (campaign, attempt) = (asking.campaign.clone(), asking.attempt);
                    self.finish(&id, &campaign, attempt, outcome);
                }
                None => asking.next = now + ASK_EVERY,
            }
        }
    }

    /// Closes an attempt with its outcome; its contact is tried again or done, as the
    /// campaign's retry policy says. Exotel is no longer asked about it, however it ended.
    fn finish(&mut self, call_log_id: &str, campaign: &str, attempt: i64, outcome: Outcome) {
        self.asking.remove(call_log_id);
        let now = self.clock.now_ms();
        let live = self.campaigns.get_mut(campaign);
        let then = match live
            .as_ref()
            .and_then(|l| l.settings.retry_after(outcome, attempt))
        {
            Some(wait) => Then::RetryAt(now + wait.as_millis() as i64),
            None => Then::Final,
        };
        match self
            .store
            .attempt_finish(call_log_id.to_owned(), outcome.as_str(), then, now)
        {
            Ok(true) => {
                if let Some(live) = live {
                    live.in_flight = live.in_flight.saturating_sub(1);
                    if outcome == Outcome::Unknown {
                        live.held.push(Instant::now() + UNKNOWN_HOLD);
                    }
                }
                self.metrics.ended(outcome);
                crate::info!(
                    "campaign.attempt_ended",
                    campaign = campaign,
                    callLogId = call_log_id,
                    attempt = attempt,
                    outcome = outcome.as_str(),
                    retry = matches!(then, Then::RetryAt(_))
                );
                self.complete_if_done(campaign);
            }
            Ok(false) => {}
            Err(e) => crate::error!("dialer.store_failed", callLogId = call_log_id, error = e),
        }
    }

    /// A dialing campaign with nothing open and nothing pending is completed.
    fn complete_if_done(&mut self, campaign: &str) {
        let Some(live) = self.campaigns.get_mut(campaign) else {
            return;
        };
        if live.in_flight > 0 || !live.queue.is_empty() || !DIALING.contains(&live.status.as_str())
        {
            return;
        }
        match self.store.has_pending(campaign.to_owned()) {
            Ok(false) => {}
            Ok(true) => return,
            Err(e) => {
                crate::error!("dialer.store_failed", campaign = campaign, error = e);
                return;
            }
        }
        let now = self.clock.now_ms();
        if let Ok(Some(_)) =
            self.store
                .campaign_set_status(campaign.to_owned(), DIALING, "completed", None, now)
        {
            live.status = "completed".into();
            crate::info!("campaign.completed", campaign = campaign);
        }
    }

    /// Dials what is due in every campaign that may dial now.
    fn dial_due(&mut self) {
        let now_ms = self.clock.now_ms();
        let ids: Vec<String> = self.campaigns.keys().cloned().collect();
        for id in ids {
            if !self.follow_clock(&id, now_ms) || self.telephony.draining() {
                continue;
            }
            self.dial_campaign(&id, now_ms);
        }
    }

    /// Moves a dialing campaign to the status its clock and window say; answers whether it may
    /// dial now.
    fn follow_clock(&mut self, id: &str, now_ms: i64) -> bool {
        let Some(live) = self.campaigns.get_mut(id) else {
            return false;
        };
        if !DIALING.contains(&live.status.as_str()) {
            return false;
        }
        let wanted = dialing_status(live.start_at_ms, &live.window, now_ms);
        if live.status != wanted {
            match self
                .store
                .campaign_set_status(id.to_owned(), DIALING, wanted, None, now_ms)
            {
                Ok(Some(was)) if DIALING.contains(&was.as_str()) => {
                    crate::info!(
                        "campaign.status",
                        campaign = id,
                        status = wanted,
                        was = was,
                        nextWindow = crate::calls::log::iso_8601(live.window.next_open(now_ms))
                    );
                    live.status = wanted.into();
                }
                // Paused or canceled meanwhile: the next reload says so.
                Ok(_) => return false,
                Err(e) => {
                    crate::error!("dialer.store_failed", campaign = id, error = e);
                    return false;
                }
            }
        }
        wanted == "running"
    }

    /// Dials a running campaign's due contacts within its concurrency and its pace.
    fn dial_campaign(&mut self, id: &str, now_ms: i64) {
        loop {
            let Some(live) = self.campaigns.get_mut(id) else {
                return;
            };
            let max = live.settings.max_concurrent as usize;
            let now = Instant::now();
            live.held.retain(|until| *until > now);
            let open = live.in_flight + live.held.len();
            if open >= max || now < live.next_dial {
                return;
            }
            if live.queue.is_empty() {
                let want = (max - open).clamp(1, BATCH);
                match self.store.due_contacts(id.to_owned(), now_ms, want) {
                    Ok(due) => live.queue.extend(due),
                    Err(e) => {
                        crate::error!("dialer.store_failed", campaign = id, error = e);
                        return;
                    }
                }
                if live.queue.is_empty() {
                    self.complete_if_done(id);
                    return;
                }
            }
            let Some(contact) = live.queue.pop_front() else {
                return;
            };
            if self.skip_listed(id, &contact) {
                continue;
            }
            match self.dial(id, contact, now_ms) {
                // The next call is due one interval after this one was decided, however late
                // this turn came: a late turn dials one call, never a burst.
                Dialing::Sent => {
                    if let Some(live) = self.campaigns.get_mut(id) {
                        live.next_dial = now + live.interval;
                    }
                }
                Dialing::Passed => {}
                Dialing::Wait => return,
            }
        }
    }

    /// Skips a contact on the do-not-call list (done, `skipped-dnc`); answers whether it did.
    fn skip_listed(&self, id: &str, contact: &DueContact) -> bool {
        if !self.telephony.do_not_call(&contact.to) {
            return false;
        }
        if let Err(e) =
            self.store
                .contact_skip(id.to_owned(), contact.row, Outcome::SkippedDnc.as_str())
        {
            crate::error!("dialer.store_failed", campaign = id, error = e);
        }
        self.metrics.skipped_dnc.fetch_add(1, Ordering::Relaxed);
        crate::info!("campaign.skipped_dnc", campaign = id, row = contact.row);
        true
    }

    /// Dials one contact: takes a slot, writes the attempt down, then hands the call to Exotel.
    fn dial(&mut self, id: &str, contact: DueContact, now_ms: i64) -> Dialing {
        let Some(live) = self.campaigns.get_mut(id) else {
            return Dialing::Wait;
        };
        let attempt = contact.attempts + 1;
        let order = Order {
            call_log_id: CallLogId::generate(),
            to: contact.to.clone(),
            from: live.settings.from.clone(),
            agent: live.settings.agent.clone(),
            params: params_of(&contact.params),
            campaign: id.to_owned(),
        };
        let prepared = match self.telephony.prepare(&order) {
            Ok(p) => p,
            Err(NotNow::Busy(_)) => {
                live.queue.push_front(contact);
                live.next_dial = Instant::now() + BUSY_WAIT;
                return Dialing::Wait;
            }
            Err(NotNow::Broken(why)) => {
                live.queue.push_front(contact);
                self.pause_broken(id, why);
                return Dialing::Wait;
            }
        };
        let call_log_id = order.call_log_id.as_str().to_owned();
        if let Err(e) = self.store.attempt_begin(
            id.to_owned(),
            contact.row,
            attempt,
            call_log_id.clone(),
            now_ms,
        ) {
            // Not pending any more (canceled meanwhile), or the disk refused: nothing is sent.
            self.telephony.withdraw(prepared);
            crate::warn!(
                "campaign.not_dialed",
                campaign = id,
                row = contact.row,
                error = e
            );
            return Dialing::Passed;
        }
        live.in_flight += 1;
        self.metrics.dialed.fetch_add(1, Ordering::Relaxed);
        crate::info!(
            "campaign.dial",
            campaign = id,
            callLogId = call_log_id,
            row = contact.row,
            attempt = attempt
        );
        self.send(prepared, call_log_id, id, attempt);
        Dialing::Sent
    }

    /// Hands a prepared call to Exotel; its answer comes back to the dialer as an event.
    fn send(&self, prepared: T::Prepared, call_log_id: String, campaign: &str, attempt: i64) {
        let (events, campaign) = (self.events.clone(), campaign.to_owned());
        self.telephony.send(
            prepared,
            Box::new(move |dialed| {
                let _ = events.send(Event::Answered {
                    call_log_id,
                    campaign,
                    attempt,
                    dialed,
                });
            }),
        );
    }

    /// A campaign that cannot dial at all is paused with why, for its operator to fix.
    fn pause_broken(&mut self, id: &str, why: String) {
        let now = self.clock.now_ms();
        crate::error!("campaign.paused", campaign = id, error = why);
        if let Err(e) =
            self.store
                .campaign_set_status(id.to_owned(), DIALING, "paused", Some(why), now)
        {
            crate::error!("dialer.store_failed", campaign = id, error = e);
        }
        if let Some(live) = self.campaigns.get_mut(id) {
            live.status = "paused".into();
            live.queue.clear();
        }
    }

    /// The gauges for `/metrics`.
    fn publish(&self) {
        let running = self
            .campaigns
            .values()
            .filter(|c| DIALING.contains(&c.status.as_str()))
            .count();
        let in_flight: usize = self.campaigns.values().map(|c| c.in_flight).sum();
        self.metrics
            .running
            .store(running as u64, Ordering::Relaxed);
        self.metrics
            .in_flight
            .store(in_flight as u64, Ordering::Relaxed);
    }
}

/// A stored campaign as the dialer keeps it; `None` (logged) when its settings no longer read.
fn load(row: &CampaignRow) -> Option<Live> {
    match Settings::read_stored(&row.settings) {
        Ok(c) => Some(Live {
            interval: Duration::from_micros(60_000_000 / u64::from(c.settings.calls_per_minute)),
            settings: c.settings,
            window: c.window,
            start_at_ms: c.start_at_ms,
            status: row.status.clone(),
            in_flight: 0,
            held: Vec::new(),
            next_dial: Instant::now(),
            queue: VecDeque::new(),
        }),
        Err(e) => {
            crate::error!("campaign.unreadable", campaign = row.id, error = e);
            None
        }
    }
}

/// A contact's stored parameters as pairs.
fn params_of(json: &str) -> Vec<(String, String)> {
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json) {
        Ok(map) => map
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
