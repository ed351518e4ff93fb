//! The dispatcher: every route of the server in one `match` over method and path (docs/ARCHITECTURE.md §3).
//! Read it top to bottom to know what the server answers. Handlers live with the data they own;
//! this file only chooses one.

use crate::app::App;
use crate::http::{Request, Response, Service};

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
    match (request.method.as_str(), request.path.as_str()) {
        // The user asks us to dial a customer.
        ("POST", "/call") => crate::calls::place::handle(app, request),
        (_, "/call") => method_not_allowed("POST"),

        // The do-not-call list.
        ("POST", "/dnc") => guarded(app, request, |app| app.dnc.add(request)),
        ("GET", "/dnc") => guarded(app, request, |app| app.dnc.list()),
        ("DELETE", path) if path.starts_with("/dnc/") => {
            guarded(app, request, |app| app.dnc.remove(&path["/dnc/".len()..]))
        }
        (_, "/dnc") => method_not_allowed("GET, POST"),
        (_, path) if path.starts_with("/dnc/") => method_not_allowed("DELETE"),

        // ExoPhones with their own Exotel accounts.
        ("POST", "/phones") => guarded(app, request, |app| app.phones.create(request)),
        ("GET", "/phones") => guarded(app, request, |app| app.phones.list()),
        (method, path) if path.starts_with("/phones/") => {
            let number = &path["/phones/".len()..];
            match method {
                "GET" => guarded(app, request, |app| app.phones.show(number)),
                "PATCH" => guarded(app, request, |app| app.phones.update(number, request)),
                "DELETE" => guarded(app, request, |app| app.phones.remove(number)),
                _ => method_not_allowed("GET, PATCH, DELETE"),
            }
        }
        (_, "/phones") => method_not_allowed("GET, POST"),

        // Campaigns: many calls from a list, within a window, a rate and a retry policy.
        ("POST", "/campaigns") => guarded(app, request, |app| {
            app.campaigns.create(
                request,
                |number| {
                    crate::calls::PhoneNumber::parse(number)
                        .is_ok_and(|n| app.phones.line(&n).is_some())
                },
                |agent| app.agents.get(agent).is_some(),
            )
        }),
        ("GET", "/campaigns") => guarded(app, request, |app| app.campaigns.list()),
        (_, "/campaigns") => method_not_allowed("GET, POST"),
        (method, path) if path.starts_with("/campaigns/") => {
            campaign_route(app, request, method, &path["/campaigns/".len()..])
        }

        // Agents: named bot configurations, with a greeting.
        ("POST", "/agents") => guarded(app, request, |app| app.agents.create(request)),
        ("GET", "/agents") => guarded(app, request, |app| app.agents.list()),
        (_, "/agents") => method_not_allowed("GET, POST"),
        (method, path) if path.starts_with("/agents/") => {
            agent_route(app, request, method, &path["/agents/".len()..])
        }

        // The call log.
        ("GET", "/calls") => guarded(app, request, |app| {
            crate::calls::history::list(&app.call_log, request)
        }),
        ("GET", path) if path.starts_with("/calls/") => guarded(app, request, |app| {
            crate::calls::history::get(&app.call_log, &path["/calls/".len()..])
        }),
        (_, "/calls") => method_not_allowed("GET"),
        (_, path) if path.starts_with("/calls/") => method_not_allowed("GET"),

        // Exotel asks where to stream a call's audio (both paths of the original server).
        ("GET" | "POST", "/voicebot/connect" | "/api/v1/exotel/voice/connect") => {
            crate::exotel::webhook::handle(app, request)
        }
        (_, "/voicebot/connect" | "/api/v1/exotel/voice/connect") => {
            method_not_allowed("GET, POST")
        }

        // Exotel tells us how a call we placed is going (the StatusCallback of /call).
        ("GET" | "POST", "/api/v1/exotel/status") => {
            crate::exotel::webhook::handle_status(app, request)
        }
        (_, "/api/v1/exotel/status") => method_not_allowed("GET, POST"),

        // Exotel's Passthru applet: after the bot, hand the caller to a person or not.
        ("GET" | "POST", "/api/v1/exotel/passthru") => {
            crate::exotel::passthru::handle(app, request)
        }
        (_, "/api/v1/exotel/passthru") => method_not_allowed("GET, POST"),

        // Exotel's media WebSocket (also on MEDIA_PORT, any path, when set).
        ("GET", "/media") => crate::media::handshake(app, request),
        (_, "/media") => method_not_allowed("GET"),

        // Prometheus.
        ("GET", "/metrics") => match crate::auth::metrics(&app.config, request) {
            Ok(()) => {
                let mut text = app.metrics.render(
                    app.slots.live(),
                    app.registry.active_calls(),
                    app.uploads.held(),
                );
                text.push_str(&app.campaigns.metrics.render());
                Response::text(200, "text/plain; version=0.0.4", text)
            }
            Err(denied) => denied,
        },
        (_, "/metrics") => method_not_allowed("GET"),

        // Probes.
        ("GET" | "HEAD", "/health") => health(app),
        (_, "/health") => method_not_allowed("GET, HEAD"),

        (_, path) => Response::error(404, "not_found", format!("no route for {path}")),
    }
}

/// Who may send a body, from the request's head: the same checks [`dispatch`]'s routes make
/// once the body is read, made before it is (the HTTP layer calls this for every request that
/// announces a body). Routes without a check, and paths with no route, are admitted: their
/// bodies are held to `HTTP_MAX_BODY_BYTES`.
pub fn admit(app: &App, head: &Request) -> Result<(), Response> {
    let path = head.path.as_str();
    let under = |root: &str| {
        path.strip_prefix(root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if path == "/call"
        || ["/dnc", "/phones", "/campaigns", "/agents", "/calls"]
            .iter()
            .any(|r| under(r))
    {
        return crate::auth::user(&app.config, head);
    }
    match path {
        "/voicebot/connect"
        | "/api/v1/exotel/voice/connect"
        | "/api/v1/exotel/status"
        | "/api/v1/exotel/passthru" => crate::auth::exotel(
            &app.config,
            head,
            &crate::http::Params::from_query(&head.query),
        ),
        "/metrics" => crate::auth::metrics(&app.config, head),
        _ => Ok(()),
    }
}

/// `/agents/{name}` and `/agents/{name}/greeting`.
fn agent_route(app: &App, request: &Request, method: &str, rest: &str) -> Response {
    match (method, rest.split_once('/')) {
        ("GET", None) => guarded(app, request, |app| app.agents.show(rest)),
        ("PATCH", None) => guarded(app, request, |app| app.agents.update(rest, request)),
        ("DELETE", None) => guarded(app, request, |app| app.agents.remove(rest)),
        (_, None) => method_not_allowed("GET, PATCH, DELETE"),
        ("PUT", Some((name, "greeting"))) => {
            guarded(app, request, |app| app.agents.put_greeting(name, request))
        }
        ("DELETE", Some((name, "greeting"))) => {
            guarded(app, request, |app| app.agents.delete_greeting(name))
        }
        (_, Some((_, "greeting"))) => method_not_allowed("PUT, DELETE"),
        _ => Response::error(404, "not_found", format!("no route for {}", request.path)),
    }
}

/// `/campaigns/{id}`, `/campaigns/{id}/calls`, `/campaigns/{id}/calls.csv` and
/// `/campaigns/{id}/pause|resume|cancel`.
fn campaign_route(app: &App, request: &Request, method: &str, rest: &str) -> Response {
    let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
    match (method, tail) {
        ("GET", "") => guarded(app, request, |app| app.campaigns.show(id)),
        ("GET", "calls") => guarded(app, request, |app| app.campaigns.calls(id, request)),
        ("GET", "calls.csv") => guarded(app, request, |app| app.campaigns.calls_csv(id)),
        ("POST", "pause" | "resume" | "cancel") => {
            guarded(app, request, |app| app.campaigns.control(id, tail))
        }
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

fn health(app: &App) -> Response {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Health {
        status: &'static str,
        active_calls: usize,
        version: &'static str,
    }
    // While shutting down, a load balancer should stop sending new calls here: 503.
    let draining = app.draining.load(std::sync::atomic::Ordering::Acquire);
    Response::json(
        if draining { 503 } else { 200 },
        &Health {
            status: if draining { "draining" } else { "ok" },
            active_calls: app.slots.live(),
            version: env!("CARGO_PKG_VERSION"),
        },
    )
}

/// The operator's own routes: `API_TOKEN`, else local clients only (as `/call`).
fn guarded(app: &App, request: &Request, then: impl FnOnce(&App) -> Response) -> Response {
    match crate::auth::user(&app.config, request) {
        Ok(()) => then(app),
        Err(denied) => denied,
    }
}
