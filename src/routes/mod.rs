//! The dispatcher: every route of the server in one table, [`ROUTES`], of paths and methods
//! (docs/ARCHITECTURE.md §3). Read it top to bottom to know what the server answers. The
//! handlers sit beside it, a file per resource: each reads its request, asks the module that
//! owns the data (which knows nothing of HTTP and says no with a [`Refusal`]) and writes the
//! answer.

mod agents;
mod call;
mod calls;
mod campaigns;
mod console;
mod dnc;
mod events;
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

/// A handler's answer, whichever way it went.
pub(super) fn answered(answer: Answer) -> Response {
    answer.unwrap_or_else(|refused| refused)
}

/// What a route does for one method: the app, the request, and the path's `{…}` segments in
/// order.
type Handler = fn(&App, &Request, &[&str]) -> Response;

/// A route: its path (a `{name}` is one segment, handed to the handler) and its methods.
pub(crate) struct Route {
    pub(crate) path: &'static str,
    methods: &'static [(&'static str, Handler)],
}

impl Route {
    /// The methods it takes, as `Allow` lists them.
    pub(crate) fn methods(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.methods.iter().map(|(method, _)| *method)
    }

    /// Whether `path` is this route's; its `{…}` segments go into `args`.
    fn matches<'p>(&self, path: &'p str, args: &mut Vec<&'p str>) -> bool {
        args.clear();
        let mut given = path.split('/');
        for want in self.path.split('/') {
            match given.next() {
                Some(segment) if want.starts_with('{') && !segment.is_empty() => args.push(segment),
                Some(segment) if segment == want => {}
                _ => return false,
            }
        }
        given.next().is_none()
    }
}

/// Every route of the server, in the order a reader needs them. `/openapi.json` documents
/// each path and method here, and `tests/suite/openapi.rs` holds the two to each other.
pub(crate) static ROUTES: &[Route] = &[
    // The user asks us to dial a customer.
    Route {
        path: "/call",
        methods: &[("POST", |app, r, _| call::place_call(app, r))],
    },
    // The call log.
    Route {
        path: "/calls",
        methods: &[("GET", |app, r, _| answered(calls::list(&app.call_log, r)))],
    },
    Route {
        path: "/calls.csv",
        methods: &[("GET", |app, r, _| answered(calls::csv(&app.call_log, r)))],
    },
    Route {
        path: "/calls/{callLogId}",
        methods: &[("GET", |app, _, a| answered(calls::get(&app.call_log, a[0])))],
    },
    Route {
        path: "/calls/{callLogId}/recording",
        methods: &[("GET", |app, _, a| {
            answered(calls::recording(&app.call_log, a[0]))
        })],
    },
    Route {
        path: "/calls/{callLogId}/transcript",
        methods: &[("GET", |app, _, a| {
            answered(calls::transcript(&app.call_log, a[0]))
        })],
    },
    // ExoPhones with their own Exotel accounts.
    Route {
        path: "/phones",
        methods: &[
            ("GET", |app, _, _| answered(phones::list(&app.phones))),
            ("POST", |app, r, _| answered(phones::create(&app.phones, r))),
        ],
    },
    Route {
        path: "/phones/{number}",
        methods: &[
            ("GET", |app, _, a| answered(phones::show(&app.phones, a[0]))),
            ("PATCH", |app, r, a| {
                answered(phones::update(&app.phones, a[0], r))
            }),
            ("DELETE", |app, _, a| {
                answered(phones::remove(&app.phones, a[0]))
            }),
        ],
    },
    // Agents: named bot configurations, with a greeting.
    Route {
        path: "/agents",
        methods: &[
            ("GET", |app, _, _| answered(agents::list(&app.agents))),
            ("POST", |app, r, _| answered(agents::create(&app.agents, r))),
        ],
    },
    Route {
        path: "/agents/{name}",
        methods: &[
            ("GET", |app, _, a| answered(agents::show(&app.agents, a[0]))),
            ("PATCH", |app, r, a| {
                answered(agents::update(&app.agents, a[0], r))
            }),
            ("DELETE", |app, _, a| {
                answered(agents::remove(&app.agents, a[0]))
            }),
        ],
    },
    Route {
        path: "/agents/{name}/web-call",
        methods: &[("POST", |app, _, a| answered(console::web_call(app, a[0])))],
    },
    Route {
        path: "/agents/{name}/greeting",
        methods: &[
            ("PUT", |app, r, a| {
                answered(agents::put_greeting(&app.agents, a[0], r))
            }),
            ("DELETE", |app, _, a| {
                answered(agents::delete_greeting(&app.agents, a[0]))
            }),
        ],
    },
    // Campaigns: many calls from a list, within a window, a rate and a retry policy.
    Route {
        path: "/campaigns",
        methods: &[
            ("GET", |app, _, _| answered(campaigns::list(app))),
            ("POST", |app, r, _| answered(campaigns::create(app, r))),
        ],
    },
    Route {
        path: "/campaigns/{id}",
        methods: &[("GET", |app, _, a| answered(campaigns::show(app, a[0])))],
    },
    Route {
        path: "/campaigns/{id}/calls",
        methods: &[("GET", |app, r, a| answered(campaigns::calls(app, a[0], r)))],
    },
    Route {
        path: "/campaigns/{id}/calls.csv",
        methods: &[("GET", |app, _, a| answered(campaigns::calls_csv(app, a[0])))],
    },
    Route {
        path: "/campaigns/{id}/pause",
        methods: &[("POST", |app, _, a| {
            answered(campaigns::control(app, a[0], "pause"))
        })],
    },
    Route {
        path: "/campaigns/{id}/resume",
        methods: &[("POST", |app, _, a| {
            answered(campaigns::control(app, a[0], "resume"))
        })],
    },
    Route {
        path: "/campaigns/{id}/cancel",
        methods: &[("POST", |app, _, a| {
            answered(campaigns::control(app, a[0], "cancel"))
        })],
    },
    // The do-not-call list.
    Route {
        path: "/dnc",
        methods: &[
            ("GET", |app, _, _| answered(dnc::list(&app.dnc))),
            ("POST", |app, r, _| answered(dnc::add(&app.dnc, r))),
        ],
    },
    Route {
        path: "/dnc/{number}",
        methods: &[("DELETE", |app, _, a| answered(dnc::remove(&app.dnc, a[0])))],
    },
    // Events for the user's backend that have not been taken, and sending one again.
    Route {
        path: "/events",
        methods: &[("GET", |app, r, _| answered(events::list(&app.call_log, r)))],
    },
    Route {
        path: "/events/{id}/retry",
        methods: &[("POST", |app, _, a| {
            answered(events::retry(&app.call_log, a[0]))
        })],
    },
    // Exotel asks where to stream a call's audio (both paths of the original server).
    Route {
        path: "/api/v1/exotel/voice/connect",
        methods: &[
            ("GET", |app, r, _| webhooks::connect(app, r)),
            ("POST", |app, r, _| webhooks::connect(app, r)),
        ],
    },
    Route {
        path: "/voicebot/connect",
        methods: &[
            ("GET", |app, r, _| webhooks::connect(app, r)),
            ("POST", |app, r, _| webhooks::connect(app, r)),
        ],
    },
    // Exotel tells us how a call we placed is going (the StatusCallback of /call).
    Route {
        path: "/api/v1/exotel/status",
        methods: &[
            ("GET", |app, r, _| webhooks::status(app, r)),
            ("POST", |app, r, _| webhooks::status(app, r)),
        ],
    },
    // Exotel's Passthru applet: after the bot, hand the caller to a person or not.
    Route {
        path: "/api/v1/exotel/passthru",
        methods: &[
            ("GET", |app, r, _| passthru::answer_passthru(app, r)),
            ("POST", |app, r, _| passthru::answer_passthru(app, r)),
        ],
    },
    // Exotel's media WebSocket (also on MEDIA_PORT, any path, when set).
    Route {
        path: "/media",
        methods: &[("GET", |app, r, _| crate::media::handshake(app, r))],
    },
    // The operator console: its page, the browser's sign-in, and the live calls.
    Route {
        path: "/live",
        methods: &[("GET", |app, _, _| console::live(app))],
    },
    Route {
        path: "/ui",
        methods: &[("GET", |_, _, _| console::to_console())],
    },
    Route {
        path: "/ui/",
        methods: &[("GET", |app, r, _| console::file(app, r, "index.html"))],
    },
    Route {
        path: "/ui/session",
        methods: &[
            ("GET", |app, r, _| console::session(app, r)),
            ("POST", |app, r, _| console::sign_in(app, r)),
            ("DELETE", |app, r, _| console::sign_out(app, r)),
        ],
    },
    Route {
        path: "/ui/{file}",
        methods: &[("GET", |app, r, a| console::file(app, r, a[0]))],
    },
    // Probes, Prometheus, and this API's own description.
    Route {
        path: "/health",
        methods: &[
            ("GET", |app, _, _| probes::health(app)),
            ("HEAD", |app, _, _| probes::health(app)),
        ],
    },
    Route {
        path: "/metrics",
        methods: &[("GET", |app, _, _| probes::metrics(app))],
    },
    Route {
        path: "/openapi.json",
        methods: &[("GET", |_, r, _| probes::openapi(r))],
    },
];

/// Answers a request: its guard first (a stranger hears 401 before a 404 or a 405), then its
/// route and method from [`ROUTES`].
pub fn dispatch(app: &App, request: &Request) -> Response {
    if let Err(denied) = admit(app, request) {
        return denied;
    }
    let mut args = Vec::with_capacity(2);
    let Some(route) = ROUTES
        .iter()
        .find(|route| route.matches(&request.path, &mut args))
    else {
        return Response::error(404, "not_found", format!("no route for {}", request.path));
    };
    match route.methods.iter().find(|(m, _)| *m == request.method) {
        Some((_, handler)) => handler(app, request, &args),
        None => method_not_allowed(route),
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
        || path == "/calls.csv"
        || path == "/live"
        || [
            "/dnc",
            "/phones",
            "/campaigns",
            "/agents",
            "/calls",
            "/events",
        ]
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
        Guard::User => crate::auth::user(&app.config.access, &app.sessions, head),
        Guard::Exotel => crate::auth::exotel(
            &app.config.access,
            head,
            &crate::http::Params::from_query(&head.query),
        ),
        Guard::Metrics => crate::auth::metrics(&app.config.access, head),
        Guard::Open => Ok(()),
    }
}

fn method_not_allowed(route: &Route) -> Response {
    let allow = route.methods().collect::<Vec<_>>().join(", ");
    Response::error(
        405,
        "method_not_allowed",
        format!("this path accepts {allow}"),
    )
    .with_header("Allow", allow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// `(path, METHOD)` of every operation the router answers.
    fn routed() -> BTreeSet<(String, String)> {
        ROUTES
            .iter()
            .flat_map(|r| r.methods().map(|m| (r.path.to_owned(), m.to_owned())))
            .collect()
    }

    /// `(path, METHOD)` of every operation `/openapi.json` documents.
    fn documented() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(probes::OPENAPI_TEXT).unwrap();
        let methods = ["get", "head", "post", "put", "patch", "delete"];
        doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                let ops = ops.as_object().unwrap();
                methods
                    .iter()
                    .filter(|m| ops.contains_key(**m))
                    .map(|m| (path.clone(), m.to_ascii_uppercase()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_document_and_the_router_have_the_same_paths_and_methods_both_ways() {
        let (routed, documented) = (routed(), documented());
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty(),
            "routed, not documented: {undocumented:?}"
        );
        assert!(unrouted.is_empty(), "documented, not routed: {unrouted:?}");
        assert!(routed.len() > 30, "{} operations", routed.len());
    }

    #[test]
    fn every_path_parameter_of_the_document_is_declared_and_every_guarded_route_needs_a_token() {
        let doc: serde_json::Value = serde_json::from_str(probes::OPENAPI_TEXT).unwrap();
        for route in ROUTES {
            let names: Vec<&str> = route
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            for (method, _) in route.methods {
                let op = &doc["paths"][route.path][method.to_ascii_lowercase()];
                let declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter(|p| p["in"] == "path")
                            .map(|p| p["name"].as_str().unwrap())
                            .collect()
                    })
                    .unwrap_or_default();
                assert_eq!(declared, names, "{method} {}", route.path);
                if guard_of(route.path) == Guard::User {
                    assert_eq!(
                        op["security"],
                        serde_json::json!([{"bearer": []}]),
                        "{method} {}",
                        route.path
                    );
                }
            }
        }
    }
}
