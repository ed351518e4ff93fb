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
use std::time::{Duration, Instant};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "{name} is not installed (Debian's packages; .ci/run installs it)"
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

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server behind the proxy on `proxy_port`, as the snippets' comments set it up.
fn server_behind(proxy_port: u16) -> support::Server {
    let base = format!("https://localhost:{proxy_port}");
    support::Server::start(&[("TRUST_PROXY", "127.0.0.1"), ("WEBHOOK_BASE_URL", &base)])
}

/// `simulate` through the proxy over HTTPS and wss://; its report.
fn simulate_through(proxy_port: u16, ca: &Path) -> String {
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
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn a_call_goes_through_nginx_configured_by_the_snippet() {
    let dir = support::temp_dir("deploy");
    let support::Pki { ca, cert, key } = support::make_pki(&dir, "proxy");
    let port = free_port();
    let server = server_behind(port);
    // The snippet as shipped, with this test's port, certificate and server.
    let snippet = std::fs::read_to_string(repo("deploy/nginx.conf"))
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
        .replace("127.0.0.1:3000", &server.addr.to_string());
    std::fs::write(dir.join("site.conf"), snippet).unwrap();
    let main = format!(
        "daemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d};\n  proxy_temp_path {d};\n  include {d}/site.conf;\n}}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let check = tool("nginx")
        .args(["-t", "-p"])
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _nginx = Proxy(
        tool("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port);
    let report = simulate_through(port, &ca);
    assert!(report.contains("calls: 2 run, 2 clean"), "{report}");
    // The server saw the calls come through the proxy.
    server.wait_for_log(&["media.ended"]);
}

#[test]
fn a_call_goes_through_caddy_configured_by_the_caddyfile() {
    let dir = support::temp_dir("deploy");
    let support::Pki { ca, cert, key } = support::make_pki(&dir, "proxy");
    let port = free_port();
    let server = server_behind(port);
    let shipped = std::fs::read_to_string(repo("deploy/Caddyfile")).unwrap();
    let validate = tool("caddy")
        .args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(repo("deploy/Caddyfile"))
        .output()
        .unwrap();
    assert!(
        validate.status.success(),
        "{}",
        String::from_utf8_lossy(&validate.stderr)
    );
    // The site as shipped, on this test's port with its certificate; no admin endpoint, so
    // tests do not share one.
    let site = shipped
        .replace(
            "voicebot.example.com {",
            &format!(
                "https://localhost:{port} {{\n\ttls {} {}",
                cert.display(),
                key.display()
            ),
        )
        .replace("127.0.0.1:3000", &server.addr.to_string());
    let config = dir.join("Caddyfile");
    std::fs::write(
        &config,
        format!("{{\n\tadmin off\n\tauto_https disable_redirects\n}}\n{site}"),
    )
    .unwrap();
    let _caddy = Proxy(
        tool("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&config)
            .env("HOME", &dir)
            .env("XDG_DATA_HOME", &dir)
            .env("XDG_CONFIG_HOME", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port);
    let report = simulate_through(port, &ca);
    assert!(report.contains("calls: 2 run, 2 clean"), "{report}");
    server.wait_for_log(&["media.ended"]);
}
