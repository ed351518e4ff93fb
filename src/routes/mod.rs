//! The dispatcher: every route of the server in one `match` over method and path
//! (docs/ARCHITECTURE.md §3). Read it top to bottom to know what the server answers. The
//! handlers sit beside it, a file per resource: each reads its request, asks the module that
//! owns the data (which knows nothing of HTTP and says no with a [`Refusal`]) and writes the
//! answer.

mod agents;
mod call;
mod calls;
mod campaigns;
mod dnc;
mod passthru;
mod phones;
mod probes;
mod webhooks;

use crate::app::App;
use crate::calls::{Refusal, Refused};
use crate::http::{Request, Response, Service};

/// A handler's answer: its response, or the refusal it became (both are answered as they are;
/// the split lets `?` carry a [`Refusal`] out of a handler).
type Answer = Result<Response, Response>;

impl From<Refusal> for Response {
    /// A refusal as HTTP: its kind chooses the status, its code and detail make the
    /// `{"error", "detail"}` body, and a known wait is `Retry-After`.
    fn from(refusal: Refusal) -> Response {
        let (status, retry_after_s) = match refusal.kind {
            Refused::Invalid => (400, None),
            Refused::Forbidden => (403, None),
            Refused::NotFound => (404, None),
            Refused::Conflict => (409, None),
            Refused::TooMany { retry_after_s } => (429, Some(retry_after_s)),
            Refused::Unavailable { retry_after_s } => (503, retry_after_s),
        };
        let response = Response::error(status, refusal.code, refusal.detail);
        match retry_after_s {
            Some(s) => response.with_header("Retry-After", s.to_string()),
            None => response,
        }
    }
}

/// A JSON body read into `T`; refused as `the body must be {shape}: {why}`.
fn json_body<T: serde::de::DeserializeOwned>(request: &Request, shape: &str) -> Result<T, Refusal> {
    serde_json::from_slice(&request.body)
        .map_err(|e| Refusal::invalid(format!("the body must be {shape}: {e}")))
}

/// The HTTP server's service is the app; this file, which knows every route, wires it in, so
/// that the app's state does not import the handlers that use it.
impl Service for App {
    fn call(&self, request: &Request) -> Response {
        dispatch(self, request)
    }

    fn admit(&self, head: &Request) -> Result<(), Response> {
        admit(self, head)
    }

    fn upgrade(
        &self,
        request: &Request,
        stream: crate::http::Conn,
        already_read: Vec<u8>,
        open: crate::http::OpenConnection,
    ) {
        crate::media::upgraded(self, request, stream, already_read, open);
    }
}

pub fn dispatch(app: &App, request: &Request) -> Response {
    if let Err(denied) = admit(app, request) {
        return denied;
    }
    match (request.method.as_str(), request.path.as_str()) {
        // The user asks us to dial a customer.
        ("POST", "/call") => call::place_call(app, request),
        (_, "/call") => method_not_allowed("POST"),

        // The do-not-call list.
        ("POST", "/dnc") => answered(dnc::add(&app.dnc, request)),
        ("GET", "/dnc") => answered(dnc::list(&app.dnc)),
        ("DELETE", path) if path.starts_with("/dnc/") => {
            answered(dnc::remove(&app.dnc, &path["/dnc/".len()..]))
        }
        (_, "/dnc") => method_not_allowed("GET, POST"),
        (_, path) if path.starts_with("/dnc/") => method_not_allowed("DELETE"),

        // ExoPhones with their own Exotel accounts.
        ("POST", "/phones") => answered(phones::create(&app.phones, request)),
        ("GET", "/phones") => answered(phones::list(&app.phones)),
        (method, path) if path.starts_with("/phones/") => {
            let number = &path["/phones/".len()..];
            match method {
                "GET" => answered(phones::show(&app.phones, number)),
                "PATCH" => answered(phones::update(&app.phones, number, request)),
                "DELETE" => answered(phones::remove(&app.phones, number)),
                _ => method_not_allowed("GET, PATCH, DELETE"),
            }
        }
        (_, "/phones") => method_not_allowed("GET, POST"),

        // Campaigns: many calls from a list, within a window, a rate and a retry policy.
        ("POST", "/campaigns") => answered(campaigns::create(app, request)),
        ("GET", "/campaigns") => answered(campaigns::list(app)),
        (_, "/campaigns") => method_not_allowed("GET, POST"),
        (method, path) if path.starts_with("/campaigns/") => {
            campaign_route(app, request, method, &path["/campaigns/".len()..])
        }

        // Agents: named bot configurations, with a greeting.
        ("POST", "/agents") => answered(agents::create(&app.agents, request)),
        ("GET", "/agents") => answered(agents::list(&app.agents)),
        (_, "/agents") => method_not_allowed("GET, POST"),
        (method, path) if path.starts_with("/agents/") => {
            agent_route(app, request, method, &path["/agents/".len()..])
        }

        // The call log.
        ("GET", "/calls") => answered(calls::list(&app.call_log, request)),
        ("GET", path) if path.starts_with("/calls/") => {
            let rest = &path["/calls/".len()..];
            match rest.split_once('/') {
                None => answered(calls::get(&app.call_log, rest)),
                Some((id, "transcript")) => answered(calls::transcript(&app.call_log, id)),
                Some(_) => Response::error(404, "not_found", format!("no route for {path}")),
            }
        }
        (_, "/calls") => method_not_allowed("GET"),
        (_, path) if path.starts_with("/calls/") => method_not_allowed("GET"),

        // Exotel asks where to stream a call's audio (both paths of the original server).
        ("GET" | "POST", "/voicebot/connect" | "/api/v1/exotel/voice/connect") => {
            webhooks::connect(app, request)
        }
        (_, "/voicebot/connect" | "/api/v1/exotel/voice/connect") => {
            method_not_allowed("GET, POST")
        }

        // Exotel tells us how a call we placed is going (the StatusCallback of /call).
        ("GET" | "POST", "/api/v1/exotel/status") => webhooks::status(app, request),
        (_, "/api/v1/exotel/status") => method_not_allowed("GET, POST"),

        // Exotel's Passthru applet: after the bot, hand the caller to a person or not.
        ("GET" | "POST", "/api/v1/exotel/passthru") => passthru::answer_passthru(app, request),
        (_, "/api/v1/exotel/passthru") => method_not_allowed("GET, POST"),

        // Exotel's media WebSocket (also on MEDIA_PORT, any path, when set).
        ("GET", "/media") => crate::media::handshake(app, request),
        (_, "/media") => method_not_allowed("GET"),

        // Prometheus.
        ("GET", "/metrics") => probes::metrics(app),
        (_, "/metrics") => method_not_allowed("GET"),

        // Probes.
        ("GET" | "HEAD", "/health") => probes::health(app),
        (_, "/health") => method_not_allowed("GET, HEAD"),

        (_, path) => Response::error(404, "not_found", format!("no route for {path}")),
    }
}

/// Who may ask a path: the one table of guards (auth owns the checks themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// The operator's own routes: `API_TOKEN`, else loopback clients only.
    User,
    /// Exotel's webhooks: `WEBHOOK_SECRET` when one is set.
    Exotel,
    /// `METRICS_TOKEN` when one is set.
    Metrics,
    /// The media socket (its token is in its URL), the probes, and paths with no route.
    Open,
}

fn guard_of(path: &str) -> Guard {
    let under = |root: &str| {
        path.strip_prefix(root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if path == "/call"
        || ["/dnc", "/phones", "/campaigns", "/agents", "/calls"]
            .iter()
            .any(|r| under(r))
    {
        return Guard::User;
    }
    match path {
        "/voicebot/connect"
        | "/api/v1/exotel/voice/connect"
        | "/api/v1/exotel/status"
        | "/api/v1/exotel/passthru" => Guard::Exotel,
        "/metrics" => Guard::Metrics,
        _ => Guard::Open,
    }
}

/// Whether a request may be answered, from its head alone: asked by the HTTP layer before a
/// body is read (so a stranger's upload is refused unread), and by [`dispatch`] for every
/// request, before its route. A guarded path's refusal comes before its 404 or 405.
pub fn admit(app: &App, head: &Request) -> Result<(), Response> {
    match guard_of(&head.path) {
        Guard::User => crate::auth::user(&app.config.access, head),
        Guard::Exotel => crate::auth::exotel(
            &app.config.access,
            head,
            &crate::http::Params::from_query(&head.query),
        ),
        Guard::Metrics => crate::auth::metrics(&app.config.access, head),
        Guard::Open => Ok(()),
    }
}

/// `/agents/{name}` and `/agents/{name}/greeting`.
fn agent_route(app: &App, request: &Request, method: &str, rest: &str) -> Response {
    let agents = &app.agents;
    match (method, rest.split_once('/')) {
        ("GET", None) => answered(agents::show(agents, rest)),
        ("PATCH", None) => answered(agents::update(agents, rest, request)),
        ("DELETE", None) => answered(agents::remove(agents, rest)),
        (_, None) => method_not_allowed("GET, PATCH, DELETE"),
        ("PUT", Some((name, "greeting"))) => answered(agents::put_greeting(agents, name, request)),
        ("DELETE", Some((name, "greeting"))) => answered(agents::delete_greeting(agents, name)),
        (_, Some((_, "greeting"))) => method_not_allowed("PUT, DELETE"),
        _ => Response::error(404, "not_found", format!("no route for {}", request.path)),
    }
}

/// `/campaigns/{id}`, `/campaigns/{id}/calls`, `/campaigns/{id}/calls.csv` and
/// `/campaigns/{id}/pause|resume|cancel`.
fn campaign_route(app: &App, request: &Request, method: &str, rest: &str) -> Response {
    let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
    match (method, tail) {
        ("GET", "") => answered(campaigns::show(app, id)),
        ("GET", "calls") => answered(campaigns::calls(app, id, request)),
        ("GET", "calls.csv") => answered(campaigns::calls_csv(app, id)),
        ("POST", "pause" | "resume" | "cancel") => answered(campaigns::control(app, id, tail)),
        (_, "" | "calls" | "calls.csv") => method_not_allowed("GET"),
        (_, "pause" | "resume" | "cancel") => method_not_allowed("POST"),
        _ => Response::error(404, "not_found", format!("no route for {}", request.path)),
    }
}

fn method_not_allowed(allow: &'static str) -> Response {
    Response::error(
        405,
        "method_not_allowed",
        format!("this path accepts {allow}"),
    )
    .with_header("Allow", allow)
}

/// A handler's answer, whichever way it went.
fn answered(answer: Answer) -> Response {
    answer.unwrap_or_else(|refused| refused)
}
