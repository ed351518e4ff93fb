//! `/health`, `/metrics` and `/openapi.json`: what load balancers, Prometheus and client
//! authors ask.

use crate::app::App;
use crate::http::Response;

/// `GET|HEAD /health`: 200 while serving, 503 while shutting down.
pub(super) fn health(app: &App) -> Response {
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

/// `GET /metrics`: Prometheus' text format, with `METRICS_TOKEN` when one is set.
pub(super) fn metrics(app: &App) -> Response {
    let mut text = app.metrics.render(
        app.slots.live(),
        app.registry.active_calls(),
        app.uploads.held(),
    );
    text.push_str(&app.campaigns.metrics.render());
    Response::text(200, "text/plain; version=0.0.4", text)
}

/// This API's description, OpenAPI 3.1 (`src/routes/openapi.json`, dev/openapi.py's output,
/// built in gzipped), open to anyone: it holds no secret.
pub(super) fn openapi(request: &crate::http::Request) -> Response {
    OPENAPI.answer(request)
}

/// The document `GET /openapi.json` serves.
static OPENAPI: crate::http::compressed::Compressed =
    include!(concat!(env!("OUT_DIR"), "/openapi.rs"));

/// The document as written, for the router's tests.
#[cfg(test)]
pub(crate) const OPENAPI_TEXT: &str = include_str!("openapi.json");
