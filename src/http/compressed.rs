//! A body built in gzipped (`build.rs` compresses the console's files and the API document):
//! sent as it is to a client that takes gzip, inflated for one that does not, with its `ETag`
//! and a `304` for a client that has it already.

use super::{Request, Response};

/// One built-in body.
pub struct Compressed {
    pub content_type: &'static str,
    /// A gzip member as `build.rs` writes it: a 10-byte header, raw deflate, an 8-byte trailer.
    pub gzip: &'static [u8],
    pub etag: &'static str,
}

impl Compressed {
    /// The answer to `request` (`Cache-Control: no-cache`: asked again each time, a `304` when
    /// unchanged).
    pub fn answer(&self, request: &Request) -> Response {
        let cached = request
            .header("if-none-match")
            .is_some_and(|tags| tags.split(',').any(|t| t.trim() == self.etag));
        let response = if cached {
            let mut not_modified = Response::text(304, self.content_type, Vec::new());
            not_modified.headers.clear();
            not_modified
        } else if takes_gzip(request) {
            Response::text(200, self.content_type, self.gzip)
                .with_header("Content-Encoding", "gzip")
        } else {
            Response::text(200, self.content_type, self.inflated())
        };
        response
            .with_header("ETag", self.etag)
            .with_header("Cache-Control", "no-cache")
            .with_header("Vary", "Accept-Encoding")
    }

    /// The body as written.
    pub fn inflated(&self) -> Vec<u8> {
        let deflate = self
            .gzip
            .get(10..self.gzip.len().saturating_sub(8))
            .unwrap_or(&[]);
        miniz_oxide::inflate::decompress_to_vec(deflate).unwrap_or_default()
    }
}

/// The request's `Accept-Encoding` names gzip (with a weight above zero).
fn takes_gzip(request: &Request) -> bool {
    request.header("accept-encoding").is_some_and(|v| {
        v.split(',').any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::BodyFraming;

    fn asking(accept_encoding: Option<&str>) -> Request {
        Request {
            method: "GET".into(),
            path: "/ui/app.js".into(),
            query: String::new(),
            headers: accept_encoding
                .map(|v| vec![("accept-encoding".to_owned(), v.to_owned())])
                .unwrap_or_default(),
            body: Vec::new(),
            framing: BodyFraming::None,
            peer: "127.0.0.1:1".parse().unwrap(),
        }
    }

    #[test]
    fn gzip_is_sent_only_to_a_client_that_names_it() {
        for (header, gzip) in [
            (Some("gzip, deflate, br"), true),
            (Some("br;q=1, GZIP;q=0.5"), true),
            (Some("*"), true),
            (Some("gzip;q=0"), false),
            (Some("br"), false),
            (Some("identity"), false),
            (None, false),
        ] {
            assert_eq!(takes_gzip(&asking(header)), gzip, "{header:?}");
        }
    }

    /// FNV-1a, as build.rs tags the files.
    fn fnv1a(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
            (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    #[test]
    fn every_built_in_file_inflates_to_the_bytes_its_etag_was_made_from() {
        let files = crate::console::ASSETS.iter().map(|(_, file)| file);
        for file in files {
            let body = file.inflated();
            assert!(!body.is_empty());
            assert_eq!(file.etag, format!("\"{:016x}\"", fnv1a(&body)));
            let plain = file.answer(&asking(None));
            assert_eq!(plain.body, body);
            let zipped = file.answer(&asking(Some("gzip")));
            assert_eq!(zipped.body, file.gzip);
        }
    }
}
