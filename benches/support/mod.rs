//! What the benches that start the release binary share: the server on a free loopback port
//! in a data directory of its own, its CPU and memory read from /proc, and the figures'
//! helpers.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `name` from the environment, else `default`.
pub fn var(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile (0 to 1) of sorted figures.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// `exotel-voicebot serve` with only `env` (and its port) in its environment, in a fresh
    /// directory named after the bench and `name`; waits until it listens.
    pub fn start(bench: &str, name: &str, env: &[(&str, String)]) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("bench-{bench}-{name}-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a data directory");
        let child = Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"))
            .arg("serve")
            .current_dir(&dir)
            .env_clear()
            .env("PORT", port.to_string())
            .env("BIND", "127.0.0.1")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the release binary");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // The port is bound before the stored state is opened: the server is up once /health
        // answers, not when the port takes connections.
        let deadline = Instant::now() + Duration::from_secs(30);
        let health = format!("http://{addr}/health");
        while TcpStream::connect(addr).is_err()
            || !minreq::get(&health)
                .with_timeout(5)
                .send()
                .is_ok_and(|r| r.status_code == 200)
        {
            assert!(
                Instant::now() < deadline,
                "{name}: the server did not answer /health"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, addr }
    }

    /// CPU seconds (user and system) the server has used so far.
    pub fn cpu_s(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("the server's /proc stat");
        let after_name = &stat[stat.rfind(')').expect("stat's comm") + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    }

    /// (RSS now, peak RSS) in KiB.
    pub fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
