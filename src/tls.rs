//! TLS, one stack for the whole binary: rustls 0.23 with its default provider (aws-lc-rs, the
//! one minreq 3 builds in for the Exotel API client).
//!
//! - [`ServerTls`]: `TLS_CERT`/`TLS_KEY` read once at start and again on SIGHUP. Each new
//!   connection takes the configuration current when it was accepted; a reload changes only
//!   connections accepted after it, so live calls keep their sessions.
//! - [`TlsStream`]: a server or client connection over any byte stream (a may socket, a
//!   [`crate::media::pump::Pumped`] socket). A read makes **at most one** read of the socket and
//!   answers `Interrupted` when that read did not complete a record: the caller's own deadline
//!   (the HTTP head timeout, the media session's turn) decides whether to wait longer, so a
//!   client trickling one byte at a time cannot stretch a deadline the way a loop inside the
//!   read would let it.
//! - [`client_config`]: the web's root certificates (webpki-roots, as minreq uses) plus a file
//!   of extra ones, for the relay's `wss://` and `simulate --tls-ca`.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// The certificate chain and key files of `TLS_CERT`/`TLS_KEY`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The DER certificates of a PEM text; an error says what is wrong with it.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not PEM ({e})"))?;
    if certs.is_empty() {
        return Err("holds no -----BEGIN CERTIFICATE----- block".into());
    }
    Ok(certs)
}

/// Why `TLS_CERT`/`TLS_KEY` did not load: the variable whose file is at fault, and what is wrong.
#[derive(Debug, PartialEq, Eq)]
pub struct TlsFileError {
    pub variable: &'static str,
    pub problem: String,
}

impl std::fmt::Display for TlsFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.variable, self.problem)
    }
}

impl std::error::Error for TlsFileError {}

/// A server configuration from a certificate chain file and its key (PKCS#8, PKCS#1 or SEC1).
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsFileError> {
    let fault = |variable: &'static str, path: &Path, problem: String| TlsFileError {
        variable,
        problem: format!("{}: {problem}", path.display()),
    };
    let read = |variable, path: &Path| {
        std::fs::read(path).map_err(|e| fault(variable, path, format!("cannot be read: {e}")))
    };
    let chain = certificates(&read("TLS_CERT", &files.cert)?)
        .map_err(|e| fault("TLS_CERT", &files.cert, e))?;
    let key = PrivateKeyDer::from_pem_slice(&read("TLS_KEY", &files.key)?).map_err(|e| {
        fault(
            "TLS_KEY",
            &files.key,
            format!("holds no usable private key ({e})"),
        )
    })?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            let problem = format!(
                "this key and TLS_CERT {} do not make a usable pair: {e}",
                files.cert.display()
            );
            fault("TLS_KEY", &files.key, problem)
        })?;
    Ok(Arc::new(config))
}

/// The server side's current configuration, shared by the listeners; replaced on SIGHUP.
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl ServerTls {
    /// Reads the files now: a server with a broken certificate must not start.
    pub fn load(files: &TlsFiles) -> Result<ServerTls, TlsFileError> {
        Ok(ServerTls {
            current: RwLock::new(server_config(files)?),
            files: files.clone(),
        })
    }

    /// Reads the files again. On an error the configuration in use stays, and the error says
    /// why (a half-copied certificate must not take the server off the air).
    pub fn reload(&self) -> Result<(), TlsFileError> {
        let fresh = server_config(&self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// A server connection for a newly accepted socket, on the current configuration.
    pub fn accept<S>(&self, sock: S) -> io::Result<TlsStream<rustls::ServerConnection, S>> {
        let config = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsStream { conn, sock })
    }
}

/// A client configuration trusting the web's roots and `extra_roots` (DER). Built once per set
/// of extra roots, not per connection.
pub fn client_config(extra_roots: &[Vec<u8>]) -> Arc<rustls::ClientConfig> {
    type Built = Vec<(Vec<Vec<u8>>, Arc<rustls::ClientConfig>)>;
    static BUILT: Mutex<Built> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, config)) = built.iter().find(|(roots, _)| roots == extra_roots) {
        return config.clone();
    }
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for der in extra_roots {
        // Checked when the configuration was read (`check_trust_anchors`).
        let _ = roots.add(CertificateDer::from(der.clone()));
    }
    let config = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    built.push((extra_roots.to_vec(), config.clone()));
    config
}

/// Each certificate of a PEM file, checked to be usable as a trust anchor, as DER.
pub fn trust_anchors(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    let certs = certificates(&pem)?;
    for (i, der) in certs.iter().enumerate() {
        rustls::RootCertStore::empty()
            .add(der.clone())
            .map_err(|e| format!("certificate {} is not usable: {e}", i + 1))?;
    }
    Ok(certs.into_iter().map(|c| c.to_vec()).collect())
}

/// A TLS connection over a byte stream; see the module doc for how reads wait.
pub struct TlsStream<C, S> {
    conn: C,
    sock: S,
}

impl<C, S> TlsStream<C, S> {
    pub fn get_ref(&self) -> &S {
        &self.sock
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.sock
    }

    /// The connection and the socket, to go on over another socket ([`TlsStream::resume`]).
    pub fn into_parts(self) -> (C, S) {
        (self.conn, self.sock)
    }

    /// A connection taken from [`TlsStream::into_parts`], its buffered records included, going
    /// on over `sock`.
    pub fn resume(conn: C, sock: S) -> TlsStream<C, S> {
        TlsStream { conn, sock }
    }
}

type Common<D> = rustls::ConnectionCommon<D>;

impl<C, S, D> TlsStream<C, S>
where
    C: std::ops::DerefMut<Target = Common<D>>,
    S: Read + Write,
{
    /// Writes every TLS record waiting to go. An error (the socket's write timeout) leaves the
    /// rest waiting for the next write or flush.
    fn send_records(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut self.sock)? == 0 {
                return Err(ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    /// One read of the socket into rustls, and whatever it must answer (handshake, alerts).
    /// `Ok(false)` at the end of the stream.
    fn receive_records(&mut self) -> io::Result<bool> {
        if self.conn.read_tls(&mut self.sock)? == 0 {
            return Ok(false);
        }
        let processed = self.conn.process_new_packets();
        // An alert for the peer goes out even when the records were bad.
        let sent = self.send_records();
        processed.map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
        sent?;
        Ok(true)
    }
}

impl<C, S, D> TlsStream<C, S>
where
    C: std::ops::DerefMut<Target = Common<D>>,
    S: Read + Write,
{
    /// Tells the peer that nothing more follows (best effort: the socket closes anyway).
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
        let _ = self.send_records();
    }
}

impl<C, S, D> Read for TlsStream<C, S>
where
    C: std::ops::DerefMut<Target = Common<D>>,
    S: Read + Write,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.conn.reader().read(buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            done => return done,
        }
        self.send_records()?;
        if !self.receive_records()? {
            // The peer closed without close_notify: the end of the stream for HTTP/1.1, whose
            // framing says whether anything is missing.
            return match self.conn.reader().read(buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(0),
                done => done,
            };
        }
        match self.conn.reader().read(buf) {
            // Bytes came but no whole record yet: the caller decides whether to wait on.
            Err(e) if e.kind() == ErrorKind::WouldBlock => Err(ErrorKind::Interrupted.into()),
            done => done,
        }
    }
}

impl<C, S, D> Write for TlsStream<C, S>
where
    C: std::ops::DerefMut<Target = Common<D>>,
    S: Read + Write,
{
    /// Records left from an earlier write go first; if the socket still cannot take them, the
    /// error says so and nothing of `buf` is taken, so what waits stays bounded by one write.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send_records()?;
        let taken = self.conn.writer().write(buf)?;
        // Records that do not fit now go with the next write or flush.
        let _ = self.send_records();
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.conn.writer().flush()?;
        self.send_records()?;
        self.sock.flush()
    }
}
