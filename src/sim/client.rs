//! How the simulated Exotel reaches the server: plain HTTP and `ws://`, or HTTPS and `wss://`
//! trusting a CA file (`simulate --tls-ca`, for a server with `TLS_CERT`). One request per
//! connection, as Exotel's webhooks come.

use crate::media::looped::LoopSocket;
use may::net::TcpStream;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The server as the simulator sees it.
#[derive(Clone)]
pub struct Server {
    pub addr: SocketAddr,
    /// Speak TLS, trusting these roots; the server's name is `localhost`, the name a test
    /// certificate carries.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// The name asked of a TLS server.
pub const TLS_NAME: &str = "localhost";

impl Server {
    pub fn plain(addr: SocketAddr) -> Server {
        Server { addr, tls: None }
    }

    /// `http://addr` or `https://localhost:port`.
    pub fn base_url(&self) -> String {
        match self.tls {
            None => format!("http://{}", self.addr),
            Some(_) => format!("https://{TLS_NAME}:{}", self.addr.port()),
        }
    }

    /// The `Host` a request to `addr` names: under TLS the certificate's name, which a proxy
    /// routes by.
    pub fn host(&self, addr: SocketAddr) -> String {
        match self.tls {
            None => addr.to_string(),
            Some(_) => format!("{TLS_NAME}:{}", addr.port()),
        }
    }

    /// A socket to `addr` (the server's, or a port of its host), under TLS when the server
    /// speaks it.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<Socket> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(match &self.tls {
            None => Socket::Plain(stream),
            Some(config) => {
                let name =
                    rustls::pki_types::ServerName::try_from(TLS_NAME).map_err(io::Error::other)?;
                let conn = rustls::ClientConnection::new(config.clone(), name)
                    .map_err(io::Error::other)?;
                Socket::Tls(Box::new(rustls::StreamOwned::new(conn, stream)))
            }
        })
    }

    /// One request, `Connection: close`; the status and body of the answer.
    pub fn fetch(
        &self,
        method: &str,
        target: &str,
        json: Option<&str>,
    ) -> Result<(u16, Vec<u8>), String> {
        self.fetch_with_token(method, target, json, None)
    }

    /// [`Server::fetch`] with `Authorization: Bearer {token}`.
    pub fn fetch_with_token(
        &self,
        method: &str,
        target: &str,
        json: Option<&str>,
        token: Option<&str>,
    ) -> Result<(u16, Vec<u8>), String> {
        let mut socket = self
            .connect(self.addr)
            .map_err(|e| format!("{}: {e}", self.addr))?;
        let tls = self.tls.is_some();
        let body = json.unwrap_or("");
        let host = self.host(self.addr);
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if json.is_some() {
            request.push_str("Content-Type: application/json\r\n");
        }
        if let Some(token) = token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        socket
            .write_all(request.as_bytes())
            .and_then(|()| socket.flush())
            .map_err(|e| explain(format!("sending {method} {target}: {e}"), tls, &[]))?;
        let mut answer = Vec::new();
        if let Err(e) = socket.read_to_end(&mut answer) {
            // A peer that closes without TLS's close_notify: the length says if all came.
            if e.kind() != io::ErrorKind::UnexpectedEof || answer.is_empty() {
                let why = format!("reading the answer to {method} {target}: {e}");
                return Err(explain(why, tls, &answer));
            }
        }
        parse_answer(&answer).map_err(|e| {
            explain(
                format!("the answer to {method} {target}: {e}"),
                tls,
                &answer,
            )
        })
    }
}

/// `why`, with what is most likely wrong when the two ends disagree about TLS: a plain client
/// at a server that speaks TLS gets no HTTP back (at most a TLS alert, which starts 0x15 0x03),
/// and a certificate made with a plain `openssl req -x509` is a CA's, which rustls refuses to
/// take as the server's own.
fn explain(why: String, tls: bool, answer: &[u8]) -> String {
    if why.contains("CaUsedAsEndEntity") {
        return format!(
            "{why}: the server's certificate is a CA certificate (what `openssl req -x509` makes by default); serve a certificate signed by that CA, or make it with -addext basicConstraints=critical,CA:FALSE (docs/GUIDE.md, Deploy in full)"
        );
    }
    if !tls && (answer.is_empty() || answer.starts_with(&[0x15, 0x03])) {
        return format!(
            "{why}: no HTTP answer; if the server serves HTTPS (TLS_CERT), pass --tls-ca with the CA that signed its certificate"
        );
    }
    why
}

fn parse_answer(answer: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(answer) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Err("cut short".into()),
        Err(e) => return Err(e.to_string()),
    };
    let status = response.code.unwrap_or(0);
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        });
    let body = &answer[head..];
    match length {
        Some(n) if body.len() < n => Err(format!("{} of {n} body bytes", body.len())),
        Some(n) => Ok((status, body[..n].to_vec())),
        None => Ok((status, body.to_vec())),
    }
}

/// A connection to the server, plain or TLS; or, once a load's loop carries it, plain and
/// non-blocking (`sim::streams`).
pub enum Socket {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Looped(LoopSocket),
}

impl Socket {
    /// How long a read waits (nothing on a loop's socket, which never waits).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Plain(s) => s.set_read_timeout(timeout),
            Socket::Tls(t) => t.get_ref().set_read_timeout(timeout),
            Socket::Looped(_) => Ok(()),
        }
    }

    /// Takes a plain socket off may's poller for a loop's (the same connection, its descriptor
    /// duplicated, non-blocking). `false` for a TLS socket, which stays where it is.
    pub fn make_looped(&mut self) -> io::Result<bool> {
        let Socket::Plain(stream) = self else {
            return Ok(matches!(self, Socket::Looped(_)));
        };
        let looped = LoopSocket::from_std(stream.inner().try_clone()?)?;
        // Dropping may's socket deregisters it from may's poller; the duplicate stays open.
        *self = Socket::Looped(looped);
        Ok(true)
    }

    pub fn is_looped(&self) -> bool {
        matches!(self, Socket::Looped(_))
    }

    pub fn looped(&mut self) -> Option<&mut LoopSocket> {
        match self {
            Socket::Looped(s) => Some(s),
            _ => None,
        }
    }

    /// Whether a write found a loop's socket full since the last time this was asked.
    pub fn take_write_blocked(&mut self) -> bool {
        self.looped()
            .is_some_and(|s| std::mem::take(&mut s.write_blocked))
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(s) => s.read(buf),
            Socket::Tls(t) => t.read(buf),
            Socket::Looped(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(s) => s.write(buf),
            Socket::Tls(t) => t.write(buf),
            Socket::Looped(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Plain(s) => s.flush(),
            Socket::Tls(t) => t.flush(),
            Socket::Looped(s) => s.flush(),
        }
    }
}
