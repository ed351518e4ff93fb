//! A client's connection as the HTTP layer and the media session see it: a may socket, plain or
//! under TLS (`TLS_CERT`/`TLS_KEY`, [`crate::tls`]). Both read and write the same way; a TLS read
//! that got bytes but no whole record answers `Interrupted`, which the readers retry against
//! their own deadline.

use crate::tls::TlsStream;
use may::net::TcpStream;
use std::io::{self, Read, Write};
use std::time::Duration;

/// A TLS server connection over a may socket.
pub type TlsConn = TlsStream<rustls::ServerConnection, TcpStream>;

pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsConn>),
}

impl Conn {
    /// The socket underneath, for its options (timeouts, nodelay, shutdown).
    pub fn socket(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(t) => t.get_ref(),
        }
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket().set_read_timeout(timeout)
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(t) => t.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(t) => t.flush(),
        }
    }
}
