//! deploy/ tried for real on this machine: systemd accepts the unit, and a call goes through
//! nginx and Caddy configured by the snippets (their TLS with a certificate made here, their
//! WebSocket upgrade, the server behind them on loopback). The Dockerfile's steps run in
//! `deploy/image-by-hand`, from dist/build, since they need the static binary and root.
//!
//! Needs systemd-analyze, nginx and caddy (Debian's systemd, nginx-light and caddy packages;
//! .ci/run installs them).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A port for a proxy to listen on. Not one that binding to port 0 hands out: taken that way and
/// let go, the kernel can give the same port to the next socket bound to port 0 (the server
/// behind the proxy, or the other test's), and the proxy cannot bind. So it comes from below
/// the kernel's ephemeral range (`ip_local_port_range`), which port 0 never gives; a counter
/// keeps this file's tests apart, and a port is used only if it binds here and now.
fn proxy_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (from, to) = (
        ephemeral_from.saturating_sub(16384).max(1024),
        ephemeral_from,
    );
    assert!(
        to > from,
        "no ports below the ephemeral range ({ephemeral_from})"
    );
    let span = to - from;
    let start = std::process::id() * 7 + NEXT.fetch_add(997, Ordering::Relaxed);
    (0..span)
        .map(|k| (from + (start + k) % span) as u16)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port below the ephemeral range")
}

fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "{name} is not installed (Debian's packages; dev/test installs it as root)"
    );
    Command::new(String::from_utf8(found.stdout).unwrap().trim())
}

#[test]
fn systemd_accepts_the_unit() {
    let dir = support::temp_dir("deploy");
    let unit = std::fs::read_to_string(repo("deploy/exotel-voicebot.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/exotel-voicebot serve"));
    for needed in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "StateDirectory=exotel-voicebot",
        "Restart=on-failure",
        "LimitNOFILE=",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed}");
    }
    // The unit as installed, but pointing at this build (verify checks the binary exists).
    let unit = unit.replace(
        "/usr/local/bin/exotel-voicebot",
        env!("CARGO_BIN_EXE_exotel-voicebot"),
    );
    let path = dir.join("exotel-voicebot.service");
    std::fs::write(&path, unit).unwrap();
    let out = tool("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And it does fail on a broken unit, so the check above means something.
    let broken = dir.join("broken.service");
    std::fs::write(&broken, "[Service]\nExecStart=/nonexistent/x\n").unwrap();
    assert!(!tool("systemd-analyze")
        .arg("verify")
        .arg(&broken)
        .output()
        .unwrap()
        .status
        .success());
}

/// A proxy process, stopped when dropped: SIGTERM, so that nginx's master stops its workers
/// (SIGKILL would leave them running, holding the test's output open).
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// Waits until the proxy listens on `port`; its own log (`log`) is in the failure's message.
fn wait_for_port(port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {port}; the proxy's log:\n{}",
            proxy_log(log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn proxy_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_else(|e| format!("({}: {e})", log.display()))
}

/// A server behind the proxy on `proxy_port`, as the snippets' comments set it up.
fn server_behind(proxy_port: u16) -> support::Server {
    let base = format!("https://localhost:{proxy_port}");
    support::Server::start(&[("TRUST_PROXY", "127.0.0.1"), ("WEBHOOK_BASE_URL", &base)])
}

/// Two instances sharing a PostgreSQL cluster of the test's own, behind the proxy's public
/// URL; `None` (said) on a machine without PostgreSQL, except under `CI=true`.
fn instances_behind(
    proxy_port: u16,
) -> Option<(support::postgres::Cluster, support::Server, support::Server)> {
    let pg = support::postgres::Cluster::start("deploy-instances")?;
    let base = format!("https://localhost:{proxy_port}");
    let env = [
        ("TRUST_PROXY", "127.0.0.1"),
        ("WEBHOOK_BASE_URL", base.as_str()),
        ("DATABASE_URL", pg.url.as_str()),
    ];
    let (a, b) = (support::Server::start(&env), support::Server::start(&env));
    Some((pg, a, b))
}

/// After `simulate` through the proxy to two instances: the calls ran their media on the
/// instances between them, and the shared call log holds one completed row for each.
fn calls_shared_by(a: &support::Server, b: &support::Server, calls: usize) {
    let ended = |s: &support::Server| s.log().iter().filter(|l| l.contains("media.ended")).count();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ended(a) + ended(b) < calls {
        assert!(
            Instant::now() < deadline,
            "{} and {} media sessions ended",
            ended(a),
            ended(b)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ended(a) + ended(b), calls);
    let page = loop {
        let page = a.get("/calls?limit=100").json();
        let rows = page["calls"].as_array().unwrap().clone();
        if rows.len() == calls && rows.iter().all(|r| r["status"] == "completed") {
            break page;
        }
        assert!(Instant::now() < deadline, "{page}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        b.get("/calls?limit=100").json(),
        page,
        "one call log for both"
    );
}

/// `simulate` through the proxy over HTTPS and wss://; its report. A failure's message ends
/// with the proxy's own log (`log`).
fn simulate_through(proxy_port: u16, ca: &Path, log: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_exotel-voicebot"))
        .env_clear()
        .args([
            "simulate",
            "--server",
            &format!("127.0.0.1:{proxy_port}"),
            "--tls-ca",
        ])
        .arg(ca)
        .args(["--seconds", "2", "--calls", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}\nthe proxy's log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy_log(log)
    );
    stdout
}

/// nginx serving `site` (a server block, already given this test's port, certificate and
/// upstreams) from `dir`, checked with `nginx -t` first; stops when dropped.
fn run_nginx(dir: &Path, site: String, port: u16) -> Proxy {
    std::fs::write(dir.join("site.conf"), site).unwrap();
    let main = format!(
        "daemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d};\n  proxy_temp_path {d};\n  include {d}/site.conf;\n}}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let check = tool("nginx")
        .args(["-t", "-p"])
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let nginx = Proxy(
        tool("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port, &dir.join("error.log"));
    nginx
}

/// Caddy serving `site` (the shipped site with this test's port, certificate and upstreams)
/// from `dir`, with no admin endpoint, so that tests do not share one; stops when dropped.
fn run_caddy(dir: &Path, site: String, port: u16) -> Proxy {
    let config = dir.join("Caddyfile");
    std::fs::write(
        &config,
        format!("{{\n\tadmin off\n\tauto_https disable_redirects\n}}\n{site}"),
    )
    .unwrap();
    let log = dir.join("caddy.log");
    let caddy = Proxy(
        tool("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&config)
            .env("HOME", dir)
            .env("XDG_DATA_HOME", dir)
            .env("XDG_CONFIG_HOME", dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port, &log);
    caddy
}

/// `caddy validate` on a shipped Caddyfile.
fn caddy_validates(file: &str) {
    let validate = tool("caddy")
        .args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(repo(file))
        .output()
        .unwrap();
    assert!(
        validate.status.success(),
        "{}",
        String::from_utf8_lossy(&validate.stderr)
    );
}

/// The shipped nginx snippet with this test's port and certificate.
fn nginx_site(file: &str, port: u16, cert: &Path, key: &Path) -> String {
    std::fs::read_to_string(repo(file))
        .unwrap()
        .replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"))
        .replace(
            "/etc/letsencrypt/live/voicebot.example.com/fullchain.pem",
            cert.to_str().unwrap(),
        )
        .replace(
            "/etc/letsencrypt/live/voicebot.example.com/privkey.pem",
            key.to_str().unwrap(),
        )
}

/// The shipped Caddyfile with this test's port and certificate.
fn caddy_site(file: &str, port: u16, cert: &Path, key: &Path) -> String {
    std::fs::read_to_string(repo(file)).unwrap().replace(
        "voicebot.example.com {",
        &format!(
            "https://localhost:{port} {{\n\ttls {} {}",
            cert.display(),
            key.display()
        ),
    )
}

#[test]
fn a_call_goes_through_nginx_configured_by_the_snippet() {
    let dir = support::temp_dir("deploy");
    let support::Pki { ca, cert, key } = support::make_pki(&dir, "proxy");
    let port = proxy_port();
    let server = server_behind(port);
    // The snippet as shipped, with this test's port, certificate and server.
    let site = nginx_site("deploy/nginx.conf", port, &cert, &key)
        .replace("127.0.0.1:3000", &server.addr.to_string());
    let _nginx = run_nginx(&dir, site, port);
    let report = simulate_through(port, &ca, &dir.join("error.log"));
    assert!(report.contains("calls: 2 run, 2 clean"), "{report}");
    // The server saw the calls come through the proxy.
    server.wait_for_log(&["media.ended"]);
}

#[test]
fn a_call_goes_through_caddy_configured_by_the_caddyfile() {
    let dir = support::temp_dir("deploy");
    let support::Pki { ca, cert, key } = support::make_pki(&dir, "proxy");
    let port = proxy_port();
    let server = server_behind(port);
    caddy_validates("deploy/Caddyfile");
    let site = caddy_site("deploy/Caddyfile", port, &cert, &key)
        .replace("127.0.0.1:3000", &server.addr.to_string());
    let _caddy = run_caddy(&dir, site, port);
    let report = simulate_through(port, &ca, &dir.join("caddy.log"));
    assert!(report.contains("calls: 2 run, 2 clean"), "{report}");
    server.wait_for_log(&["media.ended"]);
}

#[test]
fn calls_go_through_nginx_to_two_instances_on_one_postgresql() {
    let dir = support::temp_dir("deploy-instances");
    let support::Pki { ca, cert, key } = support::make_pki(&dir, "proxy");
    let port = proxy_port();
    let Some((_pg, a, b)) = instances_behind(port) else {
        return;
    };
    let site = nginx_site("deploy/nginx-instances.conf", port, &cert, &key)
        .replace("10.0.0.11:3000", &a.addr.to_string())
        .replace("10.0.0.12:3000", &b.addr.to_string());
    let _nginx = run_nginx(&dir, site, port);
    let report = simulate_through(port, &ca, &dir.join("error.log"));
    assert!(report.contains("calls: 2 run, 2 clean"), "{report}");
    calls_shared_by(&a, &b, 2);
}

#[test]
fn calls_go_through_caddy_to_two_instances_on_one_postgresql() {
    let dir = support::temp_dir("deploy-instances");
    let support::Pki { ca, cert, key } = support::make_pki(&dir, "proxy");
    let port = proxy_port();
    caddy_validates("deploy/Caddyfile.instances");
    let Some((_pg, a, b)) = instances_behind(port) else {
        return;
    };
    let site = caddy_site("deploy/Caddyfile.instances", port, &cert, &key)
        .replace("10.0.0.11:3000", &a.addr.to_string())
        .replace("10.0.0.12:3000", &b.addr.to_string());
    let _caddy = run_caddy(&dir, site, port);
    let report = simulate_through(port, &ca, &dir.join("caddy.log"));
    assert!(report.contains("calls: 2 run, 2 clean"), "{report}");
    calls_shared_by(&a, &b, 2);
}
