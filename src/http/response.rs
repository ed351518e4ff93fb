//! Responses and their serialization. Every error answer is `{"error": kind, "detail": why}`.

use serde::Serialize;

/// One answer: status, extra headers, body. `Content-Length` and `Connection` are added when it
/// is written.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Close the connection after this answer.
    pub close: bool,
    /// A `101 Switching Protocols`: after it is written, the connection goes to
    /// [`super::Service::upgrade`].
    pub upgrade: bool,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    detail: &'a str,
}

impl Response {
    /// A JSON answer.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Response {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Response {
            status,
            headers: vec![("Content-Type", "application/json".into())],
            body,
            close: false,
            upgrade: false,
        }
    }

    /// `101 Switching Protocols`, to which the caller adds the protocol's headers.
    pub fn switching_protocols() -> Response {
        Response {
            status: 101,
            headers: Vec::new(),
            body: Vec::new(),
            close: false,
            upgrade: true,
        }
    }

    /// A JSON error answer: `kind` is a short stable word, `detail` says what and why.
    pub fn error(status: u16, kind: &str, detail: impl AsRef<str>) -> Response {
        Response::json(
            status,
            &ErrorBody {
                error: kind,
                detail: detail.as_ref(),
            },
        )
    }

    pub fn text(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.into())],
            body: body.into(),
            close: false,
            upgrade: false,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    pub fn closing(mut self) -> Response {
        self.close = true;
        self
    }

    /// Appends the whole answer to `out`; `head_only` leaves out the body (for `HEAD`).
    pub(crate) fn write_to(&self, out: &mut Vec<u8>, head_only: bool, keep_alive_1_0: bool) {
        use std::io::Write as _;
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\n",
            self.status,
            reason_phrase(self.status)
        );
        // A 304 has no body of its own; a length would be the 200's (RFC 9110 §8.6).
        if !self.upgrade && self.status != 304 {
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        if self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if keep_alive_1_0 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}
