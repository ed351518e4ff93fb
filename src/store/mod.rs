//! Storage for what the operator tells the dialer: the do-not-call list, phones, and campaigns
//! with their contacts and attempts ([`campaigns`]). One module with a narrow interface (the
//! methods of [`Store`]), so that another backend (PostgreSQL, several instances sharing one
//! queue) can replace SQLite without touching the callers.
//!
//! SQLite blocks in the kernel, so one OS thread owns this module's connection to `calls.db`
//! (the call log's database, its own tables). Callers on coroutines hand it an operation and
//! wait for the answer on a `may` channel; nothing here is on a call's media path.

use sql::{params, Db};
use std::sync::mpsc;

pub mod campaigns;
pub mod outbox;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "postgres")]
mod postgres_tls;
pub mod schema;
pub mod sql;
pub mod sqlite;
#[cfg(test)]
pub mod testing;

pub use schema::Location;

/// One piece of work for the store's thread, on its connection.
type Job = Box<dyn FnOnce(&dyn Db) + Send>;

/// An ExoPhone with its own Exotel account (`/phones`). Its `Debug` leaves the token out.
#[derive(Clone, PartialEq, Eq)]
pub struct Phone {
    /// E.164 (`PhoneNumber::canonical`).
    pub number: String,
    pub api_key: String,
    /// Secret: written, never shown or logged.
    pub api_token: String,
    pub sid: String,
    pub subdomain: String,
    /// Where this account's API is reached, when not `https://{subdomain}`.
    pub api_base_url: Option<String>,
    /// The Voicebot applet's App ID; `None` is stream mode.
    pub app_id: Option<String>,
    /// Live calls on this phone at most; `None`: only the server's limit.
    pub max_concurrent: Option<u32>,
    /// The agent its calls get unless the request names one.
    pub agent: Option<String>,
}

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phone")
            .field("number", &self.number)
            .field("sid", &self.sid)
            .field("subdomain", &self.subdomain)
            .finish_non_exhaustive()
    }
}

/// A named bot configuration (`/agents`). Its `Debug` leaves out the headers' values and the key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredAgent {
    pub name: String,
    /// `echo` or `relay`.
    pub bot: String,
    /// The relayed bot's URL.
    pub url: Option<String>,
    /// Handshake headers for the relayed bot, a JSON object.
    pub headers: Option<String>,
    /// The greeting's file under `DATA_DIR/agents`, when it has one.
    pub greeting: Option<String>,
    /// `bot`, `always` or `never`; `None` is `bot`.
    pub handoff: Option<String>,
    /// A relayed bot's stream protocol (`exotel`, `twilio`); `None` is the environment's.
    pub protocol: Option<String>,
    /// A realtime agent's settings, a JSON object (`calls::agents::RealtimeFields`).
    pub realtime: Option<String>,
    /// A realtime agent's own API key; `None` is `OPENAI_API_KEY`'s.
    pub api_key: Option<String>,
}

impl std::fmt::Debug for StoredAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredAgent")
            .field("name", &self.name)
            .field("bot", &self.bot)
            .field("url", &self.url)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// The handle; cloning shares the thread.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
    /// A campaign's completion writes its event for the user's backend (`EVENTS_URL` is set).
    outbox: bool,
}

/// What the store held when it opened.
pub struct Loaded {
    /// Every number on the do-not-call list, canonical E.164.
    pub dnc: Vec<String>,
    pub phones: Vec<Phone>,
    pub agents: Vec<StoredAgent>,
}

impl Store {
    /// Runs `work` on the store's thread and waits for its answer (on a `may` channel, so a
    /// coroutine parks instead of blocking its worker; a plain thread blocks).
    fn ask<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Db) -> sql::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let (reply, answer) = may::sync::mpsc::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = reply.send(work(conn).map_err(|e| e.to_string()));
            }))
            .map_err(|_| "the store is closed")?;
        answer
            .recv()
            .map_err(|_| "the store is closed".to_string())?
    }

    /// Connects to the database at `at` (its tables made by `schema::prepare` already), reads
    /// what the server keeps in memory, and starts the store's thread.
    pub fn open(at: &Location) -> Result<(Store, Loaded), String> {
        let conn = at
            .connect(schema::Owner::Store)
            .map_err(|e| format!("{at}: {e}"))?;
        let loaded = load(conn.as_ref()).map_err(|e| format!("{at}: {e}"))?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                for job in queue {
                    job(conn.as_ref());
                }
            })
            .map_err(|e| e.to_string())?;
        Ok((
            Store {
                jobs,
                outbox: false,
            },
            loaded,
        ))
    }

    /// With `outbox`, a campaign's completion also writes `campaign.completed` to the events
    /// outbox (the call log's table, in the same database), in the same transaction.
    pub fn with_outbox(mut self, outbox: bool) -> Store {
        self.outbox = outbox;
        self
    }

    /// Adds numbers to the do-not-call list; answers how many were new. Coroutine-safe.
    pub fn dnc_add(&self, numbers: Vec<String>, at_ms: i64) -> Result<usize, String> {
        self.ask(move |conn| {
            let added = dnc_add(conn, &numbers, at_ms)?;
            match numbers.as_slice() {
                [one] => tell_instances(conn, &format!("dnc+{one}")),
                _ => tell_instances(conn, "dnc"),
            }
            .map(|()| added)
        })
    }

    /// Writes `phone`; with `create`, only if no phone has its number (`Ok(false)` then).
    /// Coroutine-safe.
    pub fn phone_put(&self, phone: Phone, create: bool) -> Result<bool, String> {
        self.ask(move |conn| {
            let written = phone_put(conn, &phone, create)?;
            tell_instances(conn, "phones").map(|()| written)
        })
    }

    /// Deletes the phone with this number; `false` when there was none. Coroutine-safe.
    pub fn phone_remove(&self, number: String) -> Result<bool, String> {
        self.ask(move |conn| {
            let gone = conn.execute("DELETE FROM phones WHERE number = ?1", params![number])?;
            tell_instances(conn, "phones").map(|()| gone > 0)
        })
    }

    /// Writes an agent; with `create`, only if no agent has its name (`Ok(false)` then).
    pub fn agent_put(&self, agent: StoredAgent, create: bool) -> Result<bool, String> {
        self.ask(move |conn| {
            let on_conflict = if create {
                "DO NOTHING"
            } else {
                "DO UPDATE SET bot = excluded.bot, url = excluded.url, headers = excluded.headers,
                     greeting = excluded.greeting, handoff = excluded.handoff,
                     protocol = excluded.protocol, realtime = excluded.realtime,
                     api_key = excluded.api_key"
            };
            conn.execute(
                &format!("INSERT INTO agents (name, bot, url, headers, greeting, handoff, protocol, realtime, api_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (name) {on_conflict}"),
                params![agent.name, agent.bot, agent.url, agent.headers, agent.greeting, agent.handoff, agent.protocol, agent.realtime, agent.api_key],
            )
            .and_then(|n| tell_instances(conn, "agents").map(|()| n > 0))
        })
    }

    /// Deletes the agent with this name; `false` when there was none.
    pub fn agent_remove(&self, name: String) -> Result<bool, String> {
        self.ask(move |conn| {
            let gone = conn.execute("DELETE FROM agents WHERE name = ?1", params![name])?;
            tell_instances(conn, "agents").map(|()| gone > 0)
        })
    }

    /// Takes or renews the lease `name` for `holder` until `lease` after `now`, if it is free,
    /// lapsed or `holder`'s already; `false` when another holder has it.
    pub fn lead(
        &self,
        name: &'static str,
        holder: String,
        now: i64,
        lease: std::time::Duration,
    ) -> Result<bool, String> {
        self.ask(move |conn| {
            let until = now + lease.as_millis() as i64;
            conn.row(
                "INSERT INTO leaders (name, holder, expires_at) VALUES (?1, ?2, ?4)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                     expires_at = excluded.expires_at
                 WHERE leaders.holder = excluded.holder OR leaders.expires_at <= ?3
                 RETURNING holder",
                params![name, holder, now, until],
                |_| Ok(()),
            )
            .map(|taken| taken.is_some())
        })
    }

    /// Takes a number off the list; `false` when it was not on it. Coroutine-safe.
    pub fn dnc_remove(&self, number: String) -> Result<bool, String> {
        self.ask(move |conn| {
            let gone = conn.execute("DELETE FROM dnc WHERE number = ?1", params![number])?;
            tell_instances(conn, &format!("dnc-{number}")).map(|()| gone > 0)
        })
    }
}

/// On PostgreSQL, tells every instance (`NOTIFY` on [`schema::STORED_CHANGED`], delivered
/// when the write commits) that what it keeps in memory changed: `dnc+NUMBER`, `dnc-NUMBER`,
/// `dnc` (many numbers), `phones` or `agents`.
fn tell_instances(conn: &dyn Db, what: &str) -> sql::Result<()> {
    if conn.backend() != sql::Backend::Postgres {
        return Ok(());
    }
    conn.query(
        &format!("SELECT pg_notify('{}', ?1)", schema::STORED_CHANGED),
        params![what],
    )
    .map(drop)
}

impl Store {
    /// The do-not-call list, read again (another instance changed it). Waits.
    pub fn dnc_numbers(&self) -> Result<Vec<String>, String> {
        self.ask(load_dnc)
    }

    /// The phones, read again. Waits.
    pub fn phones(&self) -> Result<Vec<Phone>, String> {
        self.ask(load_phones)
    }

    /// The agents, read again. Waits.
    pub fn agents(&self) -> Result<Vec<StoredAgent>, String> {
        self.ask(load_agents)
    }
}

/// What the server keeps in memory from the store.
fn load(conn: &dyn Db) -> sql::Result<Loaded> {
    Ok(Loaded {
        dnc: load_dnc(conn)?,
        phones: load_phones(conn)?,
        agents: load_agents(conn)?,
    })
}

fn load_dnc(conn: &dyn Db) -> sql::Result<Vec<String>> {
    conn.rows("SELECT number FROM dnc", params![], |r| r.get(0))
}

fn load_phones(conn: &dyn Db) -> sql::Result<Vec<Phone>> {
    conn.rows(
        &format!("SELECT {PHONE_COLUMNS} FROM phones ORDER BY number"),
        params![],
        |r| {
            Ok(Phone {
                number: r.get(0)?,
                api_key: r.get(1)?,
                api_token: r.get(2)?,
                sid: r.get(3)?,
                subdomain: r.get(4)?,
                api_base_url: r.get(5)?,
                app_id: r.get(6)?,
                max_concurrent: r.get(7)?,
                agent: r.get(8)?,
            })
        },
    )
}

fn load_agents(conn: &dyn Db) -> sql::Result<Vec<StoredAgent>> {
    conn.rows(
        "SELECT name, bot, url, headers, greeting, handoff, protocol, realtime, api_key
         FROM agents ORDER BY name",
        params![],
        |r| {
            Ok(StoredAgent {
                name: r.get(0)?,
                bot: r.get(1)?,
                url: r.get(2)?,
                headers: r.get(3)?,
                greeting: r.get(4)?,
                handoff: r.get(5)?,
                protocol: r.get(6)?,
                realtime: r.get(7)?,
                api_key: r.get(8)?,
            })
        },
    )
}

const PHONE_COLUMNS: &str =
    "number, api_key, api_token, sid, subdomain, api_base_url, app_id, max_concurrent, agent";

fn phone_put(conn: &dyn Db, p: &Phone, create: bool) -> sql::Result<bool> {
    let on_conflict = if create {
        "DO NOTHING"
    } else {
        "DO UPDATE SET api_key = excluded.api_key, api_token = excluded.api_token,
             sid = excluded.sid, subdomain = excluded.subdomain,
             api_base_url = excluded.api_base_url, app_id = excluded.app_id,
             max_concurrent = excluded.max_concurrent, agent = excluded.agent"
    };
    let written = conn.execute(
        &format!(
            "INSERT INTO phones ({PHONE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (number) {on_conflict}"
        ),
        params![
            p.number,
            p.api_key,
            p.api_token,
            p.sid,
            p.subdomain,
            p.api_base_url,
            p.app_id,
            p.max_concurrent,
            p.agent
        ],
    )?;
    Ok(written > 0)
}

fn dnc_add(conn: &dyn Db, numbers: &[String], at: i64) -> sql::Result<usize> {
    conn.transaction(|tx| {
        let mut added = 0;
        for number in numbers {
            added += tx.execute(
                "INSERT INTO dnc (number, added_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![number, at],
            )?;
        }
        Ok(added)
    })
}
