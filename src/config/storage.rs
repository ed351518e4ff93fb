//! `DATABASE_URL`: where the stored state lives. Unset, it is SQLite's `DATA_DIR/calls.db`;
//! `postgres://…` (or `postgresql://…`) is PostgreSQL, shared by every instance that names it.

use super::ConfigError;
use crate::store::Location;
use std::path::Path;
use std::time::Duration;

/// The stored state's location, from `DATABASE_URL` and `DATA_DIR`.
pub(super) fn location_from_vars(
    var: &impl Fn(&str) -> Option<String>,
    data_dir: &Path,
) -> Result<Location, ConfigError> {
    let Some(url) = var("DATABASE_URL").filter(|u| !u.trim().is_empty()) else {
        return Ok(Location::Sqlite(data_dir.join("calls.db")));
    };
    let url = url.trim().to_owned();
    let problem = |problem: &str| ConfigError {
        variable: "DATABASE_URL",
        problem: problem.to_owned(),
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(problem(
            "only postgres:// URLs are understood (leave it unset for SQLite in DATA_DIR)",
        ));
    }
    postgres(url).map_err(|e| problem(&e))
}

/// A PostgreSQL URL the client can read (its error says which part is wrong, never the
/// password).
#[cfg(feature = "postgres")]
fn postgres(url: String) -> Result<Location, String> {
    match url.parse::<postgres::Config>() {
        Ok(_) => Ok(Location::Postgres(url)),
        Err(e) => Err(format!("not a PostgreSQL URL the client reads: {e}")),
    }
}

#[cfg(not(feature = "postgres"))]
fn postgres(_: String) -> Result<Location, String> {
    Err("this binary was built without PostgreSQL (--no-default-features); leave DATABASE_URL unset for SQLite".into())
}

/// `INSTANCE_LEASE_S` (PostgreSQL only): how long an instance's leases (its calls' slots, the
/// campaigns' dialing) outlive its last renewal; after it, a dead instance's slots come back
/// and another instance dials its campaigns. Renewed six times in that span.
pub(super) fn instance_lease(
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Duration, ConfigError> {
    super::ranged(var, "INSTANCE_LEASE_S", 30, 3, 600).map(Duration::from_secs)
}
