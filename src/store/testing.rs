//! For the storage behaviour tests: each runs once on SQLite and once on PostgreSQL (a
//! cluster of the test's own, `tests/support/postgres.rs`, which says how a machine without
//! PostgreSQL skips and why `CI=true` may not).

use super::Location;
use std::path::PathBuf;

#[cfg(feature = "postgres")]
#[allow(dead_code)] // restart and psql serve the tests in tests/
#[path = "../../tests/support/postgres.rs"]
mod cluster;

/// A new empty directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("evb-store-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `test` on a new SQLite file, then on a new PostgreSQL cluster (stopped after).
pub fn on_each_backend(name: &str, test: impl Fn(&Location)) {
    test(&Location::Sqlite(temp_dir(name).join("calls.db")));
    #[cfg(feature = "postgres")]
    if let Some(pg) = cluster::Cluster::start(name) {
        test(&Location::Postgres(pg.url.clone()));
    }
}
