//! The operator console: the page under `/ui/` (plain HTML, CSS and JavaScript modules from
//! `ui/`, built in by `build.rs` with gzip copies and `ETag`s), and the browser sessions that
//! let it use the API with a cookie instead of a bearer token ([`sessions`]).
//!
//! Owns the files' answers and their security headers. It must not read call data: the page
//! asks the same API as `curl` does, guarded by `auth` like every other client.

pub mod sessions;

use crate::http::{Request, Response};

/// One file of `ui/`, as built in.
pub(crate) struct Asset {
    pub(crate) name: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) body: &'static [u8],
    pub(crate) gzip: &'static [u8],
    pub(crate) etag: &'static str,
}

/// Every file of `ui/`, by name (`build.rs` writes the table).
pub(crate) static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

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
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return secured(Response::error(
            404,
            "not_found",
            format!("the console has no file {name:?}"),
        ));
    };
    // The page's HTML is asked again each time (its scripts' names do not change, their
    // ETags do); the scripts and styles are checked with the ETag.
    let cache = "no-cache";
    let matches = request
        .header("if-none-match")
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == asset.etag));
    if matches {
        let mut not_modified = Response::text(304, asset.content_type, Vec::new());
        not_modified.headers.clear();
        return secured(
            not_modified
                .with_header("ETag", asset.etag)
                .with_header("Cache-Control", cache),
        );
    }
    let gzip_ok = request.header("accept-encoding").is_some_and(|v| {
        v.split(',')
            .any(|e| e.split(';').next().unwrap_or("").trim() == "gzip")
    });
    let response = if gzip_ok {
        Response::text(200, asset.content_type, asset.gzip).with_header("Content-Encoding", "gzip")
    } else {
        Response::text(200, asset.content_type, asset.body)
    };
    secured(
        response
            .with_header("ETag", asset.etag)
            .with_header("Cache-Control", cache)
            .with_header("Vary", "Accept-Encoding"),
    )
}

/// The console's weight: (bytes as written, bytes gzipped) of all its files.
pub fn weight() -> (usize, usize) {
    ASSETS.iter().fold((0, 0), |(raw, gz), a| {
        (raw + a.body.len(), gz + a.gzip.len())
    })
}
