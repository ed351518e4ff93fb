//! HTTP/1.1 server on `may::net` and `httparse`, in may_minihttp's shape: one coroutine per
//! connection, a [`Service`] called once per request, buffers kept per connection.
//!
//! Owns framing, limits, timeouts and the JSON answers for malformed requests (docs/ARCHITECTURE.md §5). It
//! must not know any route: that is `routes`. It must not block outside `may::net`: handlers
//! that need blocking work hand it to threads (see `exotel::pool`).
//!
//! Why not may_minihttp 0.1.11: a request with over 16 headers gets an empty reply, a bad
//! `Content-Length` panics the connection, there is no body limit or timeout, and no WebSocket
//! upgrade (docs/ARCHITECTURE.md §2).

pub(crate) mod chunked;
pub mod compressed;
mod conn;
pub mod form;
pub mod params;
mod response;
pub mod socket;
pub(crate) mod whole;

pub use params::Params;
pub use response::{reason_phrase, Response};
pub use socket::Conn;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Stack of each connection's coroutine, in bytes. may's default (32 KiB) is too tight for a
/// handler that panics: unwinding and formatting the panic need more. Stacks are touched lazily,
/// so resident memory grows only with the depth actually used. `tests/http_library.rs` runs the
/// panicking path under it.
pub const CONNECTION_STACK_BYTES: usize = 128 * 1024;
/// [`CONNECTION_STACK_BYTES`] in may's unit, words; the binary makes it may's default, so that
/// connections reuse pooled stacks (`reuse_connection_stacks`).
pub const CONNECTION_STACK_WORDS: usize = CONNECTION_STACK_BYTES / std::mem::size_of::<usize>();

/// Every limit the HTTP layer enforces, with docs/ARCHITECTURE.md §5's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Headers in one request; one more is a 431.
    pub max_headers: usize,
    /// Bytes of request line plus headers; one more is a 431.
    pub max_head_bytes: usize,
    /// Bytes of decoded body; one more is a 413.
    pub max_body_bytes: usize,
    /// Bytes of decoded body for the `uploads` routes (lists of contacts or numbers, as CSV or
    /// JSON), in place of `max_body_bytes`.
    pub max_upload_bytes: usize,
    /// The routes (method, path) that take uploads; a path ending in `/` covers the paths
    /// under it.
    pub uploads: &'static [(&'static str, &'static str)],
    /// Bytes of upload bodies held at once across all connections, from the moment an
    /// upload's head is admitted until it is answered; an upload that would go past it is
    /// answered 503 with `Retry-After` before its body is read.
    pub max_uploads_held_bytes: usize,
    /// A connection that sends nothing for this long is closed without an answer.
    pub idle_timeout: Duration,
    /// Time from a request's first byte to its last (head and body); past it, 408 and close.
    pub head_timeout: Duration,
    /// Open connections; the next one is answered 503 and closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_headers: 100,
            max_head_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            // 100,000 contacts with a name and an amount each are about 4 MB of CSV.
            max_upload_bytes: 16 << 20,
            uploads: &[
                ("POST", "/campaigns"),
                ("POST", "/dnc"),
                ("PUT", "/agents/"),
            ],
            // Three largest uploads at once (a parse holds a small multiple of its body):
            // within reach of a 512 MiB board.
            max_uploads_held_bytes: 48 << 20,
            idle_timeout: Duration::from_secs(30),
            head_timeout: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}

/// How the request said its body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// Neither `Content-Length` nor `Transfer-Encoding`: no body.
    None,
    Length(usize),
    Chunked,
}

/// One parsed request, owned, with its whole body.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path without the query, as sent (not percent-decoded).
    pub path: String,
    /// The query string without `?`, as sent.
    pub query: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub framing: BodyFraming,
    pub peer: SocketAddr,
}

impl Request {
    /// The first header of that name (give it lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The media type of the body, lower-cased, without parameters (`application/json`).
    pub fn content_type(&self) -> Option<String> {
        self.header("content-type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }
}

/// What the server calls for every request. A panic inside `call` becomes a 500 answer.
pub trait Service: Send + Sync + 'static {
    fn call(&self, request: &Request) -> Response;

    /// Whether a request that announces a body may send it, decided from its head alone
    /// (`request.body` is still empty): the route, the method and the credentials. A refusal
    /// is answered at once and the connection closed without reading the body, so a stranger
    /// cannot make the server hold what it would refuse anyway.
    fn admit(&self, _head: &Request) -> Result<(), Response> {
        Ok(())
    }

    /// Takes over a connection after `call` answered it with an upgrade (a `101`), with the
    /// bytes already read past the request, and its place among `HTTP_MAX_CONNECTIONS` to keep
    /// for as long as the socket is open. Runs on the connection's coroutine.
    fn upgrade(
        &self,
        _request: &Request,
        _stream: Conn,
        _already_read: Vec<u8>,
        _open: OpenConnection,
    ) {
    }
}

/// A connection's place among `HTTP_MAX_CONNECTIONS`, given back when dropped. An upgraded
/// connection carries it wherever its socket goes (a media event loop).
pub struct OpenConnection(Option<Arc<AtomicUsize>>);

impl OpenConnection {
    /// A place counted nowhere (a socket from `MEDIA_PORT`'s listener, which has no limit).
    pub fn uncounted() -> OpenConnection {
        OpenConnection(None)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if let Some(open) = &self.0 {
            open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Answers the requests in `input` as a connection on `peer` would (framing, limits, dispatch,
/// answer), appending the answers to `out`, without a socket or timeouts: the HTTP path on its
/// own, for `benches/http.rs`.
pub fn answer_in_memory(
    service: &dyn Service,
    input: &[u8],
    peer: SocketAddr,
    limits: &Limits,
    out: &mut Vec<u8>,
) {
    conn::answer_all(service, input, peer, limits, out)
}

/// Upload bytes held at once across the server's connections ([`Limits::max_uploads_held_bytes`]).
#[derive(Debug, Default)]
pub struct UploadBudget {
    held: AtomicUsize,
}

impl UploadBudget {
    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Holds `bytes` more for `held` (which gives them all back when dropped); false, holding
    /// nothing more, when that would go past `max`.
    fn try_hold(self: &Arc<Self>, held: &mut HeldUpload, bytes: usize, max: usize) -> bool {
        let mut now = self.held.load(Ordering::Acquire);
        loop {
            let Some(after) = now.checked_add(bytes).filter(|after| *after <= max) else {
                return false;
            };
            match self
                .held
                .compare_exchange_weak(now, after, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(actual) => now = actual,
            }
        }
        held.budget.get_or_insert_with(|| self.clone());
        held.bytes += bytes;
        true
    }
}

/// The bytes one upload holds of the [`UploadBudget`], given back when dropped (after its answer).
#[derive(Debug, Default)]
pub(crate) struct HeldUpload {
    budget: Option<Arc<UploadBudget>>,
    bytes: usize,
}

impl Drop for HeldUpload {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

/// A bound listener; [`Server::start`] spawns its accept loop on a coroutine.
pub struct Server {
    listener: may::net::TcpListener,
    /// `TLS_CERT`/`TLS_KEY`: every connection speaks TLS.
    tls: Option<Arc<crate::tls::ServerTls>>,
    /// Upload bytes held across its connections.
    uploads: Arc<UploadBudget>,
}

/// A listener on `addr` that no other process is listening on. may's `TcpListener::bind` sets
/// SO_REUSEPORT (may 0.3 net/tcp.rs), so a second exotel-voicebot on the same port bound too
/// and the kernel shared the connections between the two: the other server's media tokens then
/// failed with 401. A plain bind first (no SO_REUSEPORT, so it fails on any socket already
/// bound there) makes a taken port an error; port 0 asks for a fresh port and needs no check.
pub fn bind_exclusive(addr: SocketAddr) -> std::io::Result<may::net::TcpListener> {
    if addr.port() != 0 {
        drop(std::net::TcpListener::bind(addr)?);
    }
    may::net::TcpListener::bind(addr)
}

impl Server {
    pub fn bind(addr: SocketAddr) -> std::io::Result<Server> {
        Ok(Server {
            listener: bind_exclusive(addr)?,
            tls: None,
            uploads: Arc::default(),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves HTTPS: each accepted connection takes `tls`'s configuration of that moment.
    pub fn with_tls(mut self, tls: Option<Arc<crate::tls::ServerTls>>) -> Server {
        self.tls = tls;
        self
    }

    /// Counts its uploads in `uploads` (which the service may show, as `/metrics` does).
    pub fn with_uploads(mut self, uploads: Arc<UploadBudget>) -> Server {
        self.uploads = uploads;
        self
    }

    /// Accepts connections until the process ends, one coroutine each.
    pub fn start(
        self,
        service: Arc<dyn Service>,
        limits: Limits,
    ) -> may::coroutine::JoinHandle<()> {
        let limits = Arc::new(limits);
        let open = Arc::new(AtomicUsize::new(0));
        let uploads = self.uploads.clone();
        may::go!(move || loop {
            let (stream, peer) = match accept(&self.listener, self.tls.as_deref()) {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    crate::warn!("http.accept_failed", error = e);
                    may::coroutine::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if open.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
                open.fetch_sub(1, Ordering::AcqRel);
                conn::refuse_over_capacity(stream, limits.max_connections);
                continue;
            }
            let (service, limits, uploads) = (service.clone(), limits.clone(), uploads.clone());
            let place = OpenConnection(Some(open.clone()));
            let builder = may::coroutine::Builder::new().stack_size(CONNECTION_STACK_WORDS);
            let spawned = may::go!(builder, move || {
                let shared = conn::Shared {
                    service: &*service,
                    limits: &limits,
                    uploads: &uploads,
                };
                conn::serve(stream, peer, &shared, place);
            });
            if let Err(e) = spawned {
                crate::error!("http.spawn_failed", peer = peer, error = e);
            }
        })
    }
}

/// The next connection, under TLS when the server has a certificate. The handshake itself
/// happens on the connection's coroutine, at its first read, within the request deadlines.
pub fn accept(
    listener: &may::net::TcpListener,
    tls: Option<&crate::tls::ServerTls>,
) -> std::io::Result<(Conn, SocketAddr)> {
    let (stream, peer) = listener.accept()?;
    let conn = match tls {
        Some(tls) => Conn::Tls(Box::new(tls.accept(stream)?)),
        None => Conn::Plain(stream),
    };
    Ok((conn, peer))
}
