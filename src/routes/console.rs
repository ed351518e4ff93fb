//! The operator console's routes: its files under `/ui/` ([`crate::console`]), the browser's
//! sign-in (`/ui/session`), the live view (`GET /live`, from memory) and a call from the
//! browser to an agent (`POST /agents/{name}/web-call`).

use super::Answer;
use crate::app::App;
use crate::calls::log::{Direction, LogEvent};
use crate::calls::{CallLogId, Refusal, Refused};
use crate::console::{secured, sessions::COOKIE};
use crate::http::{Request, Response};

/// `GET /ui`: the console lives at `/ui/`.
pub(super) fn to_console() -> Response {
    secured(
        Response::text(308, "text/plain; charset=utf-8", "/ui/").with_header("Location", "/ui/"),
    )
}

/// `GET /ui/` and `GET /ui/{file}`: the console's files, to anyone a browser may reach it as.
pub(super) fn file(app: &App, request: &Request, name: &str) -> Response {
    if let Err(refused) = crate::auth::host_allowed(&app.config.access, request) {
        return secured(refused);
    }
    crate::console::asset(request, name)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

/// What the page needs to know of its session.
fn session_state(app: &App, csrf: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "signedIn": csrf.is_some() || app.config.access.api_token.is_none(),
        "tokenRequired": app.config.access.api_token.is_some(),
        "csrf": csrf,
    })
}

/// `POST /ui/session {"token"}`: signs a browser in with the `API_TOKEN`; its cookie is
/// `HttpOnly`, `SameSite=Strict`, `Secure` under TLS, and lasts `UI_SESSION_HOURS`.
pub(super) fn sign_in(app: &App, request: &Request) -> Response {
    let answer = || -> Answer {
        let SignIn { token } = super::json_body(request, r#"{"token": "<API_TOKEN>"}"#)?;
        let signed_in = crate::auth::sign_in(&app.config.access, &app.sessions, request, &token)?;
        crate::info!("console.signed_in", peer = request.peer);
        let secure = if over_https(app, request) {
            "; Secure"
        } else {
            ""
        };
        let cookie = format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            signed_in.id,
            signed_in.lasts.as_secs()
        );
        Ok(
            Response::json(200, &session_state(app, Some(&signed_in.csrf)))
                .with_header("Set-Cookie", cookie)
                .with_header("Cache-Control", "no-store"),
        )
    };
    secured(super::answered(answer()))
}

/// Whether the browser reached us over HTTPS: our own TLS, or the public base URL's `https://`
/// host (a proxy in front terminates TLS for it).
fn over_https(app: &App, request: &Request) -> bool {
    let name = |authority: &str| {
        authority
            .split(':')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let public_https = app
        .public_base
        .strip_prefix("https://")
        .map(|rest| name(rest.split('/').next().unwrap_or("")));
    let asked = request.header("host").map(name);
    app.config.tls.is_some() || (public_https.is_some() && public_https == asked)
}

/// `GET /ui/session`: whether this browser is signed in (and its CSRF token when it is), and
/// whether the server needs a sign-in at all.
pub(super) fn session(app: &App, request: &Request) -> Response {
    let csrf = crate::auth::cookie(request, COOKIE).and_then(|id| {
        match app.sessions.presented(id, std::time::Instant::now()) {
            crate::console::sessions::Presented::Valid { csrf } => Some(csrf),
            crate::console::sessions::Presented::Invalid => None,
        }
    });
    let state = session_state(app, csrf.as_deref());
    secured(Response::json(200, &state).with_header("Cache-Control", "no-store"))
}

/// `DELETE /ui/session`: signs this browser out.
pub(super) fn sign_out(app: &App, request: &Request) -> Response {
    if let Some(id) = crate::auth::cookie(request, COOKIE) {
        app.sessions.sign_out(id);
    }
    let expired = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    secured(Response::json(200, &session_state(app, None)).with_header("Set-Cookie", expired))
}

/// `GET /live`: the live calls with their capacity, from memory.
pub(super) fn live(app: &App) -> Response {
    let calls = app.call_log.live().snapshot(|id| app.slots.holds(id));
    let lines = app.slots.lines();
    let phones: Vec<_> = app
        .phones
        .limits()
        .into_iter()
        .map(|(number, max)| {
            let live = lines.get(&number).copied().unwrap_or(0);
            serde_json::json!({ "number": number, "live": live, "max": max })
        })
        .collect();
    let draining = app.draining.load(std::sync::atomic::Ordering::Acquire);
    Response::json(
        200,
        &serde_json::json!({
            "calls": calls,
            "live": app.slots.live(),
            "max": app.slots.max(),
            "phones": phones,
            "health": if draining { "draining" } else { "ok" },
            "now": crate::calls::log::now_ms(),
        }),
    )
    .with_header("Cache-Control", "no-store")
}

/// `POST /agents/{name}/web-call`: a call from a browser to the agent, with the same session,
/// bot and call log as a phone call (direction `web`). Answers the media socket's path: the
/// browser speaks Exotel's stream protocol on it, with `start.call_sid` as given.
pub(super) fn web_call(app: &App, name: &str) -> Answer {
    app.refuse_if_draining()?;
    let agent = app.agents.lookup(name)?;
    let id = CallLogId::generate();
    let connect_by = std::time::Instant::now() + app.registry.ttl();
    if app
        .slots
        .acquire_until_connected(&id, connect_by, None)
        .is_err()
    {
        return Err(Refusal::new(
            Refused::TooMany {
                retry_after_s: app.slots.retry_after(),
            },
            "capacity",
            format!("all {} call slots are taken", app.slots.max()),
        )
        .into());
    }
    let call_sid = format!("web-{id}");
    let _ = app.slots.bind_call_sid(&id, &call_sid);
    app.plans.put(
        &id,
        crate::calls::plans::Plan {
            agent: Some(agent),
            ..Default::default()
        },
    );
    let url = app
        .issue_media_url(&id, false)
        .inspect_err(|_| app.slots.release(&id))?;
    let path = url.find("/media?").map_or(url.as_str(), |at| &url[at..]);
    crate::info!("console.web_call", callLogId = id, agent = name);
    app.call_log.record(LogEvent::Connected {
        id: id.clone(),
        direction: Direction::Web,
        call_sid: call_sid.clone(),
        from: "browser".into(),
        to: String::new(),
    });
    Ok(Response::json(
        201,
        &serde_json::json!({
            "callLogId": id.as_str(),
            "callSid": call_sid,
            "media": path,
            "sampleRate": app.config.sample_rate,
        }),
    )
    .with_header("Location", format!("/calls/{id}")))
}
