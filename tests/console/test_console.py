"""The operator console in a real browser: each view, a live call, a call's recording, a
campaign from a CSV, a call from the browser's microphone to an agent, and the attacks the
page must refuse. Screenshots go to docs/img/."""

import datetime
import re
import subprocess
import threading
import http.server

from playwright.sync_api import expect

from conftest import TOKEN

VIEWS = [
    ("Live", "Live calls"),
    ("Calls", "Calls"),
    ("Campaigns", "Campaigns"),
    ("Agents", "Agents"),
    ("Phones", "Phones"),
    ("Do not call", "Do not call"),
]


def simulate(server, seconds):
    """An inbound call that streams `seconds` of audio to the echo bot, as Exotel would."""
    return subprocess.Popen(
        [server.binary, "simulate", "--server", f"127.0.0.1:{server.port}", "--seconds", str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_every_view_opens_after_signing_in_with_the_keyboard_and_none_has_a_javascript_error(console):
    tab = console.tab
    tab.goto(console.server.base + "/ui/")
    token = tab.get_by_label("API token")
    expect(token).to_be_focused()
    tab.keyboard.type(TOKEN)
    tab.keyboard.press("Enter")
    nav = tab.get_by_role("navigation")
    for link, heading in VIEWS:
        nav.get_by_role("link", name=link).click()
        expect(tab.get_by_role("heading", level=1)).to_have_text(heading)
        expect(nav.get_by_role("link", name=link)).to_have_attribute("aria-current", "page")
    assert console.errors == []


def test_every_view_is_readable_390_px_wide(console):
    console.tab.set_viewport_size({"width": 390, "height": 844})
    tab = console.sign_in()
    for link, heading in VIEWS:
        tab.get_by_role("navigation").get_by_role("link", name=link).click()
        expect(tab.get_by_role("heading", level=1)).to_have_text(heading)
        overflow = tab.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{link} is {overflow} px too wide at 390 px"
    assert console.errors == []


def test_a_live_call_ticks_then_its_page_plays_and_downloads_its_recording(console, server):
    tab = console.sign_in()
    call = simulate(server, 6)
    row = tab.get_by_role("row").filter(has_text="+919876543210")
    expect(row).to_have_count(1, timeout=10000)
    expect(row).to_contain_text("in-progress")
    duration = row.locator(".duration")
    first = duration.inner_text()
    expect(duration).not_to_have_text(first, timeout=5000)
    expect(tab.locator("#capacity")).to_contain_text("1 of")
    console.shot("console-live.png")
    call_log_id = row.get_by_role("link").inner_text()
    out, _ = call.communicate(timeout=60)
    assert call.returncode == 0, out.decode()
    expect(row).to_have_count(0, timeout=10000)
    server.until("the call has ended", lambda: server.api("GET", f"/calls/{call_log_id}")[1].get("endedAt"))
    tab.get_by_role("navigation").get_by_role("link", name="Calls").click()
    tab.get_by_role("link", name=call_log_id).click()
    expect(tab.get_by_role("heading", level=1)).to_have_text(f"Call {call_log_id}")
    expect(tab.get_by_role("listitem").filter(has_text="completed")).to_have_count(1)
    audio = tab.locator("audio")
    audio.evaluate("a => a.play()")
    tab.wait_for_function("() => document.querySelector('audio').currentTime > 0.2")
    seconds = audio.evaluate("a => a.duration")
    assert 5 < seconds < 9, seconds
    with tab.expect_download() as download:
        tab.get_by_role("link", name="Download the recording").click()
    with open(download.value.path(), "rb") as wav:
        assert wav.read(4) == b"RIFF"
    console.shot("console-call.png")
    assert console.errors == []


def zone_where_it_is_about_noon():
    """A fixed offset (`-03:00`, `+11:00`) in which the local time now is between 11:30 and 12:30."""
    now = datetime.datetime.now(datetime.timezone.utc)
    hours = 12 - round(now.hour + now.minute / 60)
    return f"{'-' if hours < 0 else '+'}{abs(hours):02d}:00"


CSV = b"to,name\n+919800000001,Asha\n+919800000002,Bo\nnot-a-number,Chen\n+919800000003,Dev\n"


def test_a_csv_with_a_bad_row_is_named_before_anything_is_made_then_the_campaign_starts_and_pauses(console, server):
    tab = console.sign_in()
    tab.get_by_role("navigation").get_by_role("link", name="Campaigns").click()
    tab.get_by_role("link", name="New campaign").click()
    tab.get_by_label("Name").fill("console-trial")
    tab.get_by_label("Contacts").set_input_files({"name": "contacts.csv", "mimeType": "text/csv", "buffer": CSV})
    tab.get_by_label("Calls per minute").fill("1")
    # The default window (09:00 to 21:00) in a zone where it is now about noon, so that the
    # campaign dials whenever the test runs (a run after 21:00 in India once waited forever).
    tab.get_by_label("Timezone").fill(zone_where_it_is_about_noon())
    tab.get_by_role("button", name="Check contacts").click()
    expect(tab.get_by_text(re.compile(r"^row 3: to: "))).to_be_visible()
    expect(tab.get_by_text("3 contacts will be called.")).to_be_visible()
    assert server.api("GET", "/campaigns")[1]["campaigns"] == [], "a preview makes nothing"
    console.shot("console-campaign-new.png")
    tab.get_by_role("button", name="Start campaign").click()
    expect(tab.get_by_role("heading", level=1)).to_have_text("Campaign console-trial")
    campaign_id = tab.url.rsplit("/", 1)[1]
    server.until("the first contact is dialed", lambda: server.api("GET", f"/campaigns/{campaign_id}")[1]["dialed"] >= 1)
    tab.get_by_role("button", name="Pause console-trial").click()
    expect(tab.get_by_role("button", name="Resume console-trial")).to_be_visible()
    assert server.api("GET", f"/campaigns/{campaign_id}")[1]["status"] == "paused"
    tab.get_by_role("button", name="Resume console-trial").click()
    expect(tab.get_by_role("button", name="Pause console-trial")).to_be_visible()
    tab.get_by_role("button", name="Cancel console-trial").click()
    expect(tab.locator("dl.facts dd").first).to_have_text("canceled")
    assert server.api("GET", f"/campaigns/{campaign_id}")[1]["status"] == "canceled"
    tab.get_by_role("link", name="Its calls in the call log").click()
    expect(tab.get_by_role("heading", level=1)).to_have_text("Calls")
    expect(tab.get_by_label("Campaign id")).to_have_value(campaign_id)
    expect(tab.get_by_role("row").filter(has_text="+919800000001")).to_have_count(1)
    assert console.errors == []


def test_a_call_from_the_browser_to_the_echo_agent_carries_audio_both_ways(console, server):
    status, _ = server.api("POST", "/agents", {"name": "echo-web", "bot": "echo"})
    assert status == 201
    tab = console.sign_in()
    tab.get_by_role("navigation").get_by_role("link", name="Agents").click()
    tab.get_by_role("link", name="echo-web").click()
    tab.get_by_role("button", name="Talk to this agent").click()
    expect(tab.locator("#talk-counts")).to_have_text(re.compile(r"heard [1-9]"), timeout=15000)
    meter = tab.get_by_role("meter", name="Microphone level")
    tab.wait_for_function("() => Number(document.querySelector('[role=meter]').getAttribute('aria-valuenow')) > 0")
    console.shot("console-agent-talk.png")
    call_log_id = tab.get_by_role("status").get_by_role("link").inner_text()
    tab.get_by_role("button", name="Hang up").click()
    expect(tab.get_by_role("button", name="Talk to this agent")).to_be_enabled()
    expect(meter).to_be_visible()
    row = server.until(
        "the web call's row is completed",
        lambda: (lambda r: r if r.get("status") == "completed" else None)(server.api("GET", f"/calls/{call_log_id}")[1]),
    )
    assert row["direction"] == "web" and row["agent"] == "echo-web", row
    assert row["framesIn"] > 0 and row["framesOut"] > 0, row
    assert console.errors == []


class Evil(http.server.BaseHTTPRequestHandler):
    """Another site's page: it posts to the console's API with whatever the browser sends."""

    target = ""

    def do_GET(self):
        page = f"""<!doctype html><body><script>
fetch("{self.target}/dnc", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}}, body: "+919800000666"}})
  .finally(() => document.title = "sent");
</script></body>""".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args):
        pass


def test_the_attacks_are_refused_cross_site_post_no_cookie_token_in_storage_inline_script(console, browser, server):
    tab = console.sign_in()
    # The token is nowhere a script can read it.
    stored = tab.evaluate(
        "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage), document.cookie])"
    )
    assert TOKEN not in stored and "evb_session" not in stored, stored
    # A same-origin request with the cookie but not the page's CSRF token.
    status = tab.evaluate(
        """() => fetch('/dnc', {method: 'POST', headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({numbers: ['+919800000555']})}).then(r => r.status)"""
    )
    assert status == 403
    # Another site's page in the same browser (another port of 127.0.0.1: the same site to
    # SameSite, so the cookie goes with it; its Origin gives it away).
    Evil.target = server.base
    evil = http.server.HTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    other = console.context.new_page()
    other.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
    expect(other).to_have_title("sent")
    evil.shutdown()
    numbers = server.api("GET", "/dnc")[1]["numbers"]
    assert "+919800000666" not in numbers and "+919800000555" not in numbers, numbers
    # No cookie: a new browser profile is asked to sign in, and the API says 401.
    fresh = browser.new_context()
    stranger = fresh.new_page()
    stranger.goto(server.base + "/ui/")
    expect(stranger.get_by_role("button", name="Sign in")).to_be_visible()
    assert stranger.evaluate("() => fetch('/calls').then(r => r.status)") == 401
    assert stranger.evaluate("() => fetch('/live').then(r => r.status)") == 401
    fresh.close()
    # An inline script, as an injection would add it, does not run.
    blocked = tab.evaluate(
        """() => new Promise(done => {
            document.addEventListener('securitypolicyviolation', e => done(e.effectiveDirective), {once: true});
            const s = document.createElement('script');
            s.textContent = 'window.__injected = 1';
            document.body.append(s);
        })"""
    )
    assert blocked.startswith("script-src"), blocked
    assert tab.evaluate("() => window.__injected") is None
