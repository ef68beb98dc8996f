"""End to end in a real headless Chromium: a Manchester reviewer logs in, casts five votes, logs out; a Munich
reviewer then sees only Munich pairs. A whole review session by keyboard alone, timing each key press until the next
pair is visible (``bench/review_latency.py`` reuses these helpers). Also takes the README's screenshot of the Review
page.

Needs Debian's chromium (``make test`` installs it) driven by Playwright.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from sqlalchemy import select

from align.registry import ensure_base_version
from align.sampling import DecodingParams, generate_candidates, load_policy
from cli.demo import DEMO_DATA
from collect.ingest import import_examples, import_regions
from collect.pairing import make_pairs as pair_up
from collect.tags import ensure_default_tags
from db.models import Choice, Pair, Prompt, Region, Side, Split, Strength, User, Vote
from db.session import session_scope
from tests.conftest import NO_GOLD, login_as

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PASSWORD = "long-password-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(engine, settings, tmp_path, smollm2):
    with session_scope(engine) as s:
        ensure_default_tags(s)
        for code in ("en-GB-manchester", "de-DE-munich"):
            import_regions(s, DEMO_DATA / code / "region.json")
        s.flush()
        for code in ("en-GB-manchester", "de-DE-munich"):
            import_examples(s, DEMO_DATA / code / "examples.jsonl", region=code)
    # The real base policy's chat-templated samples, as a reviewer meets them after `make demo`
    outputs = {}
    policy = load_policy(str(smollm2))
    with session_scope(engine) as s:
        base = ensure_base_version(s, str(smollm2))
        for code, n in (("en-GB-manchester", 8), ("de-DE-munich", 4)):
            region = s.scalar(select(Region).where(Region.code == code))
            ids = list(s.scalars(select(Prompt.id).where(Prompt.region_id == region.id, Prompt.split == Split.train)
                                 .order_by(Prompt.content_hash).limit(n)))
            generate_candidates(s, base, ids, 2, DecodingParams(max_new_tokens=64), progress=False, policy=policy)
            made = pair_up(s, ids, base, base, policy=NO_GOLD)
            assert made >= 6 if code == "en-GB-manchester" else made >= 2
            outputs[code] = [(p.generation_a.text, p.generation_b.text)
                             for p in s.scalars(select(Pair).where(Pair.region_id == region.id))]
    login_as(engine, "reviewer-manchester", PASSWORD, regions=["en-GB-manchester"])
    login_as(engine, "reviewer-munich", PASSWORD, regions=["de-DE-munich"])

    with _streamlit(settings, tmp_path) as (url, log_path):
        yield url, log_path, outputs


@contextmanager
def _streamlit(settings, tmp_path):
    """The app served by a real Streamlit process on a free port; yields its URL and log file."""
    with serve_app(settings.home, tmp_path / "streamlit.log") as served:
        yield served


@contextmanager
def serve_app(home: Path, log_path: Path, database_url: str | None = None):
    """``streamlit run app.py`` on a free port with ``GEOALIGN_HOME=home`` (and ``DATABASE_URL``, if given); yields
    its URL and log file."""
    port = _free_port()
    env = os.environ | {"GEOALIGN_HOME": str(home)} | ({"DATABASE_URL": database_url} if database_url else {})
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 60
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                    break
                except OSError:
                    if time.time() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"streamlit did not start:\n{log_path.read_text()}") from None
                    time.sleep(0.5)
            yield f"http://127.0.0.1:{port}", log_path
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def _login(page: Page, url: str, username: str, landing: str = "Review") -> None:
    page.goto(url)
    # the first page of a fresh server imports the whole app: slow on a busy two-core machine
    expect(page.get_by_label("Username", exact=True)).to_be_visible(timeout=90_000)
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name=landing)).to_be_visible(timeout=20_000)
    _settle(page)


def _votes_today(page: Page):
    return page.locator('[data-testid="stMetricValue"]').first


def _settle(page: Page) -> None:
    """Wait until the script run is over: Streamlit keeps stale widgets on screen while it reruns."""
    expect(page.locator('[data-testid="stStatusWidget"]')).to_have_count(0, timeout=20_000)
    page.wait_for_timeout(300)


def _click_once(page: Page, label: str) -> None:
    """Click the control labelled ``label`` once the previous pair's form is gone: each pair has its own form
    (per-assignment keys), and Streamlit shows the old one, stale, until the rerun that replaces it ends."""
    control = page.get_by_text(label, exact=True)
    expect(control).to_have_count(1, timeout=20_000)
    control.click()


def _shown(page: Page, known: set[str]) -> tuple[str, str]:
    """The two outputs on screen, left then right."""
    texts = [t.strip() for t in page.locator('[data-testid="stText"]').all_inner_texts()]
    outputs = [t for t in texts if t in known]
    assert len(outputs) == 2, texts
    return outputs[0], outputs[1]


def test_reviewer_flow_in_chromium(server, engine, tmp_path):
    url, log_path, outputs = server
    known = {t for pairs in outputs.values() for pair in pairs for t in pair}
    # (choice label, strength label or None, rewrite, rewrite side label)
    plan = [("Left is better [1]", "Clearly [Shift]", None, None), ("About the same [3]", None, None, None),
            ("Both are bad [4]", None, "Our kid's favourite brew spot in Ancoats.", "the left output"),
            ("Right is better [2]", "Slightly", None, None), ("Right is better [2]", "Clearly [Shift]", None, None)]
    seen = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        _login(page, url, "reviewer-manchester")
        expect(page.get_by_text("Submit vote")).to_be_visible()
        shot = Path(os.environ.get("GEOALIGN_SCREENSHOT_DIR") or tmp_path) / "review-page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        body = page.inner_text("body")
        for text in known:  # the model's own words may say anything; the page around them must stay blind
            body = body.replace(text, "")
        words = set(re.findall(r"\w+", body))
        assert not words & {"base", "tiny", "v1", "SmolLM2"}  # blind: no model or version name on the page
        for i, (choice, strength, rewrite, side) in enumerate(plan, start=1):
            seen.append(_shown(page, known))
            _click_once(page, choice)
            if strength:
                _click_once(page, strength)
            if rewrite:
                page.get_by_role("textbox", name="Rewrite the better output (optional)").fill(rewrite)
                _click_once(page, side)
            page.get_by_role("button", name="Submit vote").click()
            expect(_votes_today(page)).to_have_text(str(i), timeout=20_000)
            _settle(page)
        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("button", name="Log in")).to_be_visible(timeout=20_000)

        _login(page, url, "reviewer-munich")
        munich_texts = _shown(page, known)
        assert set(munich_texts) <= {t for pair in outputs["de-DE-munich"] for t in pair}
        browser.close()

    with session_scope(engine) as s:
        manc = s.scalar(select(User).where(User.username == "reviewer-manchester"))
        votes = s.scalars(select(Vote).where(Vote.user_id == manc.id).order_by(Vote.id)).all()
        assert len(votes) == 5 and s.scalar(select(Vote.id).where(Vote.user_id != manc.id)) is None
        expected = [(None, Strength.clear), (Choice.tie, None), (Choice.both_bad, None), (None, Strength.slight),
                    (None, Strength.clear)]
        for vote, (left_text, right_text), (choice, _, rewrite, _), (want, want_strength) in zip(
                votes, seen, plan, expected, strict=True):
            pair = s.get(Pair, vote.pair_id)
            shown_left = pair.generation_a if vote.shown_left == Side.a else pair.generation_b
            shown_right = pair.generation_b if vote.shown_left == Side.a else pair.generation_a
            assert (shown_left.text, shown_right.text) == (left_text, right_text)  # recorded side = side shown
            if choice.startswith("Left is better"):
                want = Choice(vote.shown_left.value)
            elif choice.startswith("Right is better"):
                want = Choice(Side.b.value if vote.shown_left == Side.a else Side.a.value)
            assert (vote.choice, vote.strength) == (want, want_strength)
            assert vote.seconds_taken is not None and vote.seconds_taken >= 0
            if rewrite:
                assert vote.rewrite == rewrite and vote.rewrite_of == vote.shown_left
        munich_pairs = set(s.scalars(select(Pair.id).join(Pair.prompt).where(Pair.region_id != manc.regions[0].id)))
        assert not {v.pair_id for v in votes} & munich_pairs

    timings = [float(m) for m in re.findall(r"vote_server_ms=([\d.]+)", log_path.read_text())]
    assert len(timings) == 5
    log.warning("median server time per submitted vote: %.1f ms (n=%d, max %.1f ms)",
                statistics.median(timings), len(timings), max(timings))


# ------------------------------------------------------------------------------------------- keyboard session

# Times each Enter, S or U from its keydown until the next pair is on screen: two output texts that were not on
# screen at the key press, in elements Streamlit does not mark stale, then the next animation frame (the paint).
# textContent, not innerText: reading it forces no layout, so the probe does not slow the render it times.
LATENCY_PROBE = """
window.__review = {key: 0, shown: 0};
const __texts = () => [...document.querySelectorAll('[data-testid="stText"]')]
  .filter((el) => !el.closest('[data-stale="true"]')).map((el) => el.textContent.trim());
document.addEventListener("keydown", (e) => {
  if (["Enter", "KeyS", "KeyU"].includes(e.code) && !e.repeat)
    window.__review = {key: performance.now(), shown: 0, old: new Set(__texts())};
}, true);
new MutationObserver(() => {
  const r = window.__review;
  if (!r.key || r.shown || r.painting || __texts().filter((t) => !r.old.has(t)).length < 2) return;
  r.painting = true;
  requestAnimationFrame(() => { r.shown = performance.now(); });
}).observe(document, {subtree: true, childList: true, characterData: true, attributes: true,
                      attributeFilter: ["data-stale"]});
"""
CHOICE_OF_KEY = {"1": "left", "2": "right", "3": "tie", "4": "both_bad"}


def keyboard_login(page: Page, url: str, username: str, password: str = PASSWORD) -> None:
    """Log in with the keyboard alone: Tab to the username field, type, Tab, type, Enter."""
    page.goto(url)
    expect(page.get_by_label("Username", exact=True)).to_be_visible(timeout=90_000)
    for _ in range(40):
        if page.evaluate("document.activeElement?.getAttribute('aria-label')") == "Username":
            break
        page.keyboard.press("Tab")
    else:
        raise AssertionError("Tab never reached the Username field")
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Review")).to_be_visible(timeout=20_000)
    # the heading comes before the pair (the first run after login also makes the reviewer's pairs): a key pressed
    # before the pair and its choices are on screen has nothing to act on, so wait for them
    expect(page.get_by_role("radio", name="Left is better [1]")).to_be_visible(timeout=30_000)
    page.wait_for_function("window.geoalignReviewKeys === true", timeout=10_000)  # ui/static/review_keys.js loaded
    _settle(page)


def press_until_next_pair(page: Page, key: str) -> float:
    """Press ``key`` (Enter, S or U) and wait for the next pair: milliseconds from the keydown until it is painted."""
    page.keyboard.press(key)
    page.wait_for_function("window.__review.shown > 0", timeout=20_000)
    ms = page.evaluate("window.__review.shown - window.__review.key")
    _settle(page)
    return ms


def choose_by_key(page: Page, key: str) -> None:
    """Press a choice key (``"1"``…``"4"``, or ``"Shift+1"``) and wait until the radio shows it."""
    page.keyboard.press(key)
    label = {"left": "Left is better [1]", "right": "Right is better [2]", "tie": "About the same [3]",
             "both_bad": "Both are bad [4]"}[CHOICE_OF_KEY[key[-1]]]
    expect(page.get_by_role("radio", name=label)).to_be_checked(timeout=5_000)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0–1) of ``values``, linear between ranks (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@pytest.fixture
def keyboard_server(engine, settings, tmp_path):
    """The Manchester demo region with 30 synthetic pairs (no model needed) and one reviewer, served."""
    from tests.conftest import make_pairs

    with session_scope(engine) as s:
        ensure_default_tags(s)
        import_regions(s, DEMO_DATA / "en-GB-manchester" / "region.json")
        s.flush()
        import_examples(s, DEMO_DATA / "en-GB-manchester" / "examples.jsonl", region="en-GB-manchester")
    make_pairs(engine, "en-GB-manchester", 30)
    login_as(engine, "keys", PASSWORD, regions=["en-GB-manchester"])
    with _streamlit(settings, tmp_path) as served:
        yield served


def _expected_choice(vote: Vote, choice: str) -> Choice:
    """The stored choice of a vote cast as ``choice`` (left/right/tie/both_bad as shown)."""
    right = Side.b if vote.shown_left == Side.a else Side.a
    return {"left": Choice(vote.shown_left.value), "right": Choice(right.value), "tie": Choice.tie,
            "both_bad": Choice.both_bad}[choice]


def test_review_session_by_keyboard_only(keyboard_server, engine):
    """Log in, vote with 1–4 (Shift: clearly) and Enter, skip with S, undo with U: no mouse. Typing "1 2 s u" in the
    comment box types it and votes nothing. Logs the latency from each Enter until the next pair is painted."""
    from db.models import Assignment, AuditEvent

    url, log_path = keyboard_server
    known = {f"Manchester copy {side}{i}" for i in range(30) for side in "AB"}
    keys = ["1", "2", "Shift+1", "Shift+2", "3", "4"] * 4  # 24 votes after the first
    votes_cast = []  # (left text, right text, key)
    latencies = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.add_init_script(LATENCY_PROBE)
        keyboard_login(page, url, "keys")
        expect(page.get_by_text("Left is better [1]")).to_be_visible()
        # the keys are inert in a text field: "1 2 s u" is typed, nothing is chosen, skipped or undone
        first = _shown(page, known)
        page.get_by_label("Comment (optional)").focus()
        page.keyboard.type("1 2 s u")
        page.wait_for_timeout(500)
        expect(page.get_by_label("Comment (optional)")).to_have_value("1 2 s u")
        assert page.get_by_role("radio", checked=True).count() == 1  # only the strength's default, "Slightly"
        assert _shown(page, known) == first and _votes_today(page).inner_text() == "0"
        page.keyboard.press("Escape")  # leaves the box; the keys act on the page again
        choose_by_key(page, "Shift+1")
        votes_cast.append((*first, "Shift+1"))
        latencies.append(press_until_next_pair(page, "Enter"))
        expect(_votes_today(page)).to_have_text("1")
        for i, key in enumerate(keys, start=2):
            shown = _shown(page, known)
            choose_by_key(page, key)
            votes_cast.append((*shown, key))
            latencies.append(press_until_next_pair(page, "Enter"))
            expect(_votes_today(page)).to_have_text(str(i))
        skipped = _shown(page, known)
        press_until_next_pair(page, "s")
        assert _shown(page, known) != skipped
        undone = _shown(page, known)
        choose_by_key(page, "2")
        press_until_next_pair(page, "Enter")
        expect(_votes_today(page)).to_have_text(str(len(keys) + 2))
        press_until_next_pair(page, "u")
        expect(_votes_today(page)).to_have_text(str(len(keys) + 1))
        assert _shown(page, known) == undone  # the withdrawn vote's pair comes back first
        browser.close()

    with session_scope(engine) as s:
        user = s.scalar(select(User).where(User.username == "keys"))
        votes = s.scalars(select(Vote).where(Vote.user_id == user.id).order_by(Vote.id)).all()
        assert len(votes) == len(votes_cast) == len(keys) + 1
        for vote, (left_text, right_text, key) in zip(votes, votes_cast, strict=True):
            pair = s.get(Pair, vote.pair_id)
            shown_left = pair.generation_a if vote.shown_left == Side.a else pair.generation_b
            shown_right = pair.generation_b if vote.shown_left == Side.a else pair.generation_a
            assert (shown_left.text, shown_right.text) == (left_text, right_text)
            choice = CHOICE_OF_KEY[key[-1]]
            assert vote.choice == _expected_choice(vote, choice)
            want = None if choice in ("tie", "both_bad") else Strength.clear if "Shift" in key else Strength.slight
            assert vote.strength == want, key
        assert votes[0].comment == "1 2 s u"
        skips = s.scalars(select(Assignment).where(Assignment.user_id == user.id, Assignment.skipped)).all()
        texts = lambda pair_id: {s.get(Pair, pair_id).generation_a.text, s.get(Pair, pair_id).generation_b.text}  # noqa: E731
        assert [texts(a.pair_id) for a in skips] == [set(skipped)]
        (undo,) = s.scalars(select(AuditEvent).where(AuditEvent.action == "undo_vote")).all()
        back = s.scalar(select(Assignment).where(Assignment.user_id == user.id, Assignment.pair_id == undo.entity_id))
        assert texts(back.pair_id) == set(undone)
        right = Side.b if back.shown_left == Side.a else Side.a
        assert undo.details == {"choice": right.value} and not back.voted  # "2" chose the right, then U withdrew it

    server = [float(m) for m in re.findall(r"review_render_ms=([\d.]+)", log_path.read_text())]
    log.warning("key press to next pair painted: p50 %.0f ms, p95 %.0f ms, max %.0f ms (n=%d votes); server render "
                "of the review area p50 %.1f ms", percentile(latencies, 0.5), percentile(latencies, 0.95),
                max(latencies), len(latencies), statistics.median(server))


def test_lead_dashboard_draws_its_charts_in_chromium(loaded, settings, tmp_path):
    """A lead opens the Dashboard on votes between three versions: every chart renders (Vega draws it without an
    error), with a screenshot for a human eye."""
    from align.abtest import import_results
    from tests.conftest import lineage
    from tests.test_abtest import make_test, results_file
    from tests.test_dashboard import MONDAY, cast

    ids = lineage(loaded)
    rev = login_as(loaded, "reviewer-leeds", PASSWORD, regions=["en-GB-leeds"])
    cast(loaded, rev, ids, "v2", "base", ["win"] * 6 + ["loss", "tie", "both_bad"], tags=["local_idiom"])
    cast(loaded, rev, ids, "v2", "v1", ["win", "loss", "win", "tie"], when=MONDAY + timedelta(days=7),
         tags=["place_name"])
    cast(loaded, rev, ids, "v1", "base", ["win", "win", "loss"])
    make_test(loaded, name="spring-leeds", briefs=("b1", "b2"))
    with session_scope(loaded) as s:  # a campaign's results for the A/B tab
        import_results(s, results_file(tmp_path / "campaign.csv", [
            ("spring-leeds-b1-generic", 12000, 410, 52), ("spring-leeds-b1-tuned", 11800, 505, 66),
            ("spring-leeds-b2-generic", 9000, 250, 20), ("spring-leeds-b2-tuned", 9100, 282, 27)]))
    login_as(loaded, "lead", PASSWORD, roles=("lead",))
    with _streamlit(settings, tmp_path) as (url, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        _login(page, url, "lead", landing="GeoAlign")
        page.get_by_role("link", name="Dashboard").click()
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible(timeout=20_000)
        _settle(page)
        expect(page.locator('[data-testid="stMetricValue"]').first).to_have_text("16")
        charts = page.locator(".vega-embed")
        expect(charts.first.locator("canvas, svg").first).to_be_visible(timeout=20_000)
        assert page.locator("text=/Error|Javascript Error/").count() == 0, page.inner_text("body")
        shot = Path(os.environ.get("GEOALIGN_SCREENSHOT_DIR") or tmp_path) / "dashboard-browser-test.png"
        page.screenshot(path=str(shot), full_page=True)
        page.get_by_role("tab", name="Leaderboard").click()
        expect(page.get_by_role("heading", name="Bradley–Terry leaderboard")).to_be_visible()
        visible = [c for c in charts.all() if c.is_visible()]
        assert len(visible) == 1 and visible[0].locator("canvas, svg").count() >= 1
        page.get_by_role("tab", name="A/B tests").click()
        expect(page.get_by_role("heading", name="Lift in live campaigns")).to_be_visible()
        visible = [c for c in charts.all() if c.is_visible()]
        assert len(visible) == 1 and visible[0].locator("canvas, svg").count() >= 1
        page.screenshot(path=str(shot.with_name("abtests-browser-test.png")), full_page=True)
        browser.close()
    assert errors == []
    assert shot.stat().st_size > 20_000
