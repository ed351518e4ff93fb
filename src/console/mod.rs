//! The operator console: the page under `/ui/` (plain HTML, CSS and JavaScript modules from
//! `ui/`, built in by `build.rs` with gzip copies and `ETag`s), and the browser sessions that
//! let it use the API with a cookie instead of a bearer token ([`sessions`]).
//!
//! Owns the files' answers and their security headers. It must not read call data: the page
//! asks the same API as `curl` does, guarded by `auth` like every other client.

pub mod sessions;

use crate::http::compressed::Compressed;
use crate::http::{Request, Response};

/// Every file of `ui/` by name, gzipped (`build.rs` writes the table).
pub(crate) static ASSETS: &[(&str, Compressed)] =
    include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// What every console answer says to the browser: only its own scripts and styles (no inline
/// code, no `eval`), never in a frame, no sniffing, no referrer to other sites.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; media-src 'self'; connect-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `response` with the console's security headers.
pub(crate) fn secured(response: Response) -> Response {
    response
        .with_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Referrer-Policy", "same-origin")
        .with_header("X-Frame-Options", "DENY")
}

/// `GET /ui/{name}` (`index.html` for `/ui/`): the file, gzipped when the browser takes it,
/// `304` when its `If-None-Match` already has it.
pub(crate) fn asset(request: &Request, name: &str) -> Response {
    match ASSETS.iter().find(|(n, _)| *n == name) {
        Some((_, file)) => secured(file.answer(request)),
        None => secured(Response::error(
            404,
            "not_found",
            format!("the console has no file {name:?}"),
        )),
    }
}
