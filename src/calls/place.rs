//! Placing a call (`POST /call`, whose route is `routes::call`, and every campaign call): the
//! request validated, then one `Calls/connect` handed to the API pool and Exotel's answer
//! brought to the slot and the row (docs/ARCHITECTURE.md §3).
//!
//! Everything is validated before Exotel is asked; nothing is retried.

use crate::app::App;
use crate::calls::campaigns::{Dialed, NotNow, Order, Outcome, Telephony};
use crate::calls::log::LogEvent;
use crate::calls::phones::Line;
use crate::calls::plans::Plan;
use crate::calls::slots::NewCallRefused;
use crate::calls::{CallLogId, PhoneNumber};
use crate::calls::{Refusal, Refused};
use crate::exotel::{CallOptions, CallTarget, ConnectCall, ExotelError, PlacedCall, PoolError};
use crate::metrics::ExotelOutcome;

mod request;
pub use request::*;
use std::time::{Duration, Instant};

/// How long Exotel rings a customer when `/call` gives no `timeOut`: an assumption on the long
/// side (Exotel's documentation gives no default), used for the media token's lifetime in stream
/// mode and for when to ask Exotel about a call whose status callback never came.
pub const DEFAULT_RING_S: u64 = 60;

/// Why a call was not placed: refused before Exotel was asked, or Exotel's answer.
#[derive(Debug)]
pub enum NotPlaced {
    /// Nothing was sent to Exotel.
    Refused(Refusal),
    /// Exotel refused it, answered nonsense or could not be reached: nothing was placed.
    Exotel(ExotelError),
    /// Every Exotel API thread was busy: nothing was sent, so it is safe to try again.
    NotSent { detail: String },
    /// Exotel did not answer in time: the call may have been placed, so it is not retried.
    NoAnswer { detail: String },
}

impl From<Refusal> for NotPlaced {
    fn from(refusal: Refusal) -> NotPlaced {
        NotPlaced::Refused(refusal)
    }
}

/// Places the call the user asked for (`POST /call`): checks it against the do-not-call list,
/// its line, its agent and the slots, then hands one `Calls/connect` to the API pool and
/// brings the slot and the row along with Exotel's answer.
pub fn place(app: &App, call: PlaceCall) -> Result<PlacedCall, NotPlaced> {
    refuse_do_not_call(app, &call)?;
    let line = line_for(app, call.from.as_ref())?;
    let agent = agent_for(app, call.agent.as_deref(), &line)
        .map_err(|why| Refusal::new(Refused::Invalid, "unknown_agent", why))?;
    refuse_missing_variables(app, agent.as_deref(), &call)?;
    let id = call.call_log_id.clone();
    claim(app, &id, &line)?;
    let ring = ring_time(&call.options);
    let connect = connect_call(app, &line, call.to, id.clone(), call.options, ring)
        .inspect_err(|_| app.slots.release(&id))?;
    if agent.is_some() || !call.variables.is_empty() {
        app.plans.put(
            &id,
            Plan {
                agent,
                params: call.variables,
                ..Plan::default()
            },
        );
    }
    requested(app, &line, &connect);
    let started = Instant::now();
    let result = app.pool.connect_call(&line.account, connect);
    let took = started.elapsed();
    app.metrics.exotel_request(outcome_of(&result), took);
    settle(app, &line, &id, result, ring, took)
}

/// The realtime bot's settings of a call with this agent (else `BOT=realtime`'s), if its bot
/// is one.
fn realtime_settings<'a>(
    app: &'a App,
    agent: Option<&'a super::agents::Agent>,
) -> Option<&'a crate::config::RealtimeSettings> {
    match (agent, &app.config.bot) {
        (Some(agent), _) => agent.bot.realtime(),
        (None, crate::config::BotChoice::Relay(relay)) => match &relay.protocol {
            crate::config::BotProtocol::Realtime(settings) => Some(settings),
            _ => None,
        },
        (None, crate::config::BotChoice::Echo) => None,
    }
}

/// The `{{name}}`s that calls from `from` with `agent` (a campaign's) need values for: those
/// of their realtime bot's instructions and greeting; none for another bot, or when the line
/// or the agent is not known (the campaign is refused for that).
pub fn placeholders_for(app: &App, agent: Option<&str>, from: Option<&str>) -> Vec<String> {
    let from = from.and_then(|f| crate::calls::PhoneNumber::parse(f).ok());
    let Ok(line) = line_for(app, from.as_ref()) else {
        return Vec::new();
    };
    let Ok(agent) = agent_for(app, agent, &line) else {
        return Vec::new();
    };
    realtime_settings(app, agent.as_deref())
        .map(|s| s.placeholders())
        .unwrap_or_default()
}

/// With a realtime bot (the call's agent's, else `BOT=realtime`), every `{{name}}` of the
/// instructions and the greeting needs a value in the call's `variables`: the model must not be
/// told a blank.
fn refuse_missing_variables(
    app: &App,
    agent: Option<&super::agents::Agent>,
    call: &PlaceCall,
) -> Result<(), Refusal> {
    let Some(settings) = realtime_settings(app, agent) else {
        return Ok(());
    };
    let missing: Vec<String> = settings
        .placeholders()
        .into_iter()
        .filter(|name| !call.variables.iter().any(|(k, _)| k == name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Refusal::new(
        Refused::Invalid,
        "missing_variable",
        format!(
            "the realtime bot's instructions or greeting use {} : send them in variables",
            missing
                .iter()
                .map(|m| format!("{{{{{m}}}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// A number on the do-not-call list is never dialed.
fn refuse_do_not_call(app: &App, call: &PlaceCall) -> Result<(), Refusal> {
    if !app.dnc.contains(&call.to) {
        return Ok(());
    }
    crate::info!(
        "call.do_not_call",
        callLogId = call.call_log_id,
        to = call.to.canonical()
    );
    Err(Refusal::new(
        Refused::Forbidden,
        "do_not_call",
        format!(
            "{} is on the do-not-call list (DELETE /dnc/{} takes it off)",
            call.to.canonical(),
            call.to.canonical()
        ),
    ))
}

/// How long Exotel may ring the customer: `timeOut`, else [`DEFAULT_RING_S`].
pub fn ring_time(options: &CallOptions) -> Duration {
    Duration::from_secs(options.time_out.map_or(DEFAULT_RING_S, u64::from))
}

/// The `Calls/connect` request for a call on `line`: where Exotel connects it once answered
/// (the line's applet, or a media URL whose token outlives the ringing), and our status
/// callback unless the options name another. Refused when no media token can be issued.
pub fn connect_call(
    app: &App,
    line: &Line,
    to: PhoneNumber,
    id: CallLogId,
    mut options: CallOptions,
    ring: Duration,
) -> Result<ConnectCall, Refusal> {
    let target = target(app, line, &id, ring)?;
    // Exotel tells us how the call ended through our status callback, unless the user asked
    // for the callbacks to go elsewhere.
    if options.status_callback.is_none() {
        options.status_callback = Some(app.status_callback_url());
        options.status_callback_events = vec!["terminal".into(), "answered".into()];
    }
    Ok(ConnectCall {
        to,
        caller_id: line.caller_id.clone(),
        target,
        call_log_id: id,
        options,
    })
}

/// Logs the request and writes the call's first row, `queued`.
pub fn requested(app: &App, line: &Line, call: &ConnectCall) {
    crate::info!(
        "call.requested",
        callLogId = call.call_log_id,
        to = call.to.as_str(),
        from = line.phone.as_deref().unwrap_or("environment"),
        mode = match call.target {
            CallTarget::Applet { .. } => "applet",
            CallTarget::Stream { .. } => "stream",
        }
    );
    app.call_log.record(LogEvent::Requested {
        id: call.call_log_id.clone(),
        to: call.to.as_str().to_owned(),
        caller_id: line.caller_id.clone(),
    });
}

/// A call's agent: the one asked for (which must exist), else its line's (a phone whose agent
/// was deleted falls back to `BOT`, logged), else none.
pub fn agent_for(
    app: &App,
    asked: Option<&str>,
    line: &Line,
) -> Result<Option<std::sync::Arc<crate::calls::agents::Agent>>, String> {
    match asked {
        Some(name) => {
            app.agents.get(name).map(Some).ok_or_else(|| {
                format!("agent {name:?} is not one of /agents (POST /agents adds it)")
            })
        }
        None => Ok(line.agent.as_deref().and_then(|name| {
            let agent = app.agents.get(name);
            if agent.is_none() {
                crate::warn!(
                    "call.agent_missing",
                    agent = name,
                    phone = line.phone.as_deref().unwrap_or(""),
                    detail = "the phone's agent is not one of /agents; the call gets BOT"
                );
            }
            agent
        })),
    }
}

/// The line a call goes out on: the phone named `from`, else the environment's.
pub fn line_for(app: &App, from: Option<&PhoneNumber>) -> Result<Line, Refusal> {
    match from {
        Some(number) => app.phones.line(number).ok_or_else(|| {
            Refusal::new(
                Refused::Invalid,
                "unknown_phone",
                format!(
                    "from {} is not one of /phones (POST /phones adds it; leave from out for the environment's EXOTEL_* line)",
                    number.canonical()
                ),
            )
        }),
        None => app.default_line.clone().map_err(|missing| {
            Refusal::unavailable(
                "not_configured",
                format!(
                    "placing calls needs {} in the environment or .env (or a phone of /phones, named by from)",
                    missing.join(", ")
                ),
            )
        }),
    }
}

/// The callLogId is new, and a slot is free for it on the server and on its line.
fn claim(app: &App, id: &CallLogId, line: &Line) -> Result<(), Refusal> {
    // One row per callLogId: a used id would leave this call under another call's final status.
    match app.call_log.get(id.as_str()) {
        Ok(None) => {}
        Ok(Some(existing)) => {
            return Err(Refusal::new(
                Refused::Conflict,
                "call_log_id_taken",
                format!(
                    "callLogId {id} was already used (status {}); send a new one or none",
                    existing.status
                ),
            ))
        }
        // The database is down or restarting (its writer retries every second): try again.
        Err(e) => {
            return Err(Refusal::new(
                Refused::Unavailable {
                    retry_after_s: Some(1),
                },
                "call_log_unavailable",
                e,
            ))
        }
    }
    let too_many = Refused::TooMany {
        retry_after_s: app.slots.retry_after(),
    };
    app.slots.acquire_new(id, line.limit()).map_err(|refused| match refused {
        NewCallRefused::LineFull { phone, max } => Refusal::new(
            too_many,
            "too_many_calls",
            format!("all {max} calls of phone {phone} are live (its maxConcurrent); nothing was sent to Exotel"),
        ),
        NewCallRefused::InUse => Refusal::new(
            Refused::Conflict,
            "call_log_id_taken",
            format!("callLogId {id} belongs to a call that is live; send a new one or none"),
        ),
        NewCallRefused::Full { max } => Refusal::new(
            too_many,
            "too_many_calls",
            format!("all {max} call slots are in use (MAX_CONCURRENT_CALLS); nothing was sent to Exotel"),
        ),
        NewCallRefused::Unavailable(e) => Refusal::new(
            Refused::Unavailable {
                retry_after_s: Some(1),
            },
            "database_unavailable",
            format!("the shared call slots could not be counted ({e}); nothing was sent to Exotel"),
        ),
    })
}

/// Where Exotel connects the answered call. In stream mode the media token must outlive the
/// ringing: a customer who answers late still gets the call.
fn target(app: &App, line: &Line, id: &CallLogId, ring: Duration) -> Result<CallTarget, Refusal> {
    match &line.app_id {
        Some(app_id) => Ok(CallTarget::Applet {
            app_id: app_id.clone(),
        }),
        None => {
            let lifetime = ring + app.config.call_check_margin;
            app.issue_media_url_for(id, lifetime)
                .map(|stream_url| CallTarget::Stream { stream_url })
        }
    }
}

pub fn outcome_of(result: &Result<PlacedCall, PoolError>) -> ExotelOutcome {
    match result {
        Ok(_) => ExotelOutcome::Placed,
        Err(PoolError::Exotel(ExotelError::Refused { .. })) => ExotelOutcome::Refused,
        Err(PoolError::Exotel(ExotelError::BadAnswer { .. })) => ExotelOutcome::BadAnswer,
        Err(PoolError::Exotel(ExotelError::Unreachable(_))) => ExotelOutcome::Unreachable,
        Err(PoolError::Exotel(ExotelError::TimedOut) | PoolError::NoAnswer) => {
            ExotelOutcome::Timeout
        }
        Err(PoolError::NotSent) => ExotelOutcome::NotSent,
    }
}

/// Exotel's answer, with the slot and row brought along. A placed call's slot is bound to its
/// CallSid, and Exotel is asked about it if no status has come by the end of its ring time
/// plus `CALL_CHECK_MARGIN_S`.
fn settle(
    app: &App,
    line: &Line,
    id: &CallLogId,
    result: Result<PlacedCall, PoolError>,
    ring: Duration,
    took: Duration,
) -> Result<PlacedCall, NotPlaced> {
    let ms = took.as_millis();
    match result {
        Ok(placed) => {
            crate::info!(
                "call.placed",
                callLogId = id,
                callSid = placed.call_sid,
                status = placed.status,
                ms = ms
            );
            placed_call(app, line, id, &placed.call_sid, ring);
            Ok(placed)
        }
        Err(PoolError::Exotel(failure)) => {
            crate::warn!("call.refused", callLogId = id, error = failure, ms = ms);
            app.slots.release(id);
            app.call_log.record(LogEvent::PlaceFailed {
                id: id.clone(),
                error: failure.to_string(),
            });
            Err(NotPlaced::Exotel(failure))
        }
        Err(PoolError::NotSent) => {
            crate::warn!("call.not_sent", callLogId = id, ms = ms);
            app.slots.release(id);
            let detail = format!(
                "every Exotel API thread was busy for {ms} ms; nothing was sent to Exotel, so it is safe to try again with a new callLogId"
            );
            app.call_log.record(LogEvent::PlaceFailed {
                id: id.clone(),
                error: detail.clone(),
            });
            Err(NotPlaced::NotSent { detail })
        }
        Err(PoolError::NoAnswer) => {
            // The call may exist: it keeps its slot until a status callback or the slot timeout.
            crate::warn!("call.no_answer", callLogId = id, ms = ms);
            let detail = format!(
                "Exotel did not answer within {} ms; the call may still have been placed (callLogId {id}), so it was not retried",
                line.account.timeout().as_millis()
            );
            app.call_log.record(LogEvent::PlaceUnknown {
                id: id.clone(),
                error: detail.clone(),
            });
            Err(NotPlaced::NoAnswer { detail })
        }
    }
}

/// A placed call's slot is bound to its CallSid, Exotel is to be asked about it through its
/// line's account if no status has come by the end of its ring time plus
/// `CALL_CHECK_MARGIN_S`, and its row says `initiated`.
pub fn placed_call(app: &App, line: &Line, id: &CallLogId, call_sid: &str, ring: Duration) {
    let _ = app.slots.bind_call_sid(id, call_sid);
    app.slots.check_at(
        id,
        Instant::now() + ring + app.config.call_check_margin,
        &line.account,
    );
    app.call_log.record(LogEvent::Placed {
        id: id.clone(),
        call_sid: call_sid.to_owned(),
    });
}

/// The running server as the campaign dialer's telephone: its lines, slots, do-not-call list,
/// call log and API pool, each call placed as `POST /call` places it.
pub struct ServerTelephony(pub std::sync::Arc<App>);

/// A campaign call with its slot taken and its request made.
pub struct PreparedCall {
    line: Line,
    connect: ConnectCall,
    ring: Duration,
}

impl ServerTelephony {
    /// The campaign's line, or why it has none.
    fn line(&self, from: Option<&str>) -> Result<Line, String> {
        let app = &self.0;
        match from {
            Some(number) => PhoneNumber::parse(number)
                .ok()
                .and_then(|n| app.phones.line(&n))
                .ok_or_else(|| format!("phone {number} is not one of /phones any more")),
            None => app.default_line.clone().map_err(|missing| {
                format!(
                    "placing calls needs {} in the environment or .env",
                    missing.join(", ")
                )
            }),
        }
    }
}

impl Telephony for ServerTelephony {
    type Prepared = PreparedCall;

    fn do_not_call(&self, to: &str) -> bool {
        PhoneNumber::parse(to).is_ok_and(|n| self.0.dnc.contains(&n))
    }

    fn prepare(&self, order: &Order) -> Result<PreparedCall, NotNow> {
        let app = &self.0;
        let line = self.line(order.from.as_deref()).map_err(NotNow::Broken)?;
        let to = PhoneNumber::parse(&order.to).map_err(|e| NotNow::Broken(e.to_string()))?;
        let agent = agent_for(app, order.agent.as_deref(), &line).map_err(NotNow::Broken)?;
        let id = order.call_log_id.clone();
        match app.slots.acquire_new(&id, line.limit()) {
            Ok(()) => {}
            Err(NewCallRefused::Full { max }) => {
                return Err(NotNow::Busy(format!("all {max} call slots are in use")))
            }
            Err(NewCallRefused::LineFull { phone, max }) => {
                return Err(NotNow::Busy(format!("all {max} calls of {phone} are live")))
            }
            Err(NewCallRefused::InUse) => return Err(NotNow::Busy("the id is live".into())),
            Err(NewCallRefused::Unavailable(e)) => {
                return Err(NotNow::Busy(format!("the shared call slots: {e}")))
            }
        }
        let options = CallOptions::default();
        let ring = ring_time(&options);
        let connect = match connect_call(app, &line, to, id.clone(), options, ring) {
            Ok(c) => c,
            Err(_) => {
                app.slots.release(&id);
                return Err(NotNow::Busy("too many media tokens are pending".into()));
            }
        };
        app.plans.put(
            &id,
            Plan {
                params: order.params.clone(),
                campaign: Some(order.campaign.clone()),
                customer: Some(order.to.clone()),
                agent,
            },
        );
        Ok(PreparedCall {
            line,
            connect,
            ring,
        })
    }

    fn send(&self, call: PreparedCall, answered: Box<dyn FnOnce(Dialed) + Send>) {
        let app = self.0.clone();
        requested(&app, &call.line, &call.connect);
        let PreparedCall {
            line,
            connect,
            ring,
        } = call;
        let id = connect.call_log_id.clone();
        let account = line.account.clone();
        let started = Instant::now();
        let on_answer = {
            let (app, id) = (app.clone(), id.clone());
            move |result: Result<PlacedCall, ExotelError>| {
                let result = result.map_err(|e| match e {
                    ExotelError::TimedOut => PoolError::NoAnswer,
                    other => PoolError::Exotel(other),
                });
                app.metrics
                    .exotel_request(outcome_of(&result), started.elapsed());
                answered(dialed(&app, &line, &id, result, ring));
            }
        };
        if app.pool.send(&account, connect, on_answer).is_err() {
            app.slots.release(&id);
            app.plans.take(&id);
            app.call_log.record(LogEvent::PlaceFailed {
                id,
                error: "the Exotel API threads have stopped".into(),
            });
        }
    }

    fn withdraw(&self, call: PreparedCall) {
        let id = &call.connect.call_log_id;
        self.0.slots.release(id);
        self.0.plans.take(id);
    }

    fn ask(&self, from: Option<&str>, call_sid: &str) -> Result<Option<Outcome>, String> {
        let line = self.line(from)?;
        let details = line
            .account
            .call_details(call_sid)
            .map_err(|e| e.to_string())?;
        Ok(crate::calls::log::Status::from_exotel(&details.status)
            .filter(|s| s.is_final())
            .and_then(|s| Outcome::of_call_status(s.as_str())))
    }

    fn draining(&self) -> bool {
        self.0.draining.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// A campaign call's answer from Exotel, with its slot, row and plan brought along as for
/// `POST /call`.
fn dialed(
    app: &App,
    line: &Line,
    id: &CallLogId,
    result: Result<PlacedCall, PoolError>,
    ring: Duration,
) -> Dialed {
    match result {
        Ok(placed) => {
            crate::info!("call.placed", callLogId = id, callSid = placed.call_sid);
            placed_call(app, line, id, &placed.call_sid, ring);
            Dialed::Placed {
                call_sid: placed.call_sid,
            }
        }
        Err(PoolError::Exotel(failure)) => {
            crate::warn!("call.refused", callLogId = id, error = failure);
            app.slots.release(id);
            app.plans.take(id);
            app.call_log.record(LogEvent::PlaceFailed {
                id: id.clone(),
                error: failure.to_string(),
            });
            Dialed::Failed(failure.to_string())
        }
        Err(PoolError::NotSent | PoolError::NoAnswer) => {
            // The call may exist: it keeps its slot until a status callback or the slot timeout.
            let detail = "Exotel did not answer in time; the call may have been placed".to_owned();
            crate::warn!("call.no_answer", callLogId = id);
            app.call_log.record(LogEvent::PlaceUnknown {
                id: id.clone(),
                error: detail.clone(),
            });
            Dialed::Unknown(detail)
        }
    }
}
