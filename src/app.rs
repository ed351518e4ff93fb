//! The running server's shared state, built once from [`Config`]: what every handler needs and
//! nothing else.

use crate::bot::BotFactory;
use crate::calls::log::CallLog;
use crate::calls::phones::Line;
use crate::calls::shared::Shared;
use crate::calls::slots::Slots;
use crate::calls::{CallLogId, MediaToken, Registry};
use crate::calls::{Refusal, Refused};
use crate::config::Config;
use crate::exotel::{ApiPool, ExotelClient};
use crate::http::form;

pub struct App {
    pub config: Config,
    /// The public base URL (`https://host[/prefix]`), no trailing slash.
    pub public_base: String,
    /// `ws://` or `wss://` form of the public base URL, no trailing slash.
    pub media_base: String,
    pub registry: Registry,
    pub slots: std::sync::Arc<Slots>,
    pub call_log: CallLog,
    /// The do-not-call list, checked by `/call`.
    pub dnc: crate::calls::dnc::DoNotCall,
    /// ExoPhones with their own Exotel accounts (`/phones`).
    pub phones: crate::calls::phones::Phones,
    /// Named bot configurations (`/agents`).
    pub agents: crate::calls::agents::Agents,
    /// Campaigns (`/campaigns`) and the way to their dialer.
    pub campaigns: crate::calls::campaigns::Campaigns,
    /// What each dialed call carries to its media session.
    pub plans: crate::calls::plans::Plans,
    /// How each stream ended, for the Passthru applet after it.
    pub handoffs: crate::calls::handoffs::Handoffs,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The recordings' writer, when `RECORD` is on.
    pub recorder: Option<crate::media::recorder::Recorder>,
    /// The threads that make Exotel's API requests, for every line.
    pub pool: ApiPool,
    /// The environment's line (`EXOTEL_*`), or the variables missing to make it.
    pub default_line: Result<Line, Vec<&'static str>>,
    /// Makes each call's bot.
    pub bots: Box<dyn BotFactory>,
    pub media_settings: crate::media::session::SessionSettings,
    /// The media event loops (`MEDIA_LOOPS`), once `start` has started them.
    pub media_loops: crate::media::engine::MediaLoops,
    /// Set on SIGTERM/SIGINT: no new calls, live ones may finish.
    pub draining: std::sync::atomic::AtomicBool,
    /// Upload bytes the HTTP server holds now (`HTTP_MAX_UPLOADS_HELD_BYTES`), for `/metrics`.
    pub uploads: std::sync::Arc<crate::http::UploadBudget>,
    /// The console's signed-in browsers.
    pub sessions: crate::console::sessions::Sessions,
    /// On PostgreSQL, what this instance shares with the others (`calls::shared`).
    pub shared: Option<Shared>,
}

impl App {
    /// `port` is the port actually bound (which differs from the configured one for `PORT=0`).
    /// Calls get the echo bot (`BOT=echo`).
    pub fn new(config: Config, port: u16) -> Result<App, String> {
        let delay = config.echo_delay_ms;
        let echo = move |_: &crate::bot::CallStart<'_>| -> Box<dyn crate::bot::Bot> {
            Box::new(crate::bot::echo::EchoBot::new(delay))
        };
        App::with_bots(config, port, Box::new(echo))
    }

    /// Like [`App::new`], with your own bots. Fails when `DATA_DIR` or its call log cannot be
    /// opened; the text names the path and the cause.
    pub fn with_bots(config: Config, port: u16, bots: Box<dyn BotFactory>) -> Result<App, String> {
        let (public_base, media_base) = public_urls(&config, port);
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        let data = open_data(&config, &metrics, port)?;
        let recorder = start_recorder(&config, &metrics)?;
        let registry = Registry::new(config.media_token_ttl, config.max_pending_media_tokens);
        let shared = shared_for(&config)?;
        let mut slots = Slots::new(config.max_concurrent_calls, config.call_slot_timeout);
        if let Some(shared) = &shared {
            slots = slots.with_leases(shared.clone());
        }
        let slots = std::sync::Arc::new(slots);
        Ok(App {
            public_base,
            media_base,
            registry,
            slots,
            call_log: data.call_log,
            dnc: data.dnc,
            phones: data.phones,
            agents: data.agents,
            campaigns: data.campaigns,
            plans: crate::calls::plans::Plans::shared(shared.clone()),
            shared: shared.clone(),
            handoffs: crate::calls::handoffs::Handoffs::shared(shared.clone()),
            metrics,
            recorder,
            pool: ApiPool::start(config.exotel.api_threads),
            default_line: environment_line(&config),
            bots,
            media_settings: config.media.clone(),
            media_loops: Default::default(),
            draining: Default::default(),
            uploads: Default::default(),
            sessions: crate::console::sessions::Sessions::new(config.access.console.session_for),
            config,
        })
    }

    /// Issues a media token for the call and returns its media URL, or why not when too many
    /// tokens are pending. An over-capacity call's token makes its session play a tone
    /// and hang up.
    pub fn issue_media_url(
        &self,
        call_log_id: &CallLogId,
        over_capacity: bool,
    ) -> Result<String, Refusal> {
        let issued = if over_capacity {
            self.registry.issue_over_capacity_token(call_log_id)
        } else {
            self.registry.issue_token(call_log_id)
        };
        let token = issued.map_err(|_| tokens_busy())?;
        self.publish_grant(&token, call_log_id, self.registry.ttl(), over_capacity)?;
        Ok(self.media_url(&token, call_log_id))
    }

    /// The account that placed or took a call, by its numbers: a phone of `/phones` among
    /// them, else the environment's line.
    pub fn account_of(
        &self,
        orphan: &crate::calls::log::Orphan,
    ) -> Option<std::sync::Arc<crate::exotel::ExotelClient>> {
        let phone = orphan.numbers.iter().flatten().find_map(|n| {
            let number = crate::calls::PhoneNumber::parse(n).ok()?;
            self.phones.line(&number)
        });
        phone
            .or_else(|| self.default_line.as_ref().ok().cloned())
            .map(|line| line.account)
    }

    /// Another instance changed what every instance keeps in memory (`store::tell_instances`):
    /// `dnc±NUMBER`, `dnc`, `phones` or `agents`; `None` when anything may have (the listener
    /// connected anew).
    pub fn stored_changed_elsewhere(&self, what: Option<&str>) {
        match what {
            Some(change) if change.starts_with("dnc") => {
                self.dnc.changed_elsewhere(&change[3..]);
            }
            Some("phones") => self.phones.changed_elsewhere(),
            Some("agents") => self.agents.changed_elsewhere(),
            Some(_) => {}
            None => {
                self.dnc.changed_elsewhere("");
                self.phones.changed_elsewhere();
                self.agents.changed_elsewhere();
            }
        }
    }

    /// On PostgreSQL, the token written where every instance finds it, before its URL leaves.
    fn publish_grant(
        &self,
        token: &MediaToken,
        call_log_id: &CallLogId,
        lifetime: std::time::Duration,
        over_capacity: bool,
    ) -> Result<(), Refusal> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        shared
            .publish_grant(
                token.as_str(),
                call_log_id.as_str(),
                lifetime,
                over_capacity,
            )
            .map_err(|e| {
                Refusal::new(
                    crate::calls::refusal::Refused::Unavailable {
                        retry_after_s: Some(1),
                    },
                    "database_unavailable",
                    format!("the media token could not be shared with the other instances: {e}"),
                )
            })
    }

    /// Like [`App::issue_media_url`] for a token that may wait `lifetime` to be used (a
    /// stream-mode call that Exotel may ring for a while).
    pub fn issue_media_url_for(
        &self,
        call_log_id: &CallLogId,
        lifetime: std::time::Duration,
    ) -> Result<String, Refusal> {
        let token = self
            .registry
            .issue_token_for(call_log_id, lifetime)
            .map_err(|_| tokens_busy())?;
        let lifetime = lifetime.max(self.registry.ttl());
        self.publish_grant(&token, call_log_id, lifetime, false)?;
        Ok(self.media_url(&token, call_log_id))
    }

    /// `{media_base}/media?sample-rate=…&token=…&callLogId=…` (docs/ARCHITECTURE.md §3). `sample-rate` is
    /// Exotel's own parameter; `token` and `callLogId` are our two custom parameters, well under
    /// Exotel's 256 characters (22 + at most 128 + names).
    pub fn media_url(&self, token: &MediaToken, call_log_id: &CallLogId) -> String {
        let mut query = String::with_capacity(64);
        form::append_pair(
            &mut query,
            "sample-rate",
            &self.config.sample_rate.to_string(),
        );
        form::append_pair(&mut query, "token", token.as_str());
        form::append_pair(&mut query, "callLogId", call_log_id.as_str());
        format!("{}/media?{query}", self.media_base)
    }

    /// No new call while the server shuts down.
    pub fn refuse_if_draining(&self) -> Result<(), Refusal> {
        if self.draining.load(std::sync::atomic::Ordering::Acquire) {
            Err(Refusal::new(
                Refused::Unavailable {
                    retry_after_s: Some(30),
                },
                "shutting_down",
                "the server is shutting down and takes no new calls",
            ))
        } else {
            Ok(())
        }
    }

    /// Our status callback URL for `Calls/connect`, with the webhook secret when one is set.
    pub fn status_callback_url(&self) -> String {
        let mut url = format!("{}/api/v1/exotel/status", self.public_base);
        if let Some(secret) = &self.config.access.webhook_secret {
            url.push_str("?secret=");
            form::encode_into(&mut url, secret);
        }
        url
    }
}

/// While `MAX_PENDING_MEDIA_TOKENS` tokens wait to be used.
fn tokens_busy() -> Refusal {
    Refusal::new(
        Refused::Unavailable {
            retry_after_s: Some(5),
        },
        "busy",
        "too many media tokens are pending (MAX_PENDING_MEDIA_TOKENS); try again shortly",
    )
}

/// The public base URL (`WEBHOOK_BASE_URL`, else this host on `port`) and its WebSocket form.
fn public_urls(config: &Config, port: u16) -> (String, String) {
    let public_base = config
        .public_base_url
        .clone()
        .unwrap_or_else(|| match config.tls {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://localhost:{port}"),
        });
    let media_base = match public_base.strip_prefix("https://") {
        Some(rest) => format!("wss://{rest}"),
        None => format!("ws://{}", public_base.trim_start_matches("http://")),
    };
    (public_base, media_base)
}

/// What `DATA_DIR`'s `calls.db` holds, opened: the call log and the store behind the
/// do-not-call list, phones, agents and campaigns.
struct Data {
    call_log: CallLog,
    dnc: crate::calls::dnc::DoNotCall,
    phones: crate::calls::phones::Phones,
    agents: crate::calls::agents::Agents,
    campaigns: crate::calls::campaigns::Campaigns,
}

/// Creates `path` if missing, and makes it readable and writable by this user only (0600),
/// without following a symlink.
fn make_private(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let failed = |e: std::io::Error| format!("DATA_DIR {}: {e}", path.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(failed)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(failed)
}

/// Creates `DATA_DIR`, opens `calls.db` (readable by this user only: call data and, with
/// phones, Exotel's tokens) and what is stored in it.
fn open_data(
    config: &Config,
    metrics: &std::sync::Arc<crate::metrics::Metrics>,
    port: u16,
) -> Result<Data, String> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("DATA_DIR {}: {e}", config.data_dir.display()))?;
    let db = config.database.clone();
    if let Some(path) = db.sqlite_path() {
        make_private(path)?;
    }
    let (call_log, opened) =
        CallLog::open_with_outbox(&db, metrics.clone(), config.events.is_some())
            .map_err(|e| format!("{} call log {e}", db_name(&db)))?;
    if let Some(events) = &config.events {
        crate::events::start(&db, events.clone(), metrics.clone())
            .map_err(|e| format!("{} events {e}", db_name(&db)))?;
    }
    // SQLite gives its -wal and -shm the database's mode; ones left by an older version keep
    // theirs, so they are set too.
    for file in ["calls.db-wal", "calls.db-shm"] {
        let path = config.data_dir.join(file);
        if path.exists() {
            make_private(&path)?;
        }
    }
    if opened.interrupted > 0 {
        crate::warn!(
            "calllog.interrupted",
            calls = opened.interrupted,
            detail = "calls that were live when the process stopped are marked interrupted"
        );
    }
    let (store, stored) =
        crate::store::Store::open(&db).map_err(|e| format!("{} store {e}", db_name(&db)))?;
    let store = store.with_outbox(config.events.is_some());
    Ok(Data {
        call_log,
        dnc: crate::calls::dnc::DoNotCall::new(store.clone(), stored.dnc),
        phones: crate::calls::phones::Phones::new(
            store.clone(),
            stored.phones,
            config.exotel.timeout,
        ),
        agents: crate::calls::agents::Agents::new(
            store.clone(),
            stored.agents,
            config.data_dir.join("agents"),
            crate::calls::agents::AgentDefaults {
                relay: config.agent_bots.relay.clone(),
                realtime: config.agent_bots.realtime.clone(),
                hosts: relay_hosts(config, port),
            },
        ),
        campaigns: crate::calls::campaigns::Campaigns::new(store, campaign_clock(config)),
    })
}

/// On PostgreSQL, the state this instance shares with the others (`calls::shared`).
fn shared_for(config: &Config) -> Result<Option<Shared>, String> {
    if config.database.sqlite_path().is_some() {
        return Ok(None);
    }
    let shared = Shared::start(&config.database, instance_name(), config.instance_lease)
        .map_err(|e| format!("DATABASE_URL shared state {e}"))?;
    crate::info!("instance.started", instance = shared.holder);
    Ok(Some(shared))
}

/// This instance's name among those sharing a database: the host's, the process's id and
/// four random bytes (a restarted process is another instance).
fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    let random: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}-{}-{random}", std::process::id())
}

/// The variable that chose where the stored state lives, for errors at start.
fn db_name(db: &crate::store::Location) -> &'static str {
    match db.sqlite_path() {
        Some(_) => "DATA_DIR",
        None => "DATABASE_URL",
    }
}

/// Where relay agents may not point (this server) and may (`RELAY_ALLOWED_HOSTS`).
fn relay_hosts(config: &Config, port: u16) -> crate::calls::agents::RelayHosts {
    let mut own_hosts = vec![config.bind.to_string()];
    let public = config.public_base_url.as_deref().and_then(|url| {
        crate::calls::destination::Destination::parse("WEBHOOK_BASE_URL", url, "https", "http").ok()
    });
    own_hosts.extend(public.map(|p| p.host));
    let mut own_ports = vec![port, config.port];
    own_ports.extend(config.media_port);
    own_ports.retain(|p| *p != 0);
    crate::calls::agents::RelayHosts {
        own_hosts,
        own_ports,
        allowed: config.agent_bots.allowed_hosts.clone(),
    }
}

/// The campaigns' clock: the system's, or `CAMPAIGN_CLOCK_START`'s.
fn campaign_clock(config: &Config) -> crate::calls::campaigns::window::Clock {
    match config.campaign_clock_start {
        Some(start) => crate::calls::campaigns::window::Clock::starting_at(start),
        None => crate::calls::campaigns::window::Clock::system(),
    }
}

/// The recordings' writer when `RECORD` is on; WAVs a crash left unfinished are repaired.
fn start_recorder(
    config: &Config,
    metrics: &std::sync::Arc<crate::metrics::Metrics>,
) -> Result<Option<crate::media::recorder::Recorder>, String> {
    if !config.record {
        return Ok(None);
    }
    let dir = config.data_dir.join("recordings");
    let (recorder, repaired) = crate::media::recorder::Recorder::start(&dir, metrics.clone())
        .map_err(|e| format!("DATA_DIR recordings {}: {e}", dir.display()))?;
    if repaired > 0 {
        crate::warn!(
            "recording.repaired",
            files = repaired,
            detail = "WAV headers fixed after a crash"
        );
    }
    Ok(Some(recorder))
}

/// The environment's line (`EXOTEL_*`), or the variables missing to make it.
fn environment_line(config: &Config) -> Result<Line, Vec<&'static str>> {
    exotel_client(config).map(|account| {
        Line::from_environment(
            account,
            config.exotel.caller_id.clone().unwrap_or_default(),
            match config.exotel.connect_mode {
                crate::config::ConnectMode::Applet => config.exotel.app_id.clone(),
                crate::config::ConnectMode::Stream => None,
            },
            None,
        )
    })
}

/// The Exotel client, or the names of the variables needed to make one.
pub fn exotel_client(config: &Config) -> Result<ExotelClient, Vec<&'static str>> {
    let missing = config.exotel.missing_for_calls();
    let e = &config.exotel;
    match (&e.api_key, &e.api_token, &e.sid) {
        (Some(key), Some(token), Some(sid)) if missing.is_empty() => Ok(ExotelClient::new(
            &e.api_base_url,
            sid,
            key,
            token,
            e.timeout,
        )),
        _ => Err(missing),
    }
}
