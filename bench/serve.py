"""Requests per second and latency of the generation API: batches of 32 briefs on SmolLM2-135M-Instruct.

    python bench/serve.py                       # 20 requests of 32 briefs, one client, then two at once
    python bench/serve.py --requests 50 --batch 32 --max-new-tokens 48 --model PATH

Starts ``geoalign serve``'s app under uvicorn on a free local port, over a scratch SQLite database holding the
Manchester demo region with the base model deployed to it and one API key, and posts batches of demo briefs over
HTTP (httpx), the region's avoid-terms banned and local terms boosted as in production. Prints requests/s,
briefs/s and p50/p95 latency per request. Needs the converted model (``geoalign model build-demo``).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from align.deploy import deploy  # noqa: E402
from align.serve import create_app  # noqa: E402
from cli.demo import DEMO_DATA  # noqa: E402
from collect.ingest import import_examples, import_regions  # noqa: E402
from collect.tags import ensure_default_tags  # noqa: E402
from db import migrate  # noqa: E402
from db.apikeys import create_key  # noqa: E402
from db.models import ModelVersion  # noqa: E402
from db.session import make_engine, session_scope  # noqa: E402
from db.settings import get_settings  # noqa: E402

REGION = "en-GB-manchester"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20, help="requests per client setting (default 20)")
    parser.add_argument("--batch", type=int, default=32, help="briefs per request (default 32)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--model", help="base model directory (default: SmolLM2-135M-Instruct under GEOALIGN_HOME)")
    args = parser.parse_args(argv)

    model = Path(args.model) if args.model else get_settings().default_model_dir
    if not (model / "config.json").exists():
        print(f"no model at {model}: run `geoalign demo --no-app` (or pass --model)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/serve.db")
        migrate.upgrade(engine)
        with session_scope(engine) as s:
            ensure_default_tags(s)
            import_regions(s, DEMO_DATA / REGION / "region.json")
            s.flush()
            import_examples(s, DEMO_DATA / REGION / "examples.jsonl", region=REGION)
            s.add(ModelVersion(name="base", base_model=str(model)))
            s.flush()
            deploy(s, REGION, "base")
            key = create_key(s, "bench", [REGION])
        briefs = [json.loads(line) for line in (DEMO_DATA / REGION / "examples.jsonl").read_text().splitlines()]
        items = [{"id": str(i), "brief": b["prompt"], "task_type": b["task_type"]}
                 for i, b in enumerate(briefs[:args.batch])]
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(engine, max_batch=args.batch), host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/v1/generate"
        headers = {"Authorization": f"Bearer {key}"}

        def call(seed: int) -> float:
            body = {"region": REGION, "items": items, "params": {"max_new_tokens": args.max_new_tokens, "seed": seed}}
            started = time.perf_counter()
            r = httpx.post(url, json=body, headers=headers, timeout=300)
            r.raise_for_status()
            assert len(r.json()["outputs"]) == len(items)
            return time.perf_counter() - started

        call(0)  # warm-up: loads the model
        print(f"model {model.name}, batch {args.batch}, max_new_tokens {args.max_new_tokens}, "
              f"{args.requests} requests per setting")
        for clients in (1, 2):
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                latencies = list(pool.map(call, range(1, args.requests + 1)))
            wall = time.perf_counter() - started
            p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) >= 2 else latencies[0]
            p50 = statistics.median(latencies)
            print(f"  {clients} client(s): {args.requests / wall:.2f} requests/s, "
                  f"{args.requests * args.batch / wall:.1f} briefs/s, latency p50 {p50:.2f} s, p95 {p95:.2f} s")
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
