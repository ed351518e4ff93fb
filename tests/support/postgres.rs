//! A PostgreSQL cluster of a test's own: Debian's `initdb` and `pg_ctl` in a temporary
//! directory, on a loopback port, with `fsync=off`, run as the `postgres` user when the tests
//! run as root (PostgreSQL refuses root), stopped when dropped.
//!
//! A machine without PostgreSQL skips the tests that need it, saying so; under `CI=true` that
//! skip is a failure (`.ci/run` installs Debian's `postgresql`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// With `TEST_DATABASE_URL` (a PostgreSQL server's URL, its path left out or ignored: set by
/// `dev/test-postgres`), the database of the server whose directory is `dir`: made on first
/// use and named after `dir`, so that a server started again in the same directory finds
/// its stored state, as with SQLite in `dir/data`. Without it, `None` (SQLite).
pub fn database_for(dir: &Path) -> Option<String> {
    let base = std::env::var("TEST_DATABASE_URL").ok()?;
    let name = format!("t_{:016x}", fnv(dir.to_string_lossy().as_bytes()));
    let server = base
        .split_once("://")
        .map_or(base.as_str(), |(_, rest)| rest);
    let authority = server.split('/').next().unwrap_or(server);
    let admin = format!("postgres://{authority}/postgres");
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-d",
            &admin,
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .expect("psql runs (TEST_DATABASE_URL is set)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || stderr.contains("already exists"),
        "CREATE DATABASE {name}: {stderr}"
    );
    Some(format!("postgres://{authority}/{name}"))
}

/// FNV-1a, 64 bits: a database name from a directory's path.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
    /// `postgres://app@127.0.0.1:PORT/postgres`
    pub url: String,
}

/// Debian's PostgreSQL programs (`/usr/lib/postgresql/N/bin`), the newest there is.
fn programs() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// The tests run as root (`/proc/self` belongs to the process's effective user).
fn as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program` of `bin`, to run as the `postgres` user when we are root.
fn command(bin: &Path, program: &str) -> Command {
    let path = bin.join(program);
    if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&path);
        c
    } else {
        Command::new(&path)
    }
}

/// `program args…` (see [`command`]), which must succeed.
fn run(bin: &Path, program: &str, args: &[&str]) {
    let out = command(bin, program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    /// A new cluster, started; `None` (with a line saying why) on a machine without
    /// PostgreSQL, unless `CI=true`, where that is a failure.
    pub fn start(name: &str) -> Option<Cluster> {
        let Some(bin) = programs() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and PostgreSQL is not installed (apt-get install postgresql): this test may not be skipped"
            );
            eprintln!("SKIPPED {name}: PostgreSQL is not installed (apt-get install postgresql)");
            return None;
        };
        let dir = super::temp_dir(&format!("pg-{name}"));
        if as_root() {
            let chown = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(chown.success());
        }
        let data = dir.join("pg");
        run(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "app",
                "--no-sync",
            ],
        );
        let port = free_port();
        let cluster = Cluster {
            url: format!("postgres://app@127.0.0.1:{port}/postgres"),
            port,
            bin,
            dir,
        };
        cluster.start_server();
        Some(cluster)
    }

    /// `pg_ctl start` on the cluster's port, waiting until it takes connections.
    fn start_server(&self) {
        let data = self.dir.join("pg");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("pg.log");
        run(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
    }

    /// `pg_ctl stop -m immediate`, as a crash would stop it; whether it stopped.
    fn stop_server(&self) -> bool {
        let data = self.dir.join("pg");
        command(&self.bin, "pg_ctl")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output()
            .is_ok_and(|out| out.status.success())
    }

    /// `psql` on the cluster with `sql`; what it printed (unaligned, tuples only).
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url,
                "-c",
                sql,
            ])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the server at once, as a crash would (`start_again` brings it back).
    pub fn stop(&self) {
        assert!(self.stop_server(), "pg_ctl stop failed");
    }

    /// Starts the stopped server again on the same port.
    pub fn start_again(&self) {
        self.start_server();
    }

    /// Stops the server at once and starts it again on the same port (a database restart).
    pub fn restart(&self) {
        assert!(
            self.stop_server(),
            "pg_ctl stop failed: see {}",
            self.dir.join("pg.log").display()
        );
        self.start_server();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_server();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
