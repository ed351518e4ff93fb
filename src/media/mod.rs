//! The media WebSocket: who may open it, the two ways in (the main port's `/media` upgrade and
//! the dedicated listener on `MEDIA_PORT`), and handing the socket to a [`session::Session`].
//!
//! A socket is let in with the per-call token the webhook issued (`token=` in the URL), or with
//! `MEDIA_SECRET` (as `secret=` or as the Basic auth password, which Exotel sends for a URL
//! written `wss://user:pass@host/…`) for an applet configured with a static URL. Anything else is
//! refused at the handshake with 401 and a log line.

pub mod audio;
pub mod engine;
pub mod g711;
pub mod listener;
pub mod looped;
pub mod pump;
pub mod recorder;
pub mod resample;
pub mod session;
pub mod socket;

use crate::app::App;
use crate::bot::hangup::ToneThenHangUp;
use crate::bot::{Bot, BotFactory, CallStart};
use crate::calls::agents::Greeted;
use crate::calls::ids::constant_time_eq;
use crate::calls::log::{LogEvent, MediaCounts, Status};
use crate::calls::{CallLogId, MediaToken};
use crate::config::BotChoice;
use crate::exotel::stream::StartEvent;
use crate::http::{form, OpenConnection, Request, Response};
use crate::websocket::ServerSocket;
use session::{EndReason, Held, MediaStream, Session, SessionContext, SessionStats};
use std::time::Instant;

/// Who a media socket belongs to, decided at the handshake.
#[derive(Debug, Clone)]
pub struct Grant {
    pub call_log_id: CallLogId,
    pub token: Option<MediaToken>,
    /// The URL's query parameters other than `token` and `secret`.
    pub url_parameters: Vec<(String, String)>,
    /// Every slot was taken when the webhook answered: a tone, then a hang-up.
    pub over_capacity: bool,
}

/// Checks a media request's query and `Authorization` header.
pub fn authorize(
    app: &App,
    query: &str,
    authorization: Option<&str>,
) -> Result<Grant, &'static str> {
    let params = form::parse(query);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let url_parameters: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "token" && k != "secret")
        .cloned()
        .collect();
    if let Some(token) = get("token").and_then(MediaToken::parse) {
        let pending = app
            .registry
            .lookup(&token)
            .or_else(|| adopt(app, &token).and_then(|()| app.registry.lookup(&token)));
        if let Some(pending) = pending {
            return Ok(Grant {
                call_log_id: pending.call_log_id,
                token: Some(token),
                url_parameters,
                over_capacity: pending.over_capacity,
            });
        }
    }
    if let Some(secret) = &app.config.media_secret {
        let basic = authorization.and_then(crate::auth::basic_password_of);
        let given = [get("secret").map(str::to_owned), basic];
        if given
            .iter()
            .flatten()
            .any(|g| constant_time_eq(g.as_bytes(), secret.as_bytes()))
        {
            let call_log_id = get("callLogId")
                .and_then(|id| CallLogId::parse(id).ok())
                .unwrap_or_else(CallLogId::generate);
            return Ok(Grant {
                call_log_id,
                token: None,
                url_parameters,
                over_capacity: false,
            });
        }
    }
    if get("token").is_some() {
        Err("the media token is unknown, expired or used up")
    } else {
        Err("no media token, and no valid MEDIA_SECRET")
    }
}

/// On PostgreSQL, a token this instance does not know may be another instance's: taken up
/// here with its call's plan and a slot (the call's lease moves to this instance), so that the
/// media runs here as if this instance had answered the webhook. `None` when it is no
/// instance's, or the database cannot say.
fn adopt(app: &App, token: &MediaToken) -> Option<()> {
    let shared = app.shared.as_ref()?;
    let adopted = match shared.adopt(token.as_str()) {
        Ok(found) => found?,
        Err(e) => {
            crate::warn!("media.adopt_failed", error = e);
            return None;
        }
    };
    let id = CallLogId::parse(&adopted.call_log_id).ok()?;
    let connect_by = std::time::Instant::now() + adopted.ttl_left;
    let over_capacity = adopted.over_capacity
        || app
            .slots
            .acquire_until_connected(&id, connect_by, None)
            .is_err();
    if let Some(plan) = adopted.plan {
        let agent = plan.agent.as_deref().and_then(|name| app.agents.get(name));
        let plan = crate::calls::plans::Plan {
            params: plan.params,
            campaign: plan.campaign,
            customer: plan.customer,
            agent,
        };
        app.plans.put_here(&id, plan);
    }
    app.registry
        .adopt(token, &id, adopted.ttl_left, over_capacity);
    crate::info!("media.adopted", callLogId = id, instance = shared.holder);
    Some(())
}

/// `GET /media` on the main port: answers 101 for a valid WebSocket upgrade; the connection is
/// then handed to [`upgraded`].
pub fn handshake(app: &App, request: &Request) -> Response {
    let header_has = |name: &str, token: &str| {
        request
            .header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let key = request.header("sec-websocket-key");
    if !header_has("upgrade", "websocket") || !header_has("connection", "upgrade") || key.is_none()
    {
        return Response::error(
            400,
            "bad_request",
            "/media is Exotel's media WebSocket: send a WebSocket upgrade",
        );
    }
    if request.header("sec-websocket-version") != Some("13") {
        return Response::error(400, "bad_request", "only WebSocket version 13 is supported")
            .with_header("Sec-WebSocket-Version", "13");
    }
    if let Err(why) = authorize(app, &request.query, request.header("authorization")) {
        crate::warn!("media.refused", peer = request.peer, detail = why);
        return Response::error(401, "unauthorized", why);
    }
    let accept = tungstenite::handshake::derive_accept_key(key.unwrap_or("").as_bytes());
    Response::switching_protocols()
        .with_header("Upgrade", "websocket")
        .with_header("Connection", "Upgrade")
        .with_header("Sec-WebSocket-Accept", accept)
}

/// After the 101: the call's session goes to a media event loop, or runs on this
/// connection's coroutine (see [`serve`]).
pub fn upgraded(
    app: &App,
    request: &Request,
    stream: crate::http::Conn,
    already_read: Vec<u8>,
    open: OpenConnection,
) {
    // Authorized a moment ago in `handshake`; asked again so the grant is not carried through
    // the HTTP layer. A token that expired in between is refused by closing.
    let Ok(grant) = authorize(app, &request.query, request.header("authorization")) else {
        return;
    };
    let ws = session::media_socket(MediaStream::Direct(stream), already_read);
    serve(app, ws, grant, open);
}

/// Where a call's session runs: a plain socket goes to an event loop (`MEDIA_LOOPS`, see
/// [`engine`]; a relayed bot's socket then waits in the same loop) and this returns at once; a
/// TLS socket runs here, on the caller's coroutine, to its end (a relayed bot's socket then
/// gets a pump that wakes it).
pub fn serve(app: &App, mut ws: ServerSocket<MediaStream>, grant: Grant, open: OpenConnection) {
    if app.media_loops.running() {
        match ws.get_mut().to_loop() {
            Ok(true) => {
                app.media_loops.submit(engine::Arrival { ws, grant, open });
                return;
            }
            Ok(false) => {}
            // The session below fails at its first read and writes the call's end.
            Err(e) => crate::error!(
                "media.loop_failed",
                callLogId = grant.call_log_id,
                error = e
            ),
        }
    }
    run(app, ws, grant);
    drop(open);
}

/// Runs one call's session to its end on this coroutine, holding the call's place in the
/// registry meanwhile, and writes its start and end to the call log.
pub fn run(app: &App, ws: ServerSocket<MediaStream>, grant: Grant) {
    let (session, ending) = begin(app, ws, grant);
    let relayed = ending.relayed;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.run()));
    let (reason, stats) = outcome.unwrap_or_else(|_| {
        crate::error!(
            "media.session_panicked",
            callLogId = ending.call.ticket.call_log_id
        );
        (
            EndReason::SocketError("the session panicked".into()),
            SessionStats::default(),
        )
    });
    end(app, ending, &reason, &stats);
    if relayed {
        // The session parked on its coroutine's own park (media::pump): it must not end
        // inside may's Park::subscribe.
        pump::leave_parking();
    }
}

/// What a call's session shares with its hooks: who it is, and the CallSid its stream named
/// (for the Passthru that may follow the stream).
pub struct CallShared {
    grant: Grant,
    ticket: crate::calls::registry::SessionTicket,
    agent: Option<std::sync::Arc<crate::calls::agents::Agent>>,
    /// Who answers the stream ([`answering_bot`]), for the log line and the call's row.
    bot: String,
    stream_call_sid: std::sync::Mutex<Option<String>>,
}

/// What a call's end needs once its session is over.
pub struct Ending {
    call: std::sync::Arc<CallShared>,
    plan: Option<crate::calls::plans::Plan>,
    relayed: bool,
}

/// The server's calls on the media loops: set up and ended as on a coroutine.
impl engine::CallHost for App {
    fn begin(
        &self,
        ws: ServerSocket<MediaStream>,
        grant: Grant,
    ) -> (Session<'_, MediaStream>, Ending) {
        begin(self, ws, grant)
    }

    fn end(&self, ending: Ending, reason: &EndReason, stats: &SessionStats) {
        end(self, ending, reason, stats)
    }

    /// The caller pressed the do-not-call key, and the list is the store's.
    fn end_may_wait(&self, ending: &Ending, stats: &SessionStats) -> bool {
        let campaign_call = ending.plan.as_ref().is_some_and(|p| p.campaign.is_some());
        campaign_call
            && self
                .config
                .campaign_dnc_key
                .is_some_and(|k| stats.dtmf.contains(k))
    }
}

/// Sets a call up: its plan, its slot (for a static `MEDIA_SECRET` URL), its place in the
/// registry, its bot, and a session that reports its start and end.
pub fn begin(
    app: &App,
    mut ws: ServerSocket<MediaStream>,
    mut grant: Grant,
) -> (Session<'_, MediaStream>, Ending) {
    ws.get_ref().set_options();
    // The call's plan: its agent (else BOT), its contact's parameters, its campaign.
    let plan = app.plans.take(&grant.call_log_id);
    let agent = plan.as_ref().and_then(|p| p.agent.clone());
    let relay = relay_for(app, agent.as_deref()).map(|r| std::sync::Arc::new(r.clone()));
    let relayed = relay.is_some();
    if relayed {
        pump_for_relay(&mut ws, &grant.call_log_id);
    }
    // A static MEDIA_SECRET URL has no webhook before it: the call takes its slot here.
    if grant.token.is_none() && app.slots.acquire(&grant.call_log_id).is_err() {
        grant.over_capacity = true;
    }
    let ticket = app
        .registry
        .begin_session(&grant.call_log_id, grant.token.as_ref());
    let runs_on = match ws.get_ref() {
        MediaStream::Looped(_) => "loop",
        _ => "coroutine",
    };
    let bot = answering_bot(agent.as_deref(), relay.as_deref(), grant.over_capacity);
    crate::info!(
        "media.connected",
        callLogId = grant.call_log_id,
        agent = agent.as_deref().map_or("", |a| a.name.as_str()),
        bot = bot,
        runsOn = runs_on
    );
    let bots = match bots_for(app, agent.clone(), grant.over_capacity) {
        Some(own) => Held::Given(own),
        None => Held::Lent(&*app.bots),
    };
    let url_parameters = grant.url_parameters.clone();
    let contact_parameters = plan.as_ref().map(|p| p.params.clone()).unwrap_or_default();
    let call = std::sync::Arc::new(CallShared {
        grant,
        ticket,
        agent,
        bot,
        stream_call_sid: std::sync::Mutex::new(None),
    });
    let for_start = call.clone();
    let on_start = move |id: &CallLogId, start: &StartEvent| started(app, &for_start, id, start);
    let on_end = tell_passthru(app, call.clone());
    let session = Session::new(
        ws,
        call.grant.call_log_id.clone(),
        SessionContext {
            bots,
            on_start: Held::Given(Box::new(on_start)),
            settings: &app.media_settings,
            metrics: &app.metrics,
            recorder: app.recorder.as_ref(),
            relay,
        },
        url_parameters,
        call.ticket.stop.clone(),
        Instant::now(),
    )
    .with_contact_parameters(contact_parameters)
    .with_on_end(Held::Given(Box::new(on_end)))
    .with_on_transcript(Held::Given(Box::new(keep_transcript(
        app,
        call.grant.call_log_id.clone(),
    ))));
    let ending = Ending {
        call,
        plan,
        relayed,
    };
    (session, ending)
}

/// Which bot answers a call, for its log line: an agent (the request's, else its phone's)
/// wins over `BOT`, which is easy to miss when a relay seems not to answer.
fn answering_bot(
    agent: Option<&crate::calls::agents::Agent>,
    relay: Option<&crate::config::RelayConfig>,
    over_capacity: bool,
) -> String {
    let kind = match relay.map(|r| &r.protocol) {
        None => "echo",
        Some(crate::config::BotProtocol::Realtime(_)) => "realtime",
        Some(_) => "relay",
    };
    match agent {
        _ if over_capacity => "capacity-tone".into(),
        Some(agent) => format!("agent:{}/{kind}", agent.name),
        None if relay.is_some() => format!("BOT={kind}"),
        None => "server-bot".into(),
    }
}

/// Keeps a call's transcript turns in the call log, in order.
fn keep_transcript(app: &App, id: CallLogId) -> impl Fn(crate::bot::Speaker, String) + Sync + '_ {
    move |speaker, text| {
        app.call_log.record(LogEvent::Transcript {
            id: id.clone(),
            speaker,
            text,
        })
    }
}

/// On a coroutine, the relayed bot's frames must wake the session too: Exotel's socket gets a
/// pump. (A looped socket stays as it is: both sockets wait in the loop.) A pump that cannot
/// start is logged: the call still works, and hears its bot at its next turn (within 200 ms)
/// instead of at once.
fn pump_for_relay(ws: &mut ServerSocket<MediaStream>, call_log_id: &CallLogId) {
    if let Err(e) = ws.get_mut().start_pump() {
        crate::error!("media.pump_failed", callLogId = call_log_id, error = e);
    }
}

/// The session's last word before its socket closes, since Exotel's Passthru may come as soon
/// as it has: how the stream ended and whether the caller goes to a person. A stream that
/// another socket replaced, or that named another CallSid, says nothing.
fn tell_passthru(
    app: &App,
    call: std::sync::Arc<CallShared>,
) -> impl Fn(&EndReason, Option<&str>) + '_ {
    move |reason: &EndReason, asked: Option<&str>| {
        if matches!(reason, EndReason::Replaced | EndReason::CallSidMismatch(_)) {
            return;
        }
        let handoff = handoff_of(call.agent.as_deref(), reason, asked.map(str::to_owned));
        let call_sid = call
            .stream_call_sid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        ended_for_passthru(app, &call.grant.call_log_id, call_sid.as_deref(), handoff);
    }
}

/// The stream's `start`: binds its CallSid to the call's token and slot, and writes
/// `in-progress`. An `Err` refuses the stream.
fn started(app: &App, call: &CallShared, id: &CallLogId, start: &StartEvent) -> Result<(), String> {
    if let Err(bound) = app.registry.bind_call_sid(&call.ticket, &start.call_sid) {
        return Err(format!("this media token belongs to CallSid {bound}"));
    }
    *call
        .stream_call_sid
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(start.call_sid.clone());
    let over_capacity = call.grant.over_capacity;
    // The stream's CallSid against the one the webhook or /call bound the slot to: only
    // noted. The token already proves the stream is this call's, and a stream naming its
    // leg rather than its call must not cost the caller the call.
    if !start.call_sid.is_empty() && !over_capacity {
        if let Err(other) = app.slots.bind_call_sid(id, &start.call_sid) {
            crate::warn!(
                "media.call_sid_differs",
                callLogId = id,
                callSid = start.call_sid,
                boundCallSid = other.live,
                detail = "the stream's start names another CallSid than the webhook did; going on"
            );
        }
    }
    if !over_capacity {
        app.slots.connected(id);
    }
    app.call_log.record(LogEvent::MediaStarted {
        id: id.clone(),
        stream_sid: start.stream_sid.clone(),
        call_sid: start.call_sid.clone(),
        from: start.from.clone(),
        to: start.to.clone(),
        recording_path: app
            .recorder
            .as_ref()
            .map(|r| r.path_for(id).display().to_string()),
        agent: call.agent.as_ref().map(|a| a.name.clone()),
        bot: call.bot.clone(),
    });
    Ok(())
}

/// After the session: the call's final row, its slot, its place in the registry, and the
/// do-not-call key.
pub fn end(app: &App, ending: Ending, reason: &EndReason, stats: &SessionStats) {
    let call = &ending.call;
    let id = &call.ticket.call_log_id;
    let status = end_status(reason, call.grant.over_capacity, stats);
    if let Some(plan) = &ending.plan {
        do_not_call_key(app, id, plan, &stats.dtmf);
    }
    app.call_log.record(LogEvent::MediaEnded {
        id: id.clone(),
        status,
        reason: reason.as_str().to_owned(),
        counts: MediaCounts {
            frames_in: stats.frames_in,
            bytes_in: stats.bytes_in,
            frames_out: stats.frames_out,
            bytes_out: stats.bytes_out,
            dtmf: stats.dtmf.clone(),
            error: stats.bot_error.clone(),
        },
    });
    if status.is_some() {
        app.slots.release(id);
    }
    app.registry.end_session(&call.ticket);
}

/// The relayed bot of a call: its agent's, else `BOT=relay`'s; `None` for an in-process bot.
fn relay_for<'a>(
    app: &'a App,
    agent: Option<&'a crate::calls::agents::Agent>,
) -> Option<&'a crate::config::RelayConfig> {
    match agent.map(|a| &a.bot) {
        Some(bot) => bot.relay(),
        None => match &app.config.bot {
            BotChoice::Relay(relay) => Some(relay),
            BotChoice::Echo => None,
        },
    }
}

/// The bots of a call that does not get the server's own (`App::bots`): a tone and a hang-up
/// over capacity, or its agent's echo bot with its greeting.
fn bots_for(
    app: &App,
    agent: Option<std::sync::Arc<crate::calls::agents::Agent>>,
    over_capacity: bool,
) -> Option<Box<dyn BotFactory>> {
    if over_capacity {
        let capacity = |_: &CallStart<'_>| -> Box<dyn Bot> { Box::new(ToneThenHangUp::capacity()) };
        return Some(Box::new(capacity));
    }
    let agent = agent?;
    let delay = app.config.echo_delay_ms;
    Some(Box::new(move |_: &CallStart<'_>| -> Box<dyn Bot> {
        let echo = Box::new(crate::bot::echo::EchoBot::new(delay));
        if agent.greeting.is_some() {
            Box::new(Greeted {
                inner: echo,
                greeting: agent.clone(),
            })
        } else {
            echo
        }
    }))
}

/// The call's status when its session ends. A replaced session hands the call to its
/// successor: counts only, the call goes on. A call ended by the shutdown is complete from our
/// side (end reason server-shutdown).
fn end_status(reason: &EndReason, over_capacity: bool, stats: &SessionStats) -> Option<Status> {
    let started = stats.started;
    match (reason, over_capacity) {
        (EndReason::Replaced | EndReason::CallSidMismatch(_), _) => None,
        (_, true) => Some(Status::RejectedCapacity),
        (EndReason::BotUnavailable, false) => Some(Status::BotUnavailable),
        // The caller hung up during the outage's tone: the outage is still what happened.
        (_, false) if stats.bot_unavailable => Some(Status::BotUnavailable),
        // A stream that never started was never a conversation, whatever ended it.
        (_, false) if !started => Some(Status::Failed),
        (_, false) => Some(Status::Completed),
    }
}

/// Whether the caller goes to a person: what the session said (the bot, the key, a failed
/// bot), as the call's agent allows: `never` hands no one off, `always` hands off whoever the
/// bot let go (a caller who hung up is gone either way).
fn handoff_of(
    agent: Option<&crate::calls::agents::Agent>,
    reason: &EndReason,
    asked: Option<String>,
) -> Option<String> {
    use crate::calls::agents::HandoffPolicy;
    match agent.map(|a| a.handoff) {
        Some(HandoffPolicy::Never) => None,
        Some(HandoffPolicy::Always) => match reason {
            EndReason::Stopped(_) | EndReason::ClosedByPeer | EndReason::SocketError(_) => asked,
            _ => asked.or_else(|| Some("agent".into())),
        },
        Some(HandoffPolicy::Bot) | None => asked,
    }
}

/// Keeps how the stream ended for the Passthru after it, and logs and counts a handoff.
fn ended_for_passthru(app: &App, id: &CallLogId, call_sid: Option<&str>, handoff: Option<String>) {
    if let Some(reason) = &handoff {
        let source = crate::calls::handoffs::HandoffSource::of_reason(reason);
        crate::info!(
            "call.handoff",
            callLogId = id,
            reason = reason,
            source = source.as_str()
        );
        app.metrics.handoff(source);
        app.call_log.record(LogEvent::Handoff {
            id: id.clone(),
            reason: reason.clone(),
        });
    }
    app.handoffs.stream_ended(id, call_sid, handoff);
}

/// A campaign call whose caller pressed `CAMPAIGN_DNC_KEY`: their number goes on the
/// do-not-call list, and the call's row says so.
fn do_not_call_key(app: &App, id: &CallLogId, plan: &crate::calls::plans::Plan, dtmf: &str) {
    let (Some(key), Some(campaign), Some(customer)) =
        (app.config.campaign_dnc_key, &plan.campaign, &plan.customer)
    else {
        return;
    };
    if !dtmf.contains(key) {
        return;
    }
    let Ok(number) = crate::calls::PhoneNumber::parse(customer) else {
        return;
    };
    match app.dnc.add_number(&number) {
        Ok(_) => {
            crate::info!(
                "campaign.do_not_call",
                callLogId = id,
                campaign = campaign,
                key = key.to_string(),
                detail = "the caller pressed the do-not-call key; their number is on the list"
            );
            app.call_log.record(LogEvent::DoNotCall { id: id.clone() });
        }
        Err(e) => crate::error!("campaign.do_not_call_failed", callLogId = id, error = e),
    }
}
