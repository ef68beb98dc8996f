"""Browser latency of the Review page: from a reviewer's key press (Enter after a choice key) until the next pair is
painted, in headless Chromium against a real ``streamlit run app.py``.

    python bench/review_latency.py                      # a fresh SQLite demo database (Manchester, synthetic pairs)
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/geoalign_bench_load python bench/review_latency.py
                                                        # the 1M-vote database that
                                                        # `python bench/review_load.py --backend postgres --keep` fills

Prints p50/p95/max over ``--votes`` keyboard votes (default 30), and the server's own share from the app's log:
``vote_server_ms`` (the submit callback) and ``review_render_ms`` (the review area's script run). The rest is
Streamlit's round trip (websocket, deltas) and the browser's render. On an existing database a fresh reviewer
``latency-<pid>`` of ``--region`` is created; their votes stay (``review_load.py --reuse`` resets the fill).
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
    """Serve the app on ``url``, log in as ``username`` by keyboard and cast ``votes`` votes; the timings in ms."""
    log_path = home / "streamlit.log"
    latencies = []
    with serve_app(home, log_path, url) as (app_url, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.add_init_script(LATENCY_PROBE)
        keyboard_login(page, app_url, username)
        for i in range(votes):
            choose_by_key(page, KEYS[i % len(KEYS)])
            latencies.append(press_until_next_pair(page, "Enter"))
        browser.close()
    text = log_path.read_text()
    return {"browser": latencies,
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
    print(f"server: vote callback p50 {statistics.median(t['vote_server']):.1f} ms, review area script run "
          f"p50 {statistics.median(t['render']):.1f} ms, p95 {percentile(t['render'], .95):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
