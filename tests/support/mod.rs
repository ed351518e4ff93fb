//! Shared by the end-to-end tests: the real binary started on a loopback port and a raw HTTP
//! client that can send anything (bad framing included) and read the answer. The fake Exotel
//! (a real HTTP server recording what it receives) is `exotel_voicebot::sim::fake_exotel`, since
//! `simulate --outbound` uses it too.
#![allow(dead_code)]

pub mod postgres;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A fresh empty directory for one test (working directory, .env, data).
pub fn temp_dir(name: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "exotel-voicebot-test-{}-{name}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `sql` on the stored state of the server whose directory is `dir`: SQLite's
/// `dir/data/calls.db`, or its PostgreSQL database under `dev/test-postgres`. For tests that
/// age rows, as time passing would.
pub fn execute_sql(dir: &Path, sql: &str) {
    match postgres::database_for(dir) {
        Some(url) => {
            let out = Command::new("psql")
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url, "-c", sql])
                .output()
                .expect("psql runs");
            assert!(
                out.status.success(),
                "{sql}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None => {
            let db = rusqlite::Connection::open(dir.join("data/calls.db")).unwrap();
            db.execute_batch(sql).unwrap();
        }
    }
}

/// Checks that the stored state is its owner's only: SQLite's `calls.db` has mode 0600; on
/// PostgreSQL (`dev/test-postgres`) nothing is stored in `DATA_DIR` at all.
pub fn assert_stored_state_private(dir: &Path) {
    let file = dir.join("data/calls.db");
    if postgres::database_for(dir).is_some() {
        assert!(!file.exists(), "calls.db written beside PostgreSQL");
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "calls.db mode {mode:o}");
}

/// The real binary, serving on 127.0.0.1 with an OS-chosen port.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    pub dir: PathBuf,
}

impl Server {
    /// Starts the binary with exactly these variables (the test process's own environment is not
    /// passed on, so a developer's EXOTEL_* cannot leak in) in an empty working directory.
    pub fn start(env: &[(&str, &str)]) -> Server {
        Server::start_in(temp_dir("server"), env)
    }

    pub fn start_in(dir: PathBuf, env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"));
        command.arg("serve");
        Server::spawn(command, dir, env)
    }

    /// Like [`Server::start`], under open-file limits of `soft` and `hard` (set by the shell's
    /// `ulimit` before the binary starts, as a service manager would).
    pub fn start_with_open_files(soft: u64, hard: u64, env: &[(&str, &str)]) -> Server {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            &format!("ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$0\" serve"),
            env!("CARGO_BIN_EXE_exotel-voicebot"),
        ]);
        Server::spawn(command, temp_dir("server"), env)
    }

    /// Like [`Server::start_in`], with `command` (a shell that sets things up, then execs the
    /// binary's `serve`) in place of the binary itself.
    pub fn start_command(command: Command, dir: PathBuf, env: &[(&str, &str)]) -> Server {
        Server::spawn(command, dir, env)
    }

    fn spawn(mut command: Command, dir: PathBuf, env: &[(&str, &str)]) -> Server {
        command
            .current_dir(&dir)
            .env_clear()
            .env("PORT", "0")
            .env("BIND", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        if !env.iter().any(|(k, _)| *k == "DATABASE_URL") {
            if let Some(url) = postgres::database_for(&dir) {
                command.env("DATABASE_URL", url);
            }
        }
        let mut child = command.spawn().expect("start the binary");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split(" server.listening addr=").nth(1) {
                        let addr = rest.split(' ').next().unwrap_or("").to_owned();
                        let _ = tx.send(addr);
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr.parse().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                panic!("the server did not start; log: {:?}", log.lock().unwrap());
            }
        };
        Server {
            child,
            addr,
            log,
            dir,
        }
    }

    /// A media URL's path and query, as the connect webhook gives it for `call_sid`.
    pub fn media_path(&self, call_sid: &str) -> String {
        let r = self.get(&format!("/voicebot/connect?CallSid={call_sid}"));
        let url = r.json()["url"].as_str().unwrap().to_owned();
        url[url.find("/media").unwrap()..].to_owned()
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to 5 s for a log line containing every one of `parts`.
    pub fn wait_for_log(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(line) = self
                .log()
                .into_iter()
                .find(|l| parts.iter().all(|p| l.contains(p)))
            {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {parts:?} in {:#?}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log once it has caught up with now: a request the server must log (a malformed
    /// head, `http.rejected`, naming a fresh marker) is sent, and its line awaited. Lines are
    /// read in the order the server wrote them, so every line written before it is in. For
    /// checks that a line is absent.
    pub fn settled_log(&self) -> Vec<String> {
        static MARKERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = MARKERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let marker = format!("log-marker-{}-{n}", std::process::id());
        let mut conn = Conn::open(self.addr);
        conn.send(
            format!("GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: {marker}\r\n\r\n")
                .as_bytes(),
        );
        let answer = conn.read_response();
        assert_eq!(answer.status, 400, "the marker request: {answer:?}");
        self.wait_for_log(&["http.rejected", &marker]);
        self.log()
    }

    pub fn get(&self, path: &str) -> TestResponse {
        request(self.addr, "GET", path, &[], b"")
    }

    /// The call's row once it satisfies `done` (`headers`: how to ask, e.g. a bearer token):
    /// the call log writes behind the answers and the log lines. Fails the test with the last
    /// row after 10 s.
    pub fn row_when(
        &self,
        id: &str,
        headers: &[(&str, &str)],
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let r = request(self.addr, "GET", &format!("/calls/{id}"), headers, b"");
            if r.status == 200 && done(&r.json()) {
                return r.json();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "row {id}: {}",
                String::from_utf8_lossy(&r.body)
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The call's row once its end is written: a row read at `media.ended` may still say
    /// `in-progress` on a busy machine.
    pub fn ended_row(&self, id: &str, headers: &[(&str, &str)]) -> serde_json::Value {
        self.row_when(id, headers, |row| !row["endedAt"].is_null())
    }

    pub fn post_json(&self, path: &str, body: &str) -> TestResponse {
        request(
            self.addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }

    /// `POST path` with a form body, as Exotel sends its callbacks.
    pub fn post_form(&self, path: &str, body: &str) -> TestResponse {
        request(
            self.addr,
            "POST",
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
    }

    /// Waits (up to 5 s) until `/health` answers 200 on a new connection: after connections
    /// are given back, for instance.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = request(self.addr, "GET", "/health", &[], b"");
            if r.status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "not healthy: {r:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts the server still answers `/health` on a new connection.
    pub fn assert_healthy(&self) {
        let r = self.get("/health");
        assert_eq!(r.status, 200, "health after the test: {r:?}");
        assert_eq!(r.json()["status"], "ok");
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory (`VmRSS`) in KiB and open file descriptors, from `/proc`; panics when
    /// either cannot be read, so that a comparison of them never passes on zeros.
    pub fn rss_kib_and_fds(&self) -> (u64, usize) {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
            .count();
        (rss, fds)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends a signal by name (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {name}");
    }

    /// Waits up to `within` for the process to exit; its exit code (None if it did not exit or
    /// died by a signal) and its working directory, kept.
    pub fn wait_exit(mut self, within: Duration) -> (Option<i32>, PathBuf) {
        let deadline = Instant::now() + within;
        let code = loop {
            match self.child.try_wait().unwrap() {
                Some(status) => break status.code(),
                None if Instant::now() >= deadline => break None,
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        (code, std::mem::take(&mut self.dir))
    }

    /// `kill -9`: no chance to clean up. Returns the working directory, kept for a restart.
    pub fn kill_9(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::take(&mut self.dir)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Starts `n` simulated echo calls of `ms` each against `server` and waits until all of them
/// are streaming (`in-progress` in the call log).
pub fn start_live_calls(
    server: &Server,
    n: usize,
    ms: u32,
) -> Vec<std::thread::JoinHandle<exotel_voicebot::sim::CallReport>> {
    use exotel_voicebot::sim::{run_call, CallPlan};
    let addr = server.addr;
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let audio = exotel_voicebot::media::audio::speech_like(8000, ms, i as u64);
            std::thread::spawn(move || run_call(&CallPlan::new(addr, audio)))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.get("/calls?status=in-progress").json()["calls"]
        .as_array()
        .map_or(0, Vec::len)
        < n
    {
        assert!(Instant::now() < deadline, "the {n} calls did not all start");
        std::thread::sleep(Duration::from_millis(20));
    }
    calls
}

/// An answer as read off the wire.
#[derive(Debug, Clone)]
pub struct TestResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Asserts an error answer of docs/ARCHITECTURE.md §5: this status and `{"error", "detail"}`.
    pub fn assert_error(&self, status: u16, kind: &str) -> serde_json::Value {
        assert_eq!(
            self.status,
            status,
            "{self:?} body={}",
            String::from_utf8_lossy(&self.body)
        );
        let json = self.json();
        assert_eq!(json["error"], kind, "{json}");
        assert!(
            json["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "an error needs a detail: {json}"
        );
        json
    }
}

/// A keep-alive connection that reads answers one by one.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// The last read ended by the read timeout, not by the peer.
    timed_out: bool,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        Conn {
            stream,
            buf: Vec::new(),
            timed_out: false,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one answer (Content-Length framed); panics if the connection closes first, or no
    /// answer comes within the read timeout (a hang), saying which.
    pub fn read_response(&mut self) -> TestResponse {
        match self.try_read_response() {
            Some(answer) => answer,
            None if self.timed_out => panic!(
                "no answer within the read timeout ({:?})",
                self.stream.read_timeout().ok().flatten()
            ),
            None => panic!("the connection closed before an answer"),
        }
    }

    pub fn try_read_response(&mut self) -> Option<TestResponse> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(head_len)) = parsed.parse(&self.buf) {
                let status = parsed.code.unwrap();
                let headers = header_map(parsed.headers);
                let len: usize = headers
                    .get("content-length")
                    .map(|v| v.parse().unwrap())
                    .unwrap_or(0);
                if status == 100 {
                    self.buf.drain(..head_len);
                    return Some(TestResponse {
                        status,
                        headers,
                        body: Vec::new(),
                    });
                }
                if self.buf.len() >= head_len + len {
                    let body = self.buf[head_len..head_len + len].to_vec();
                    self.buf.drain(..head_len + len);
                    return Some(TestResponse {
                        status,
                        headers,
                        body,
                    });
                }
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Err(e) => {
                    use std::io::ErrorKind::{TimedOut, WouldBlock};
                    self.timed_out = matches!(e.kind(), WouldBlock | TimedOut);
                    return None;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads the head of an answer to `HEAD` (its Content-Length describes a body that is not sent).
    pub fn read_response_head_only(&mut self) -> TestResponse {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(head_len)) = parsed.parse(&self.buf) {
                let status = parsed.code.unwrap();
                self.buf.drain(..head_len);
                return TestResponse {
                    status,
                    headers: HashMap::new(),
                    body: Vec::new(),
                };
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => panic!("closed before the head"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Like `try_read_response`, but a read timeout just means "nothing yet" (None) and keeps
    /// what was read so far.
    pub fn try_read_response_nonfatal(&mut self) -> Option<TestResponse> {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.try_read_response()
            }
        }
    }

    /// True if the server closed the connection (EOF) within `wait`.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0))
            || matches!(self.stream.read(&mut byte), Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    }
}

/// Headers by lower-cased name.
pub fn header_map(headers: &[httparse::Header<'_>]) -> HashMap<String, String> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

/// One request on a fresh connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> TestResponse {
    let mut conn = Conn::open(addr);
    conn.send(&request_bytes(method, path, headers, body));
    conn.read_response()
}

/// `method path` with a JSON body, on a fresh connection.
pub fn json_request(server: &Server, method: &str, path: &str, body: &str) -> TestResponse {
    request(
        server.addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// The environment of a server whose default line is the fake Exotel at `base_url`.
pub fn exotel_line_env(base_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("EXOTEL_API_KEY", "k".into()),
        ("EXOTEL_API_TOKEN", "t".into()),
        ("EXOTEL_SID", "acme".into()),
        ("EXOTEL_APP_ID", "77".into()),
        ("EXOTEL_CALLER_ID", "08047112233".into()),
        ("EXOTEL_API_BASE_URL", base_url.into()),
    ]
}

/// A well-formed HTTP/1.1 request with Content-Length when there is a body.
pub fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Decodes `a=1&b=%2B2` into pairs, for checking what the fake Exotel received.
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    exotel_voicebot::http::form::parse(std::str::from_utf8(body).unwrap())
}

/// A WebSocket client on `path` of `addr`, reads timing out after 5 s; a refused handshake is
/// the error (its HTTP answer inside).
pub fn ws_connect(
    addr: SocketAddr,
    path: &str,
) -> Result<tungstenite::WebSocket<TcpStream>, tungstenite::Error> {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    tungstenite::client(format!("ws://{addr}{path}").as_str(), stream)
        .map(|(ws, _)| ws)
        .map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => {
                tungstenite::Error::Io(std::io::ErrorKind::TimedOut.into())
            }
        })
}

/// Asserts a WebSocket handshake refused with `401` (a void or wrong token), not failed some
/// other way (a refused connection, a timeout) that would hide a server that hangs.
pub fn assert_refused_401<T: std::fmt::Debug>(result: Result<T, tungstenite::Error>, what: &str) {
    match result {
        Err(tungstenite::Error::Http(response)) if response.status() == 401 => {}
        other => panic!("{what}: expected a 401 handshake, got {other:?}"),
    }
}

/// Bot chunks that reached the caller between its pressing `key` and the `clear` that followed.
/// Panics when the key was not sent or no clear came.
pub fn chunks_between_key_and_clear(report: &exotel_voicebot::sim::CallReport, key: char) -> usize {
    use exotel_voicebot::sim::caller::Event;
    let events = &report.events;
    let pressed = events
        .iter()
        .position(|(_, e)| *e == Event::SentDtmf(key))
        .expect("the key was sent");
    let cleared = events
        .iter()
        .position(|(_, e)| *e == Event::ReceivedClear)
        .expect("a clear reached the caller");
    events[pressed..cleared]
        .iter()
        .filter(|(_, e)| matches!(e, Event::ReceivedMedia { .. }))
        .count()
}

/// The test bot's echo delay in the relay tests.
pub const RELAY_ECHO_DELAY_MS: u32 = 400;

/// A server with `BOT=relay` to `bot_url`, and `extra` environment.
pub fn relay_server(bot_url: &str, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![("BOT", "relay"), ("BOT_URL", bot_url)];
    env.extend_from_slice(extra);
    Server::start(&env)
}

/// `ms` of voice-like caller audio at `rate`, checked against the relay tests' echo delay.
pub fn relay_plan(server: &Server, rate: u32, ms: u32) -> exotel_voicebot::sim::CallPlan {
    let audio = exotel_voicebot::media::audio::speech_like(rate, ms, 7);
    let mut plan = exotel_voicebot::sim::CallPlan::new(server.addr, audio);
    plan.sample_rate = rate;
    plan.echo_delay_ms = RELAY_ECHO_DELAY_MS;
    plan.tail_ms = 800;
    plan
}

/// A CA and a `localhost` certificate it signed, as PEM files in `dir` named after `name`.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn make_pki(dir: &Path, name: &str) -> Pki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("test CA {name}"));
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let pki = Pki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-cert.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
    std::fs::write(&pki.cert, leaf.pem()).unwrap();
    std::fs::write(&pki.key, leaf_key.serialize_pem()).unwrap();
    pki
}

/// `POST /call` with `body`, answered by `fake` in stream mode: the call's callLogId and the
/// media URL Exotel was given for it.
pub fn place_stream_call(
    server: &Server,
    fake: &exotel_voicebot::sim::fake_exotel::FakeExotel,
    body: &str,
) -> (String, String) {
    place_stream_call_as(server, fake, &[], body)
}

/// [`place_stream_call`] with these headers too (an operator's token, say).
pub fn place_stream_call_as(
    server: &Server,
    fake: &exotel_voicebot::sim::fake_exotel::FakeExotel,
    headers: &[(&str, &str)],
    body: &str,
) -> (String, String) {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    let placed = request(server.addr, "POST", "/call", &all, body.as_bytes());
    assert_eq!(placed.status, 200, "{}", placed.json());
    let id = placed.json()["callLogId"].as_str().unwrap().to_owned();
    let url = fake
        .call_for(&id)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == "StreamUrl")
        .expect("a stream-mode call's StreamUrl")
        .1;
    (id, url)
}
