//! One connection: read a request head against a deadline, check its framing, read the body,
//! call the service, write the answer, repeat while the client keeps the connection alive.
//! Pipelined requests are already in `buf` and are answered in order by the same loop.

use super::chunked;
use super::socket::Conn;
use super::{BodyFraming, HeldUpload, Limits, Request, Response, Service, UploadBudget};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 4096;
/// After an answer that closes the connection, how long unread input is still drained so the
/// client is not reset before it reads the answer ("lingering close").
const LINGER_TIME: Duration = Duration::from_secs(2);
/// At most this much unread input is drained before closing anyway.
const LINGER_BYTES: usize = 1 << 20;

enum ReadOutcome {
    Data,
    Eof,
    TimedOut,
}

/// What requests are read from: a socket, or bytes in memory ([`answer_all`], for the benches).
trait Source: Read + Write {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Source for Conn {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        Conn::set_read_timeout(self, timeout)
    }
}

/// Requests already in memory; the end of `input` is the client closing. Answers `100
/// Continue` into `out` like a socket would.
struct InMemory<'a> {
    input: &'a [u8],
    out: &'a mut Vec<u8>,
}

impl Read for InMemory<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for InMemory<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for InMemory<'_> {
    fn set_read_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

/// Reads whatever arrives before `deadline`, appended to `buf`. A read that made progress
/// without data to give (part of a TLS record) is retried until the deadline.
fn read_some(
    stream: &mut impl Source,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> io::Result<ReadOutcome> {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(ReadOutcome::TimedOut);
        }
        // Whole milliseconds (crate::timer): the deadline is kept to within 1 ms.
        stream.set_read_timeout(Some(crate::timer::whole_millis(deadline - now)))?;
        let len = buf.len();
        buf.resize(len + READ_CHUNK, 0);
        let result = stream.read(&mut buf[len..]);
        buf.truncate(len + *result.as_ref().unwrap_or(&0));
        return match result {
            Ok(0) => Ok(ReadOutcome::Eof),
            Ok(_) => Ok(ReadOutcome::Data),
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                Ok(ReadOutcome::TimedOut)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

/// What every connection of a server shares: the service, the limits, the upload budget.
pub(super) struct Shared<'a> {
    pub service: &'a dyn Service,
    pub limits: &'a Limits,
    pub uploads: &'a Arc<UploadBudget>,
}

/// What the connection does next.
enum Next {
    /// A whole request, with what its body holds of the upload budget until it is answered.
    Request(Box<Request>, Head, HeldUpload),
    /// The client went away or stayed silent: close without an answer.
    Closed,
    /// Answer this error and close.
    Reject(Response),
}

/// What of the head matters after the body is read.
struct Head {
    keep_alive: bool,
    http_1_0: bool,
}

pub(super) fn serve(
    mut stream: Conn,
    peer: SocketAddr,
    shared: &Shared<'_>,
    open: super::OpenConnection,
) {
    let (service, limits) = (shared.service, shared.limits);
    let _ = stream.socket().set_nodelay(true);
    // A client that stops reading our answers must not hold the coroutine forever.
    let _ = stream.socket().set_write_timeout(Some(limits.idle_timeout));
    let mut buf = Vec::with_capacity(READ_CHUNK);
    let mut out = Vec::with_capacity(1024);
    loop {
        let (request, head, held) = match next_request(&mut stream, &mut buf, peer, shared) {
            Next::Request(request, head, held) => (request, head, held),
            Next::Closed => return,
            Next::Reject(response) => {
                crate::info!(
                    "http.rejected",
                    peer = peer,
                    status = response.status,
                    detail = String::from_utf8_lossy(&response.body)
                );
                out.clear();
                response.closing().write_to(&mut out, false, false);
                let _ = stream.write_all(&out);
                linger_close(&mut stream, &mut buf);
                return;
            }
        };
        out.clear();
        let response = answer(service, &request, &head, &mut out);
        drop(held);
        if stream.write_all(&out).is_err() {
            return;
        }
        if response.upgrade && response.status == 101 {
            let _ = stream.set_read_timeout(None);
            service.upgrade(&request, stream, std::mem::take(&mut buf), open);
            return;
        }
        if response.close {
            linger_close(&mut stream, &mut buf);
            return;
        }
    }
}

/// Calls the service for `request` (a panic becomes a 500) and appends its answer to `out`.
fn answer(service: &dyn Service, request: &Request, head: &Head, out: &mut Vec<u8>) -> Response {
    let mut response = match catch_unwind(AssertUnwindSafe(|| service.call(request))) {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            crate::error!(
                "http.handler_panicked",
                method = request.method,
                path = request.path,
                panic = what
            );
            Response::error(
                500,
                "internal",
                "the handler failed; the server log has the cause",
            )
        }
    };
    if !head.keep_alive && !response.upgrade {
        response.close = true;
    }
    response.write_to(
        out,
        request.method == "HEAD",
        head.http_1_0 && head.keep_alive,
    );
    response
}

/// Answers every request in `input` as a connection would, appending the answers to `out`.
/// Stops at the end of `input`, at an answer that closes, or at an upgrade (not taken).
pub(super) fn answer_all(
    service: &dyn Service,
    input: &[u8],
    peer: SocketAddr,
    limits: &Limits,
    out: &mut Vec<u8>,
) {
    let mut source = InMemory { input, out };
    let mut buf = Vec::new();
    let uploads = Arc::new(UploadBudget::default());
    let shared = Shared {
        service,
        limits,
        uploads: &uploads,
    };
    loop {
        match next_request(&mut source, &mut buf, peer, &shared) {
            Next::Request(request, head, _held) => {
                let response = answer(service, &request, &head, source.out);
                if response.close || response.upgrade {
                    return;
                }
            }
            Next::Reject(response) => {
                response.closing().write_to(source.out, false, false);
                return;
            }
            Next::Closed => return,
        }
    }
}

/// The next request on the connection, by step: wait for its first byte, read its head, work
/// out its framing and whether the connection stays open, admit its body, then read it.
fn next_request(
    stream: &mut impl Source,
    buf: &mut Vec<u8>,
    peer: SocketAddr,
    shared: &Shared<'_>,
) -> Next {
    let limits = shared.limits;
    if !wait_for_first_byte(stream, buf, limits) {
        return Next::Closed;
    }
    // The whole request, head and body, must arrive within head_timeout of its first byte.
    let deadline = Instant::now() + limits.head_timeout;
    let parsed = match read_head(stream, buf, limits, deadline) {
        Ok(parsed) => parsed,
        Err(next) => return next,
    };
    buf.drain(..parsed.len);
    let upload = is_upload(limits, &parsed);
    let upload_limits;
    let limits = if upload {
        upload_limits = Limits {
            max_body_bytes: limits.max_upload_bytes,
            ..limits.clone()
        };
        &upload_limits
    } else {
        limits
    };
    let framing = match body_framing(&parsed.headers, parsed.http_1_0, limits) {
        Ok(framing) => framing,
        Err(response) => return Next::Reject(response),
    };
    let head = Head::of(&parsed);
    let mut request = Box::new(Request {
        method: parsed.method,
        path: parsed.path,
        query: parsed.query,
        headers: parsed.headers,
        body: Vec::new(),
        framing,
        peer,
    });
    let mut held = HeldUpload::default();
    if framing != BodyFraming::None {
        if let Err(refused) = shared.service.admit(&request) {
            return Next::Reject(refused);
        }
        if upload {
            if let Err(refused) = hold_announced(shared, limits, framing, &mut held) {
                return Next::Reject(refused);
            }
        }
    }
    if wants_continue(&request, &head, buf)
        && stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
    {
        return Next::Closed;
    }
    let budget = upload.then_some((shared.uploads, &mut held));
    request.body = match read_body(stream, buf, framing, limits, deadline, budget) {
        Ok(body) => body,
        Err(next) => return next,
    };
    Next::Request(request, head, held)
}

/// Whether the request's route takes uploads (`Limits::uploads`).
fn is_upload(limits: &Limits, parsed: &ParsedHead) -> bool {
    limits.uploads.iter().any(|(m, p)| {
        *m == parsed.method
            && (*p == parsed.path || (p.ends_with('/') && parsed.path.starts_with(p)))
    })
}

/// Holds an upload's announced length of the budget before its body is read (a chunked
/// body holds as it arrives, in [`read_chunked`]).
fn hold_announced(
    shared: &Shared<'_>,
    limits: &Limits,
    framing: BodyFraming,
    held: &mut HeldUpload,
) -> Result<(), Response> {
    match framing {
        BodyFraming::Length(len)
            if !shared
                .uploads
                .try_hold(held, len, limits.max_uploads_held_bytes) =>
        {
            Err(uploads_full(limits))
        }
        _ => Ok(()),
    }
}

/// 503 for an upload the budget cannot hold now: the uploads in progress end within the head
/// timeout, so that is when to try again.
fn uploads_full(limits: &Limits) -> Response {
    Response::error(
        503,
        "uploads_busy",
        format!(
            "the server holds {} bytes of uploads at most (HTTP_MAX_UPLOADS_HELD_BYTES) and this one would go past it; try again shortly",
            limits.max_uploads_held_bytes
        ),
    )
    .with_header(
        "Retry-After",
        limits.head_timeout.as_secs().max(1).to_string(),
    )
}

/// Idle: waits up to the idle timeout for the first byte of the next request (unless pipelined
/// bytes are already in `buf`); `false` when the client went away or stayed silent.
fn wait_for_first_byte(stream: &mut impl Source, buf: &mut Vec<u8>, limits: &Limits) -> bool {
    if !buf.is_empty() {
        return true;
    }
    matches!(
        read_some(stream, buf, Instant::now() + limits.idle_timeout),
        Ok(ReadOutcome::Data)
    ) && !buf.is_empty()
}

/// Reads more of the request before `deadline`; the error is what the connection does instead.
fn read_more(
    stream: &mut impl Source,
    buf: &mut Vec<u8>,
    limits: &Limits,
    deadline: Instant,
) -> Result<(), Next> {
    match read_some(stream, buf, deadline) {
        Ok(ReadOutcome::Data) => Ok(()),
        Ok(ReadOutcome::TimedOut) => Err(Next::Reject(Response::error(
            408,
            "request_timeout",
            format!(
                "the request did not arrive within {} ms of its first byte",
                limits.head_timeout.as_millis()
            ),
        ))),
        Ok(ReadOutcome::Eof) | Err(_) => Err(Next::Closed),
    }
}

fn header_too_large(what: String) -> Next {
    Next::Reject(Response::error(431, "headers_too_large", what))
}

/// Reads until the head is complete, within the header limits.
fn read_head(
    stream: &mut impl Source,
    buf: &mut Vec<u8>,
    limits: &Limits,
    deadline: Instant,
) -> Result<ParsedHead, Next> {
    loop {
        // Slots borrow from `buf`, which the next read extends, so they live for one attempt.
        let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
        let mut req = httparse::Request::new(&mut slots);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) if len > limits.max_head_bytes => {
                return Err(header_too_large(format!(
                    "the request head is {len} bytes; the limit is {}",
                    limits.max_head_bytes
                )));
            }
            Ok(httparse::Status::Complete(len)) => return Ok(ParsedHead::from(&req, len)),
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(header_too_large(format!(
                    "the request has more than {} headers (HTTP_MAX_HEADERS)",
                    limits.max_headers
                )))
            }
            Err(e) => {
                return Err(Next::Reject(Response::error(
                    400,
                    "bad_request",
                    format!("malformed request head: {e}"),
                )))
            }
        }
        if buf.len() >= limits.max_head_bytes {
            return Err(header_too_large(format!(
                "the request head exceeds {} bytes",
                limits.max_head_bytes
            )));
        }
        read_more(stream, buf, limits, deadline)?;
    }
}

impl Head {
    /// HTTP/1.1 stays open unless `Connection: close`; HTTP/1.0 closes unless `keep-alive`.
    fn of(parsed: &ParsedHead) -> Head {
        let connection = parsed
            .headers
            .iter()
            .find(|(n, _)| n == "connection")
            .map(|(_, v)| v.to_ascii_lowercase())
            .unwrap_or_default();
        let has_token = |t: &str| connection.split(',').any(|c| c.trim() == t);
        let keep_alive = if parsed.http_1_0 {
            has_token("keep-alive")
        } else {
            !has_token("close")
        };
        Head {
            keep_alive,
            http_1_0: parsed.http_1_0,
        }
    }
}

/// curl sends `Expect: 100-continue` before bodies over 1 KiB and waits a second for the
/// interim answer; it is owed only when the body has not started arriving.
fn wants_continue(request: &Request, head: &Head, buf: &[u8]) -> bool {
    let expects_continue = request
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    expects_continue && request.framing != BodyFraming::None && buf.is_empty() && !head.http_1_0
}

/// An upload's place in the budget while its chunked body arrives.
type Budget<'a> = Option<(&'a Arc<UploadBudget>, &'a mut HeldUpload)>;

/// Reads the body its framing announces, before `deadline`. A body of known length is read
/// into room made once for it, and handed over without a copy when nothing follows it.
fn read_body(
    stream: &mut impl Source,
    buf: &mut Vec<u8>,
    framing: BodyFraming,
    limits: &Limits,
    deadline: Instant,
    budget: Budget<'_>,
) -> Result<Vec<u8>, Next> {
    match framing {
        BodyFraming::None => Ok(Vec::new()),
        BodyFraming::Length(len) => {
            if buf.len() < len {
                buf.reserve_exact(len + READ_CHUNK - buf.len());
            }
            while buf.len() < len {
                read_more(stream, buf, limits, deadline)?;
            }
            if buf.len() == len {
                return Ok(std::mem::replace(buf, Vec::with_capacity(READ_CHUNK)));
            }
            let rest = buf.split_off(len);
            Ok(std::mem::replace(buf, rest))
        }
        BodyFraming::Chunked => read_chunked(stream, buf, limits, deadline, budget),
    }
}

fn read_chunked(
    stream: &mut impl Source,
    buf: &mut Vec<u8>,
    limits: &Limits,
    deadline: Instant,
    mut budget: Budget<'_>,
) -> Result<Vec<u8>, Next> {
    let mut decoder = chunked::Decoder::new(limits.max_body_bytes);
    let mut body = Vec::new();
    // Framing bytes (sizes, extensions, trailers) count too, so endless extensions end.
    let mut raw = 0usize;
    let raw_limit = 2 * limits.max_body_bytes + limits.max_head_bytes;
    loop {
        let before = body.len();
        match decoder.feed(buf, &mut body) {
            Ok(used) => {
                raw += used;
                buf.drain(..used);
            }
            Err(chunked::Error::TooLarge) => return Err(body_too_large(limits)),
            Err(chunked::Error::Malformed(why)) => {
                return Err(Next::Reject(Response::error(
                    400,
                    "bad_request",
                    format!("malformed chunked body: {why}"),
                )))
            }
        }
        if let Some((uploads, held)) = budget.as_mut() {
            let grown = body.len() - before;
            if !uploads.try_hold(held, grown, limits.max_uploads_held_bytes) {
                return Err(Next::Reject(uploads_full(limits)));
            }
        }
        if decoder.is_done() {
            return Ok(body);
        }
        if raw > raw_limit {
            return Err(body_too_large(limits));
        }
        read_more(stream, buf, limits, deadline)?;
    }
}

fn body_too_large(limits: &Limits) -> Next {
    Next::Reject(Response::error(
        413,
        "body_too_large",
        format!("the body exceeds {} bytes", limits.max_body_bytes),
    ))
}

/// The head, copied out of the read buffer.
struct ParsedHead {
    len: usize,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    http_1_0: bool,
}

impl ParsedHead {
    fn from(req: &httparse::Request<'_, '_>, len: usize) -> ParsedHead {
        let target = req.path.unwrap_or("/");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        ParsedHead {
            len,
            method: req.method.unwrap_or("").to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).trim().to_owned(),
                    )
                })
                .collect(),
            http_1_0: req.version == Some(0),
        }
    }
}

/// Decides how the body is framed, refusing what would let two parsers disagree (RFC 9112 §6).
fn body_framing(
    headers: &[(String, String)],
    http_1_0: bool,
    limits: &Limits,
) -> Result<BodyFraming, Response> {
    let bad = |detail: String| Err(Response::error(400, "bad_request", detail));
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for (name, value) in headers {
        match name.as_str() {
            "content-length" => {
                for part in value.split(',') {
                    let part = part.trim();
                    let parsed = (!part.is_empty()
                        && part.len() <= 19
                        && part.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| part.parse::<u64>().ok())
                    .flatten();
                    match (parsed, length) {
                        (None, _) => {
                            return bad(format!("Content-Length {value:?} is not a number"))
                        }
                        (Some(n), Some(m)) if n != m => {
                            return bad(format!("conflicting Content-Length values {m} and {n}"))
                        }
                        (Some(n), _) => length = Some(n),
                    }
                }
            }
            "transfer-encoding" => {
                if http_1_0 {
                    return bad("Transfer-Encoding is not allowed in HTTP/1.0".into());
                }
                if chunked || !value.eq_ignore_ascii_case("chunked") {
                    return Err(Response::error(
                        501,
                        "unsupported_transfer_encoding",
                        format!("Transfer-Encoding {value:?} is not supported; send chunked or Content-Length"),
                    ));
                }
                chunked = true;
            }
            _ => {}
        }
    }
    match (length, chunked) {
        (Some(_), true) => bad("both Content-Length and Transfer-Encoding were sent".into()),
        (None, true) => Ok(BodyFraming::Chunked),
        (Some(n), false) if n > limits.max_body_bytes as u64 => Err(Response::error(
            413,
            "body_too_large",
            format!(
                "Content-Length {n} exceeds the limit of {} bytes",
                limits.max_body_bytes
            ),
        )),
        (Some(n), false) => Ok(BodyFraming::Length(n as usize)),
        (None, false) => Ok(BodyFraming::None),
    }
}

/// Stops writing, then reads and drops what the client still sends for a short while, so that
/// closing with unread input does not reset the connection before the client reads our answer.
fn linger_close(stream: &mut Conn, buf: &mut Vec<u8>) {
    let _ = stream.flush();
    if let Conn::Tls(tls) = stream {
        tls.close_notify();
    }
    let _ = stream.socket().shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER_TIME;
    let mut drained = 0;
    while drained < LINGER_BYTES {
        buf.clear();
        match read_some(stream, buf, deadline) {
            Ok(ReadOutcome::Data) => drained += buf.len(),
            _ => break,
        }
    }
}

/// Answers a connection over `max_connections` with 503 and closes it, off the accept loop.
/// A TLS connection is closed without an answer: a handshake is the work being refused.
pub(super) fn refuse_over_capacity(mut stream: Conn, max: usize) {
    if stream.is_tls() {
        return;
    }
    may::go!(move || {
        let mut out = Vec::new();
        Response::error(
            503,
            "over_capacity",
            format!("the server has {max} connections open (HTTP_MAX_CONNECTIONS)"),
        )
        .closing()
        .write_to(&mut out, false, false);
        let _ = stream
            .socket()
            .set_write_timeout(Some(Duration::from_secs(1)));
        let _ = stream.write_all(&out);
        linger_close(&mut stream, &mut Vec::new());
    });
}
