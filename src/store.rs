//! Storage for what the operator tells the dialer: today the do-not-call list; phones, agents,
//! campaigns and their attempts are to live here too. One module with a narrow interface, so
//! that another backend (PostgreSQL, several instances sharing one queue) can replace SQLite
//! without touching the callers.
//!
//! SQLite blocks in the kernel, so one OS thread owns this module's connection to `calls.db`
//! (the call log's database, its own tables). Callers on coroutines hand it an operation and
//! wait for the answer on a `may` channel; nothing here is on a call's media path.

use rusqlite::{params, Connection};
use std::path::Path;
use std::sync::mpsc;

enum Op {
    DncAdd(
        Vec<String>,
        i64,
        may::sync::mpsc::Sender<Result<usize, String>>,
    ),
    DncRemove(String, may::sync::mpsc::Sender<Result<bool, String>>),
}

/// The handle; cloning shares the thread.
#[derive(Clone)]
pub struct Store {
    ops: mpsc::Sender<Op>,
}

/// What the store held when it opened.
pub struct Loaded {
    /// Every number on the do-not-call list, canonical E.164.
    pub dnc: Vec<String>,
}

impl Store {
    /// Opens the store's tables in the database at `path` (creating them) and starts its thread.
    pub fn open(path: &Path) -> Result<(Store, Loaded), String> {
        let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let loaded = prepare(&conn).map_err(|e| format!("{}: {e}", path.display()))?;
        let (ops, queue) = mpsc::channel::<Op>();
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || run(conn, queue))
            .map_err(|e| e.to_string())?;
        Ok((Store { ops }, loaded))
    }

    /// Adds numbers to the do-not-call list; answers how many were new. Coroutine-safe.
    pub fn dnc_add(&self, numbers: Vec<String>, at_ms: i64) -> Result<usize, String> {
        let (tx, rx) = may::sync::mpsc::channel();
        self.ops
            .send(Op::DncAdd(numbers, at_ms, tx))
            .map_err(|_| "the store is closed")?;
        rx.recv().map_err(|_| "the store is closed".to_string())?
    }

    /// Takes a number off the list; `false` when it was not on it. Coroutine-safe.
    pub fn dnc_remove(&self, number: String) -> Result<bool, String> {
        let (tx, rx) = may::sync::mpsc::channel();
        self.ops
            .send(Op::DncRemove(number, tx))
            .map_err(|_| "the store is closed")?;
        rx.recv().map_err(|_| "the store is closed".to_string())?
    }
}

fn prepare(conn: &Connection) -> rusqlite::Result<Loaded> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS dnc (number TEXT PRIMARY KEY, added_at INTEGER NOT NULL);",
    )?;
    let dnc = conn
        .prepare("SELECT number FROM dnc")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(Loaded { dnc })
}

fn run(mut conn: Connection, queue: mpsc::Receiver<Op>) {
    for op in queue {
        match op {
            Op::DncAdd(numbers, at, reply) => {
                let _ = reply.send(dnc_add(&mut conn, &numbers, at).map_err(|e| e.to_string()));
            }
            Op::DncRemove(number, reply) => {
                let removed = conn
                    .execute("DELETE FROM dnc WHERE number = ?1", [&number])
                    .map(|n| n > 0)
                    .map_err(|e| e.to_string());
                let _ = reply.send(removed);
            }
        }
    }
}

fn dnc_add(conn: &mut Connection, numbers: &[String], at: i64) -> rusqlite::Result<usize> {
    let tx = conn.transaction()?;
    let mut added = 0;
    {
        let mut insert =
            tx.prepare("INSERT OR IGNORE INTO dnc (number, added_at) VALUES (?1, ?2)")?;
        for number in numbers {
            added += insert.execute(params![number, at])?;
        }
    }
    tx.commit()?;
    Ok(added)
}
