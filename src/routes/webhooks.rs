//! Exotel's webhooks about calls. The connect webhook (`GET|POST /voicebot/connect`,
//! `/api/v1/exotel/voice/connect`): Exotel asks where to stream the call, and we answer
//! `{"url": "wss://…/media?…"}` with a fresh media token for the call (docs/exotel.md §2); GET
//! or POST, every parameter but `CallSid` optional and logged. The status callback
//! (`/api/v1/exotel/status`): how a call we placed is going (docs/exotel.md §4).

use crate::app::App;
use crate::calls::log::{Direction, LogEvent, Status};
use crate::calls::phones::Line;
use crate::calls::CallLogId;
use crate::exotel::webhook::ConnectWebhook;
use crate::http::{Params, Request, Response};

#[derive(serde::Serialize)]
struct StreamUrl {
    url: String,
}

/// The connect webhook, timed for `exotel_voicebot_webhook_seconds`.
pub(super) fn connect(app: &App, request: &Request) -> Response {
    let started = std::time::Instant::now();
    let response = where_to_stream(app, request);
    app.metrics.webhook_latency.observe(started.elapsed());
    response
}

fn where_to_stream(app: &App, request: &Request) -> Response {
    let params = match exotel_params(request) {
        Ok(params) => params,
        Err(refused) => return refused,
    };
    let hook = match ConnectWebhook::from_params(&params) {
        Ok(hook) => hook,
        Err(why) => return Response::error(400, "bad_request", why),
    };
    let call_log_id = call_log_id_of(&hook);
    // While draining, a call we placed (it holds its slot, ringing) is still ours: its webhook
    // is answered within the grace period. Only new calls are refused.
    if !app.slots.holds(&call_log_id) {
        if let Err(draining) = app.refuse_if_draining() {
            return draining.into();
        }
    }
    let direction = direction_of(app, &hook, &call_log_id);
    let line = inbound_line(app, direction, &hook);
    let over_capacity = match take_slot(app, &hook, &call_log_id, line.as_ref()) {
        Ok(over_capacity) => over_capacity,
        Err(refused) => return refused,
    };
    give_phone_agent(app, &call_log_id, line.as_ref());
    let url = match app.issue_media_url(&call_log_id, over_capacity) {
        Ok(url) => url,
        Err(busy) => return busy.into(),
    };
    crate::info!(
        "webhook.connect",
        callLogId = call_log_id,
        callSid = hook.call_sid,
        direction = hook.direction.as_deref().unwrap_or("unknown"),
        from = hook.call_from.as_deref().unwrap_or(""),
        to = hook.call_to.as_deref().unwrap_or(""),
        phone = line.as_ref().and_then(|l| l.phone.as_deref()).unwrap_or(""),
        method = request.method
    );
    app.call_log.record(LogEvent::Connected {
        id: call_log_id,
        direction,
        call_sid: hook.call_sid,
        from: hook.call_from.unwrap_or_default(),
        to: hook.call_to.unwrap_or_default(),
    });
    Response::json(200, &StreamUrl { url })
}

/// Our own calls carry their callLogId as CustomField; inbound calls get a fresh one. A
/// CustomField we could not have sent (set in Exotel's dashboard, say) is kept in the log but
/// does not become an id.
fn call_log_id_of(hook: &ConnectWebhook) -> CallLogId {
    match hook.custom_field.as_deref().map(CallLogId::parse) {
        Some(Ok(id)) => id,
        Some(Err(why)) => {
            let id = CallLogId::generate();
            crate::warn!(
                "webhook.foreign_custom_field",
                callLogId = id,
                callSid = hook.call_sid,
                customField = hook.custom_field.as_deref().unwrap_or(""),
                why = why
            );
            id
        }
        None => CallLogId::generate(),
    }
}

/// A call placed through /call already holds its slot (outbound); otherwise Exotel's
/// `Direction` says, inbound when it says nothing.
fn direction_of(app: &App, hook: &ConnectWebhook, call_log_id: &CallLogId) -> Direction {
    if app.slots.holds(call_log_id) {
        return Direction::Outbound;
    }
    match hook.direction.as_deref() {
        Some(d) if d.starts_with("outbound") => Direction::Outbound,
        _ => Direction::Inbound,
    }
}

/// The phone of /phones an inbound call came to, if any: its limit counts too.
fn inbound_line(app: &App, direction: Direction, hook: &ConnectWebhook) -> Option<Line> {
    match direction {
        Direction::Inbound => hook
            .call_to
            .as_deref()
            .and_then(|to| crate::calls::PhoneNumber::parse(to).ok())
            .and_then(|to| app.phones.line(&to)),
        Direction::Outbound | Direction::Web => None,
    }
}

/// Takes the call's slot (kept until its media connects, or its token expires) and binds it
/// to the CallSid; answers whether the call is over capacity, or the 409 for a call that is
/// live under another CallSid: a stranger who knows a callLogId must not get its media token.
/// (Taking the slot leaves a slot already held as it was, so the binding sees the live call's
/// CallSid.)
fn take_slot(
    app: &App,
    hook: &ConnectWebhook,
    call_log_id: &CallLogId,
    line: Option<&Line>,
) -> Result<bool, Response> {
    let connect_by = std::time::Instant::now() + app.registry.ttl();
    let over_capacity = match app.slots.acquire_until_connected(
        call_log_id,
        connect_by,
        line.and_then(|l| l.limit()),
    ) {
        Ok(()) => false,
        // PostgreSQL down: no slot can be counted, so none is given (docs/GUIDE.md).
        Err(crate::calls::slots::NewCallRefused::Unavailable(e)) => {
            crate::warn!(
                "webhook.database_unavailable",
                callLogId = call_log_id,
                error = e
            );
            return Err(Response::error(
                503,
                "database_unavailable",
                "the shared call slots could not be counted; try again",
            )
            .with_header("Retry-After", "1"));
        }
        Err(_) => true,
    };
    if let Err(other) = app.slots.bind_call_sid(call_log_id, &hook.call_sid) {
        return Err(refuse_other_call_sid(
            app,
            call_log_id,
            &hook.call_sid,
            &other.live,
        ));
    }
    if over_capacity {
        crate::warn!(
            "webhook.over_capacity",
            callLogId = call_log_id,
            callSid = hook.call_sid,
            max = app.slots.max(),
            phone = line.and_then(|l| l.phone.as_deref()).unwrap_or("")
        );
    }
    Ok(over_capacity)
}

/// An inbound call to a phone with an agent gets that agent.
fn give_phone_agent(app: &App, call_log_id: &CallLogId, line: Option<&Line>) {
    if let Some(agent) = line
        .and_then(|l| l.agent.as_deref())
        .and_then(|name| app.agents.get(name))
    {
        app.plans.put(
            call_log_id,
            crate::calls::plans::Plan {
                agent: Some(agent),
                ..Default::default()
            },
        );
    }
}

/// 409 for a request about a callLogId that is live under another CallSid (counted, logged).
fn refuse_other_call_sid(app: &App, id: &CallLogId, given: &str, live: &str) -> Response {
    app.metrics
        .requests_refused
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    crate::warn!(
        "webhook.call_sid_mismatch",
        callLogId = id,
        callSid = given,
        liveCallSid = live
    );
    Response::error(
        409,
        "call_sid_mismatch",
        format!(
            "callLogId {id} is live under another CallSid; this request is not about that call"
        ),
    )
}

/// Exotel's parameters from the query and the body (`WEBHOOK_SECRET` was checked by the
/// router).
fn exotel_params(request: &Request) -> Result<Params, Response> {
    let mut params = Params::from_query(&request.query);
    params.add_body(request)?;
    Ok(params)
}

/// `/api/v1/exotel/status`: Exotel's status callback (docs/exotel.md §4), form or JSON,
/// matched by `CustomField`, else `CallSid`. Repeats and late arrivals change nothing (the call
/// log never moves a status backwards). Answers 200 even for a call it does not know, so Exotel
/// does not retry.
pub(super) fn status(app: &App, request: &Request) -> Response {
    let params = match exotel_params(request) {
        Ok(params) => params,
        Err(refused) => return refused,
    };
    let get = |name: &str| params.get_non_empty(name).map(str::to_owned);
    let custom_field = get("CustomField");
    let call_sid = get("CallSid");
    if custom_field.is_none() && call_sid.is_none() {
        return Response::error(
            400,
            "bad_request",
            "neither CustomField nor CallSid was sent",
        );
    }
    // A live call's callback must carry the CallSid Exotel gave it: a made-up callback must not
    // end a live call or free its slot.
    let live_id = custom_field
        .as_deref()
        .and_then(|f| CallLogId::parse(f).ok());
    if let Some(id) = &live_id {
        if let Some(bound) = app.slots.call_sid(id) {
            if call_sid.as_deref() != Some(bound.as_str()) {
                return refuse_other_call_sid(app, id, call_sid.as_deref().unwrap_or(""), &bound);
            }
        }
    }
    let status_text = get("Status").or_else(|| get("CallStatus"));
    let status = status_text.as_deref().and_then(Status::from_exotel);
    let duration_s = get("ConversationDuration")
        .or_else(|| get("Duration"))
        .and_then(|d| d.parse::<u64>().ok());
    crate::info!(
        "webhook.status",
        callLogId = custom_field.as_deref().unwrap_or(""),
        callSid = call_sid.as_deref().unwrap_or(""),
        status = status_text.as_deref().unwrap_or(""),
        event = get("EventType").unwrap_or_default()
    );
    if let (
        Some(
            Status::Completed | Status::Failed | Status::Busy | Status::NoAnswer | Status::Canceled,
        ),
        Some(id),
    ) = (status, &live_id)
    {
        app.slots.release(id);
    }
    app.call_log.record(LogEvent::ExotelStatus {
        custom_field,
        call_sid,
        status,
        duration_s,
        recording_url: get("RecordingUrl")
            .filter(|url| crate::exotel::passthru::is_recording_url(url)),
    });
    Response::json(200, &serde_json::json!({"ok": true}))
}
