//! exotel-voicebot: the telephony edge between Exotel and a voice bot, as one small binary.
//!
//! **The flow.** A user's `curl` sends `POST /call`; its route reads it and [`calls::place`]
//! validates it and hands one `Calls/connect` request to [`exotel::pool`], whose OS threads make
//! the blocking HTTPS request with [`exotel::client`]. Exotel dials the customer and then asks
//! our connect webhook (its parameters are [`exotel::webhook`]'s) where to stream the audio; the answer is a `wss://…/media` URL carrying a
//! per-call token from [`calls::registry`] and the call's [`calls::CallLogId`], the one id that
//! follows a call through Exotel's `CustomField`, the webhook, the media URL and every log line.
//!
//! **The media.** Exotel opens that URL; [`media`] checks the token, [`websocket`] runs the
//! socket's frames, and [`media`] runs one
//! [`media::session::Session`] per call, on one of the media event loops ([`media::engine`], one
//! per core) or, for a TLS caller, on the connection's coroutine: it parses Exotel's frames
//! ([`exotel::stream`]), hands the audio to a [`bot::Bot`] and paces what the bot answers in
//! Exotel-sized chunks. With `BOT=relay` the call goes instead to an upstream bot over a second
//! WebSocket ([`bot::relay`]), whose socket waits beside the caller's: in the same loop, or on a
//! coroutine in a pump ([`media::pump`]) so that either socket can wake the session. [`calls::log`] keeps every call in
//! SQLite, retrying writes a failing disk refused, and with `EVENTS_URL` writes each change's
//! event for the user's backend in the same transaction, which [`events`] delivers, signed, from
//! a thread of its own; [`media::recorder`] writes WAVs off the media
//! path; [`calls::slots`] holds each live call's place, bound to its CallSid; and
//! [`calls::watchdog`] ends the calls nobody else will (media that never came, a status
//! callback Exotel never delivered, asked about through Exotel's call details API). [`sim`] plays Exotel (and an
//! upstream bot) for the tests and the load tools; [`sim::wire`] is Exotel's socket in memory,
//! for the allocation test and the benches.
//!
//! **Performance.** `bench/compare` runs the same load against this binary and Node.js and
//! Python baselines (`bench/baselines/`); `benches/` time the pieces (HTTP in memory and on
//! loopback, `/call` up to Exotel, the per-chunk protocol work, the session per frame, the WAV
//! writer). `vendor/may_queue` and `vendor/minreq` are dependencies with one change each (`vendor/README.md`).
//!
//! **After the stream.** A bot (or the caller's key, a failed bot, an agent's policy) can hand
//! the caller to a person: the session records it ([`calls::handoffs`]) before closing the
//! stream, and Exotel's Passthru applet after the Voicebot applet asks (in the shapes
//! [`exotel::passthru`] reads) which branch to take, answered from memory while the caller
//! waits.
//!
//! **Around the calls.** [`calls::dnc`] is the do-not-call list `/call` checks and
//! [`calls::phones`] the ExoPhones with their own Exotel accounts (each a line: account, caller
//! id, applet or stream, limit); [`calls::destination`] is where a stored secret may be sent,
//! and [`calls::rejects`] what an upload's answer says of the rows it refused. [`calls::campaigns`] dials lists of contacts within a window, a
//! rate, a concurrency and a retry policy, on its [`calls::campaigns::dialer`] thread, through the
//! same functions as `/call` ([`calls::place::ServerTelephony`]); all of it is kept by
//! [`store`] (the dialer's storage, behind one narrow interface); [`calls::upkeep`] keeps `DATA_DIR` in shape (`RETENTION_DAYS`, the
//! `backup` command); [`tls`] is the binary's one TLS stack (rustls on ring): the server's HTTPS
//! and `wss://` with `TLS_CERT` (reloaded on SIGHUP), the relay's and `simulate`'s clients.
//!
//! **The console.** [`console`] serves the operator's page under `/ui/` (the files of `ui/`,
//! built in) and keeps the browsers' sign-ins; the page asks the same routes as `curl`, its live
//! view from [`calls::log::live`], a board of the live calls the call log keeps in memory.
//!
//! **The layers.** [`http`] is our own small HTTP/1.1 server on `may` coroutines and `httparse`
//! (docs/ARCHITECTURE.md §2 says why not may_minihttp): framing, limits, timeouts, JSON errors. It calls one
//! [`http::Service`], the [`app::App`], whose [`routes::admit`] decides from a request's head
//! who may ask (before a body is read) and whose [`routes::dispatch`] is a single `match` over
//! method and path, with the handlers beside it, a file per resource; the `calls` modules they
//! ask know nothing of HTTP and say no with a [`calls::Refusal`]. [`config`] reads the environment once; [`auth`] decides who may ask what;
//! [`log`] writes one line per event; [`descriptors`] grows the descriptor table once at start,
//! so that no call waits while the kernel grows it.
//!
//! **The rules.** Nothing that blocks in the kernel runs on a coroutine: blocking work goes to
//! threads over `may` channels, and nothing a coroutine sends to a thread can wait. Wire formats
//! are typed at the edge, lenient in what Exotel may vary and strict in what we send. Every limit
//! has a name and a test at its edge. The reference documents are `docs/ARCHITECTURE.md` and
//! `docs/exotel.md`.

// Public: what the binary (src/main.rs), the bot API, the tests, the benches, the fuzz targets
// and the examples use. The guards, the routes, the dialer's store and the clocks are the
// server's own.
pub mod log;

pub mod app;
pub(crate) mod auth;
pub mod bot;
pub mod calls;
pub mod config;
pub mod console;
pub mod descriptors;
pub(crate) mod events;
pub mod exotel;
#[cfg(feature = "sim")]
pub mod fuzzing;
pub mod http;
pub mod media;
pub mod metrics;
pub(crate) mod routes;
pub mod sim;
pub(crate) mod store;
pub(crate) mod timer;
pub mod tls;
pub mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

/// Makes every file and directory the process creates from now on readable by its user only
/// (umask 077): call data, tokens and recordings are written under `DATA_DIR` by SQLite, the
/// recorder and the handlers, and none of them should depend on the shell's umask. The binary
/// calls it first; a program embedding the server may too.
pub fn keep_files_private() {
    use nix::sys::stat::{umask, Mode};
    umask(Mode::from_bits_truncate(0o077));
}

/// Serves with the echo bot until SIGTERM or SIGINT, then shuts down gracefully.
pub fn serve(config: config::Config) -> std::io::Result<()> {
    let delay = config.echo_delay_ms;
    let echo = move |_: &bot::CallStart<'_>| -> Box<dyn bot::Bot> {
        Box::new(bot::echo::EchoBot::new(delay))
    };
    // Before the server starts, so a signal as soon as it listens is not lost.
    let signals = signals()?;
    let running = start(config, Box::new(echo))?;
    running.serve_signals(signals);
    Ok(())
}

/// The signals a server answers (see [`Running::serve_signals`]): SIGTERM and SIGINT shut it down,
/// SIGHUP reloads its certificate.
pub fn signals() -> std::io::Result<signal_hook::iterator::Signals> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
}

/// Idle coroutines may keeps for reuse (see [`start`]); 0 would mean may's default, 1,000.
pub const COROUTINE_POOL: usize = 1;

/// How long one of may's workers sleeps in `epoll_wait` when nothing wakes it: may's own default
/// is 10 ms, so an idle server woke 100 times a second per worker for nothing (0.6% of a core
/// here, most of an idle server's CPU). Work for a worker wakes it at once (an eventfd) and its
/// sockets' timeouts set their own deadlines, so this only paces an idle worker's stealing
/// from a busy one, which readiness on its own sockets also triggers. Takes effect when set
/// before may's scheduler first runs, as [`start`] does.
pub const MAY_POLL_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);

/// Idle connection coroutines, with their stacks, kept for reuse by a process that is only
/// this server ([`reuse_connection_stacks`]). A connection's coroutine lives for a request or
/// a media handshake, so 16 cover the connections being set up at any moment (a 200-calls-a-
/// second ramp); each pooled stack keeps what it touched resident.
pub const CONNECTION_STACK_POOL: usize = 16;
static CONNECTION_STACKS_REUSED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// For a process that is only this server, before anything in it has used may (the binary
/// calls it first): makes a connection coroutine's stack may's default size and keeps
/// [`CONNECTION_STACK_POOL`] of them, so a connection reuses a stack instead of mapping,
/// guarding and unmapping one (`mmap`, `mprotect`, `munmap`, whose TLB shootdown reaches every
/// core the process ran on). may hands out pooled coroutines by its default size without
/// looking at their stacks, so this is not done by [`start`] for a library user: where may has
/// already run, its pool holds coroutines of the old size, which it would hand out as new ones.
pub fn reuse_connection_stacks() {
    may::config()
        .set_stack_size(http::CONNECTION_STACK_WORDS)
        .set_pool_capacity(CONNECTION_STACK_POOL);
    CONNECTION_STACKS_REUSED.store(true, std::sync::atomic::Ordering::Release);
}

/// A server started by [`start`].
pub struct Running {
    /// The HTTP port's address (with the real port when `PORT=0`).
    pub addr: SocketAddr,
    /// `MEDIA_PORT`'s address, when set.
    pub media_addr: Option<SocketAddr>,
    pub app: Arc<app::App>,
    /// The HTTPS certificate, when `TLS_CERT` is set; [`Running::reload_tls`] replaces it.
    tls: Option<Arc<tls::ServerTls>>,
    accept: may::coroutine::JoinHandle<()>,
}

/// How often a draining server looks whether its calls have ended.
const DRAIN_POLL: std::time::Duration = std::time::Duration::from_millis(50);
/// After the grace period, how long closed sessions get to write their rows.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl Running {
    /// SIGHUP: reads `TLS_CERT`/`TLS_KEY` again. New connections get the new certificate;
    /// connections already open, live calls among them, keep theirs. A broken file keeps the
    /// one in use and logs why.
    pub fn reload_tls(&self) {
        let Some(tls) = &self.tls else {
            info!("server.reload", detail = "no TLS_CERT: nothing to reload");
            return;
        };
        match tls.reload() {
            Ok(()) => info!("tls.reloaded"),
            Err(e) => error!(
                "tls.reload_failed",
                error = e,
                detail = "the certificate in use stays"
            ),
        }
    }

    /// Until SIGTERM or SIGINT, then a graceful shutdown; SIGHUP reloads the certificate.
    /// `signals` comes from [`signals`], made before [`start`].
    pub fn serve_signals(self, mut signals: signal_hook::iterator::Signals) {
        for signal in signals.forever() {
            info!("server.signal", signal = signal);
            if signal == signal_hook::consts::SIGHUP {
                self.reload_tls();
                continue;
            }
            break;
        }
        self.shut_down(&mut signals);
    }

    /// Blocks until the server stops (it does not, short of the process ending).
    pub fn wait(self) {
        let _ = self.accept.join();
    }

    /// Graceful shutdown: no new calls (503 on `/call` and a new call's webhook), while the
    /// calls we have go on for up to `SHUTDOWN_GRACE_S` (a second signal cuts it short): live
    /// ones, and placed ones still ringing, whose webhook, media and status callback are still
    /// served. Then live calls are closed; returns once their rows are written.
    pub fn shut_down(self, signals: &mut signal_hook::iterator::Signals) {
        let app = &self.app;
        app.draining
            .store(true, std::sync::atomic::Ordering::Release);
        let grace = app.config.shutdown_grace;
        info!(
            "server.draining",
            liveCalls = app.registry.active_calls(),
            callsHoldingSlots = app.slots.live(),
            graceS = grace.as_secs()
        );
        let deadline = std::time::Instant::now() + grace;
        let ours = || app.registry.active_calls() + app.slots.live();
        while ours() > 0 && std::time::Instant::now() < deadline {
            if signals.pending().next().is_some() {
                warn!("server.second_signal", detail = "closing live calls now");
                break;
            }
            std::thread::sleep(DRAIN_POLL);
        }
        let left = app.registry.active_calls();
        if left > 0 {
            warn!("server.closing_calls", calls = left);
            app.registry.stop_all();
            let deadline = std::time::Instant::now() + CLOSE_WAIT;
            while app.registry.active_calls() > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(DRAIN_POLL);
            }
        }
        app.call_log.close();
        info!(
            "server.stopped",
            closedCalls = left,
            unfinishedCalls = app.slots.live()
        );
    }
}

/// The threads that keep calls honest beside the requests: the watchdog (with, on
/// PostgreSQL, the settling of dead instances' calls) and the listener for other instances.
fn start_upkeep(app: &Arc<app::App>) {
    let orphans = app.shared.as_ref().map(|shared| {
        let accounts = {
            let app = app.clone();
            move |orphan: &calls::log::Orphan| app.account_of(orphan)
        };
        calls::orphans::Orphans::new(shared.lease, Box::new(accounts))
    });
    calls::watchdog::start(
        app.slots.clone(),
        app.call_log.clone(),
        app.shared.clone(),
        orphans,
    );
    #[cfg(feature = "postgres")]
    {
        let changed = {
            let app = app.clone();
            move |what: Option<&str>| app.stored_changed_elsewhere(what)
        };
        calls::shared::listen::listen(&app.config.database, app.slots.clone(), Box::new(changed));
    }
}

/// Binds the HTTP port (and `MEDIA_PORT`), logs where it listens and serves in the background,
/// with `bots` making one bot per call (see `examples/custom_bot.rs`).
pub fn start(
    mut config: config::Config,
    bots: Box<dyn bot::BotFactory>,
) -> std::io::Result<Running> {
    if let Some(open_files) = fit_connections_to_open_files(&mut config) {
        grow_descriptor_table(&config, open_files);
    }
    // may fills a pool with 1,000 idle coroutines of its default stack size when its scheduler
    // first starts (may 0.3 pool.rs), about 8 MiB resident. Every coroutine here asks for a
    // stack size of its own, which the pool never serves, so the pool is only memory. Takes
    // effect when this runs before anything else has used may. The binary instead makes the
    // connections' size the default and keeps a small pool of them (reuse_connection_stacks).
    if !CONNECTION_STACKS_REUSED.load(std::sync::atomic::Ordering::Acquire) {
        may::config().set_pool_capacity(COROUTINE_POOL);
    }
    may::config().set_timeout_ns(MAY_POLL_TIMEOUT.as_nanos() as u64);
    let tls = match &config.tls {
        Some(files) => Some(Arc::new(
            tls::ServerTls::load(files).map_err(std::io::Error::other)?,
        )),
        None => None,
    };
    let addr = SocketAddr::new(config.bind, config.port);
    let server = http::Server::bind(addr)
        .map_err(|e| port_error("PORT", addr, e))?
        .with_tls(tls.clone());
    let bound = server.local_addr()?;
    let media_listener = match config.media_port {
        Some(port) => {
            let addr = SocketAddr::new(config.bind, port);
            Some(http::bind_exclusive(addr).map_err(|e| port_error("MEDIA_PORT", addr, e))?)
        }
        None => None,
    };
    let limits = config.http.clone();
    let app =
        Arc::new(app::App::with_bots(config, bound.port(), bots).map_err(std::io::Error::other)?);
    warn_about_setup(&app);
    let (loops, rest) = (app.config.media_loops, app.config.media_loop_rest);
    app.media_loops.start(&app, loops, rest)?;
    start_upkeep(&app);
    app.campaigns.start_dialer(
        Arc::new(calls::place::ServerTelephony(app.clone())),
        app.shared.as_ref(),
    );
    if let Some(keep) = app.config.retention {
        calls::upkeep::start_retention(
            app.call_log.clone(),
            app.config.data_dir.join("recordings"),
            keep,
        );
    }
    let mut media_addr = None;
    if let Some(listener) = media_listener {
        let addr = listener.local_addr()?;
        info!("media.listening", addr = addr);
        media::listener::start(listener, tls.clone(), app.clone());
        media_addr = Some(addr);
    }
    info!(
        "server.listening",
        addr = bound,
        tls = tls.is_some(),
        mediaBase = app.media_base,
        version = env!("CARGO_PKG_VERSION")
    );
    let accept = server
        .with_uploads(app.uploads.clone())
        .start(app.clone(), limits);
    Ok(Running {
        addr: bound,
        media_addr,
        app,
        tls,
        accept,
    })
}

/// A listener that cannot bind, with the variable that chose its port: the operator's fix.
fn port_error(variable: &str, addr: SocketAddr, e: std::io::Error) -> std::io::Error {
    let hint = match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "another process is listening on port {}; stop it or set {variable} to a free port",
            addr.port()
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "ports below 1024 need root or CAP_NET_BIND_SERVICE; set {variable} to 1024 or above"
        ),
        _ => format!("check {variable}"),
    };
    std::io::Error::new(
        e.kind(),
        format!("{variable}={} ({addr}): {e}: {hint}", addr.port()),
    )
}

/// File descriptors kept for everything that is not a client connection: listeners, the call
/// log's database and WAL, the Exotel API's sockets, the process's own.
const RESERVED_FILES: u64 = 64;

/// Files a connection may hold: its socket, a relayed bot's, a recording.
fn files_per_connection(config: &config::Config) -> u64 {
    1 + u64::from(matches!(config.bot, config::BotChoice::Relay(_))) + u64::from(config.record)
}

/// Raises the open-file limit to its hard limit, then caps `HTTP_MAX_CONNECTIONS` below what
/// that leaves (each connection may also hold a relay socket and a recording), so that past
/// the limit new clients get a 503 instead of hanging in the accept queue. Answers the limit,
/// when it is known.
fn fit_connections_to_open_files(config: &mut config::Config) -> Option<u64> {
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            warn!("server.nofile_unknown", error = e);
            return None;
        }
    };
    let fits = (soft.saturating_sub(RESERVED_FILES) / files_per_connection(config)).max(1) as usize;
    info!("server.open_files", limit = soft, connectionsFit = fits);
    if config.http.max_connections > fits {
        warn!(
            "config.max_connections_capped",
            configured = config.http.max_connections,
            capped = fits,
            openFileLimit = soft,
            detail = "HTTP_MAX_CONNECTIONS is more than the open-file limit allows; raise the hard limit (ulimit -Hn, LimitNOFILE=) to allow more"
        );
        config.http.max_connections = fits;
    }
    Some(soft)
}

/// Grows the descriptor table before any call ([`descriptors`]) to what the connections can
/// open, within `open_files`: a relayed call's two sockets are each read by a pump through a
/// duplicate descriptor, hence two per file a connection may hold.
fn grow_descriptor_table(config: &config::Config, open_files: u64) {
    let wanted =
        RESERVED_FILES + 2 * files_per_connection(config) * config.http.max_connections as u64;
    let slots = wanted.min(open_files);
    match descriptors::reserve_table(slots) {
        Ok(()) => info!("server.descriptor_table", slots = slots),
        Err(e) => warn!(
            "server.descriptor_table_not_grown",
            slots = slots,
            error = e,
            detail = "descriptors past the table's size will grow it during calls, stalling a worker each time"
        ),
    }
}

/// One line per thing a stranger who can reach the port could do, so the operator reads at
/// start exactly what is open and which variable closes it.
fn warn_about_setup(app: &app::App) {
    let c = &app.config;
    let public = !c.bind.is_loopback();
    if c.access.api_token.is_none() {
        warn!(
            "config.no_api_token",
            detail = "API_TOKEN is not set: POST /call and /calls answer loopback clients only, and refuse requests a proxy forwarded unless TRUST_PROXY names the proxy (then its client must be local)"
        );
    }
    if c.access.webhook_secret.is_none() {
        warn!(
            "config.no_webhook_secret",
            detail = "WEBHOOK_SECRET is not set: anyone who can reach the webhooks can get media tokens (each holds a call slot until its token expires) and send status callbacks for calls that are not live; a live call's stream and slot are still bound to its CallSid"
        );
    }
    if c.access.metrics_token.is_none() && public {
        warn!(
            "config.open_metrics",
            detail = "METRICS_TOKEN is not set and BIND is not loopback: /metrics (counts only, no numbers or ids) is open to anyone who can reach the port"
        );
    }
    if c.media_secret.is_some() {
        warn!(
            "config.media_secret",
            detail = "MEDIA_SECRET is set: a media socket with it needs no per-call token and takes a call slot of its own"
        );
    }
    if let Err(missing) = &app.default_line {
        warn!(
            "config.calls_disabled",
            detail = "POST /call answers 503 until these are set",
            missing = missing.join(",")
        );
    }
    if c.public_base_url.is_none() {
        warn!(
            "config.no_public_url",
            detail = "WEBHOOK_BASE_URL (or RENDER_EXTERNAL_URL) is not set: media URLs point at localhost, which Exotel cannot reach"
        );
    }
}
