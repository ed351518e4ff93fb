"""The console's browser tests: the release binary, the project's fake Exotel behind it, and
Debian's Chromium driven by Playwright, all on loopback. dev/console-test runs them.

Every wait here waits for a condition (Playwright's expect, or a poll of the API with a
deadline), never for a fixed time.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import sync_playwright

TOKEN = "console-test-token-5678"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A microphone for the web call (a beep), allowed without asking.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    # The recording's player starts from the test, without a click on its own button.
    "--autoplay-policy=no-user-gesture-required",
]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHOTS = os.path.join(ROOT, "docs", "img")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, proc):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} never listened on {port}")


class Server:
    """The binary under test, its fake Exotel, and the API as a bearer client sees it."""

    def __init__(self, binary, work):
        self.binary = binary
        self.work = work
        self.fake_port = free_port()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.procs = []
        self.fake = self.spawn(
            [binary, "fake-exotel", "--port", str(self.fake_port), "--ring-ms", "200", "--talk-ms", "60000"],
            "fake.log",
        )
        wait_port(self.fake_port, "fake-exotel", self.fake)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PORT": str(self.port),
            "BIND": "127.0.0.1",
            "API_TOKEN": TOKEN,
            "RECORD": "1",
            "DATA_DIR": os.path.join(work, "data"),
            "EXOTEL_API_KEY": "k",
            "EXOTEL_API_TOKEN": "t",
            "EXOTEL_SID": "console",
            "EXOTEL_CALLER_ID": "08047112233",
            "EXOTEL_API_BASE_URL": f"http://127.0.0.1:{self.fake_port}",
            "LOG_LEVEL": "warn",
        }
        self.server = self.spawn([binary, "serve"], "server.log", env=env)
        wait_port(self.port, "the server", self.server)

    def spawn(self, argv, log, env=None):
        out = open(os.path.join(self.work, log), "wb")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.work, env=env)
        self.procs.append(proc)
        return proc

    def api(self, method, path, body=None, content_type="application/json", headers=None):
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {TOKEN}")
        if data is not None:
            request.add_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            request.add_header(k, v)
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def until(self, what, check, seconds=20):
        """Polls `check()` until it returns something true; fails naming `what`."""
        deadline = time.monotonic() + seconds
        while True:
            got = check()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"never: {what}")
            time.sleep(0.05)

    def stop(self):
        # The server must have lived through every test.
        alive = self.server.poll() is None
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                # Draining waits for live calls (a campaign's may still ring); enough.
                proc.kill()
                proc.wait()
        assert alive, f"the server died during the tests with {self.server.returncode}"


@pytest.fixture(scope="session")
def server():
    binary = os.path.realpath(os.environ.get("BIN", os.path.join(ROOT, "target/release/exotel-voicebot")))
    work = tempfile.mkdtemp(prefix="console-test-")
    s = Server(binary, work)
    yield s
    s.stop()
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


class Page:
    """A browser tab on the console, with every JavaScript error it saw."""

    def __init__(self, context, server):
        self.context = context
        self.server = server
        self.tab = context.new_page()
        self.errors = []
        self.tab.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.tab.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))

    def sign_in(self):
        self.tab.goto(self.server.base + "/ui/")
        self.tab.get_by_label("API token").fill(TOKEN)
        self.tab.get_by_role("button", name="Sign in").click()
        self.tab.get_by_role("navigation").get_by_role("link", name="Live").wait_for()
        return self.tab

    def shot(self, name):
        os.makedirs(SHOTS, exist_ok=True)
        self.tab.screenshot(path=os.path.join(SHOTS, name), full_page=True)


@pytest.fixture
def console(browser, server):
    context = browser.new_context(viewport={"width": 1100, "height": 760}, accept_downloads=True)
    page = Page(context, server)
    yield page
    context.close()
