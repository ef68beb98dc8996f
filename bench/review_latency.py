"""Browser latency of the Review page: from a reviewer's key press (Enter after a choice key) until the next pair is
painted, in headless Chromium against a real ``streamlit run app.py``.

    python bench/review_latency.py                      # a fresh SQLite demo database (Manchester, synthetic pairs)
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/geoalign_bench_load python bench/review_latency.py
                                                        # the 1M-vote database that
                                                        # `python bench/review_load.py --backend postgres --keep` fills

Prints p50/p95/max over ``--votes`` keyboard votes (default 30), where the time goes (medians of each stage, from
the page's own clock: ``WS_PROBE`` stamps every websocket frame Streamlit sends and receives), and the server's own
share from the app's log: ``vote_server_ms`` (the submit callback) and ``review_render_ms`` (the review area's script
run). The stages of one vote:

* key → sent: the keydown until Streamlit's frontend sends the rerun request (``BackMsg.rerun_script``);
* sent → run started: the network, the server's queue and the script thread until the run announces itself
  (``ForwardMsg.new_session``, sent at the start of each run);
* run started → first delta: the submit callback (the vote's transaction) and the fragment's reads;
* first → last delta: the rest of the fragment's script run, its elements streamed one frame each, and anything that
  holds the GIL after it (the run's last frames wait for the server's event loop);
* last delta → painted: the browser's render of the new pair and the next animation frame (negative when the pair
  was painted before the run's last frames arrived).

It also prints when each mark falls after the key press (p50 and p95), ``finished`` being ``script_finished``.

On an existing database a fresh reviewer ``latency-<pid>`` of ``--region`` is created; their votes stay
(``review_load.py --reuse`` resets the fill).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import sync_playwright  # noqa: E402

from cli.demo import DEMO_DATA  # noqa: E402
from collect.accounts import create_user  # noqa: E402
from collect.ingest import import_examples, import_regions  # noqa: E402
from collect.tags import ensure_default_tags  # noqa: E402
from db import migrate  # noqa: E402
from db.session import make_engine, session_scope  # noqa: E402
from tests.conftest import make_pairs  # noqa: E402
from tests.test_browser import (  # noqa: E402
    CHROME_ARGS,
    CHROMIUM,
    LATENCY_PROBE,
    PASSWORD,
    choose_by_key,
    keyboard_login,
    percentile,
    press_until_next_pair,
    serve_app,
)

KEYS = ["1", "2", "Shift+1", "Shift+2", "3", "4"]

# Stamps each websocket frame with performance.now() (the clock of LATENCY_PROBE) and the top-level protobuf field
# numbers it carries: BackMsg 11 rerun_script; ForwardMsg 4 new_session (a run starts), 5 delta, 6 script_finished.
# The listener is added before Streamlit's own, so the stamp is when the page's main thread picks the frame up.
WS_PROBE = """
(() => {
  const fields = (data) => {
    const b = new Uint8Array(data), out = [];
    let i = 0;
    const varint = () => {
      let v = 0, shift = 0, c;
      do { c = b[i++]; v += (c & 0x7f) * 2 ** shift; shift += 7; } while (c & 0x80 && i < b.length);
      return v;
    };
    while (i < b.length) {
      const tag = varint(), wire = tag & 7;
      out.push(Math.floor(tag / 8));
      if (wire === 0) varint();
      else if (wire === 2) { const n = varint(); i += n; }
      else if (wire === 1) i += 8;
      else if (wire === 5) i += 4;
      else break;
    }
    return out;
  };
  window.__frames = [];
  const Native = window.WebSocket;
  const Probed = function (...args) {
    const ws = new Native(...args);
    const send = ws.send.bind(ws);
    ws.send = (data) => {
      if (data instanceof ArrayBuffer || ArrayBuffer.isView(data))
        window.__frames.push({t: performance.now(), out: true, f: fields(data)});
      return send(data);
    };
    ws.addEventListener("message", (e) => {
      if (e.data instanceof ArrayBuffer) window.__frames.push({t: performance.now(), out: false, f: fields(e.data)});
    });
    return ws;
  };
  Probed.prototype = Native.prototype;
  Object.assign(Probed, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
  window.WebSocket = Probed;
})();
"""
RERUN_SCRIPT, NEW_SESSION, DELTA, SCRIPT_FINISHED = 11, 4, 5, 6
MARKS = ("sent", "run started", "first delta", "last delta", "finished", "painted")
STAGES = ("key → sent", "sent → run started", "run started → first delta", "first → last delta",
          "last delta → painted")


def marks(key: float, shown: float, frames: list[dict]) -> dict[str, float] | None:
    """One vote's ``MARKS``, ms after its keydown, from the paint and the websocket frames; None if one is missing."""
    sent = next((f["t"] for f in frames if f["out"] and RERUN_SCRIPT in f["f"] and f["t"] >= key), None)
    if sent is None:
        return None
    incoming = [f for f in frames if not f["out"] and f["t"] >= sent]
    started = next((f["t"] for f in incoming if NEW_SESSION in f["f"]), None)
    deltas = [f["t"] for f in incoming if DELTA in f["f"]]
    finished = next((f["t"] for f in incoming if SCRIPT_FINISHED in f["f"]), None)
    if started is None or not deltas or finished is None:
        return None
    return {name: t - key for name, t in zip(MARKS, (sent, started, deltas[0], deltas[-1], finished, shown),
                                              strict=True)}


def stages(m: dict[str, float]) -> dict[str, float]:
    """The ``STAGES`` of one vote's marks (last delta → painted is negative when the new pair was painted before the
    run's last frames arrived)."""
    points = (0.0, m["sent"], m["run started"], m["first delta"], m["last delta"], m["painted"])
    return {name: b - a for name, a, b in zip(STAGES, points[:-1], points[1:], strict=True)}


def demo_database(home: Path, region: str, pairs: int) -> str:
    """A fresh SQLite database under ``home``: the demo region, its examples and ``pairs`` synthetic pairs."""
    url = f"sqlite:///{home / 'geoalign.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    with session_scope(engine) as s:
        ensure_default_tags(s)
        import_regions(s, DEMO_DATA / region / "region.json")
        s.flush()
        import_examples(s, DEMO_DATA / region / "examples.jsonl", region=region)
    make_pairs(engine, region, pairs)
    engine.dispose()
    return url


def measure(url: str, home: Path, username: str, votes: int) -> dict[str, list[float]]:
    """Serve the app on ``url``, log in as ``username`` by keyboard and cast ``votes`` votes; the timings in ms:
    ``browser`` (key to paint), each of ``MARKS`` and ``STAGES``, ``vote_server`` and ``render`` (from the app's
    log)."""
    log_path = home / "streamlit.log"
    latencies = []
    breakdown: dict[str, list[float]] = {name: [] for name in MARKS + STAGES}
    with serve_app(home, log_path, url) as (app_url, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.add_init_script(LATENCY_PROBE)
        page.add_init_script(WS_PROBE)
        keyboard_login(page, app_url, username)
        for i in range(votes):
            choose_by_key(page, KEYS[i % len(KEYS)])
            page.evaluate("window.__frames = []")
            latencies.append(press_until_next_pair(page, "Enter"))
            vote = page.evaluate("({key: window.__review.key, shown: window.__review.shown, frames: window.__frames})")
            if (m := marks(vote["key"], vote["shown"], vote["frames"])) is not None:
                for name, ms in (m | stages(m)).items():
                    breakdown[name].append(ms)
        browser.close()
    text = log_path.read_text()
    return {"browser": latencies, **breakdown,
            "vote_server": [float(m) for m in re.findall(r"vote_server_ms=([\d.]+)", text)],
            "render": [float(m) for m in re.findall(r"review_render_ms=([\d.]+)", text)][1:]}  # [0]: the login run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--votes", type=int, default=30, help="keyboard votes timed (default 30)")
    parser.add_argument("--region", default="en-GB-manchester", help="the reviewer's region")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="geoalign-latency-"))
    url = os.environ.get("DATABASE_URL")
    username = f"latency-{os.getpid()}"
    if url is None:
        url = demo_database(home, args.region, min(args.votes + 5, 70))
    engine = make_engine(url)
    with session_scope(engine) as s:
        create_user(s, username, PASSWORD, ["reviewer"], [args.region])
    engine.dispose()
    t = measure(url, home, username, args.votes)
    b = t["browser"]
    print(f"database: {make_engine(url).url.render_as_string()}")
    print(f"key press → next pair painted: p50 {percentile(b, .5):.0f} ms, p95 {percentile(b, .95):.0f} ms, "
          f"max {max(b):.0f} ms (n={len(b)}; goal p95 ≤ 300 ms)")
    n = len(t[MARKS[0]])
    p50 = ", ".join(f"{name} {statistics.median(t[name]):.0f}" for name in MARKS)
    p95 = ", ".join(f"{name} {percentile(t[name], .95):.0f}" for name in MARKS)
    print(f"after the key press (n={n}), p50: {p50} ms; p95: {p95} ms")
    print("where it goes, p50 of each stage: " + ", ".join(
        f"{name} {statistics.median(t[name]):.0f} ms" for name in STAGES))
    print(f"server: vote callback p50 {statistics.median(t['vote_server']):.1f} ms, review area script run "
          f"p50 {statistics.median(t['render']):.1f} ms, p95 {percentile(t['render'], .95):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
