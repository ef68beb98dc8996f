"""Reliability under abuse: one line per check, with its figures.

    python bench/reliability.py                                   # every check (PostgreSQL: see --pg-url)
    python bench/reliability.py --only logins fuzz pii            # some of them
    python bench/reliability.py --votes-per-reviewer 200          # a quicker votes check

Checks:

* ``logins`` (SQLite and PostgreSQL): 40 threads send a wrong password for one account at the same instant.
  Expect: exactly 5 attempts get a password check (``collect.auth`` counts an attempt in one UPDATE before it
  checks), the account is locked, the right password is refused while it is, and every refusal reads the same.
* ``votes`` (PostgreSQL): 32 reviewers × ``--votes-per-reviewer`` votes (default 2,000) through the review path
  (``next_item`` → ``submit_vote``) on a database filled by ``bench/review_load.py``'s fill, with a double-click
  every 20th vote (must answer "duplicate of the first"), a racing double-click (two submits at once: exactly one
  writes) and a stale tab that presses Skip on a pair already voted (must be refused). Expect 0 lost, 0 duplicates
  and no pair with more votes than it wanted.
* ``kill`` (PostgreSQL): 8 reviewers vote while another connection terminates every backend of the database
  (``pg_terminate_backend``) every second. The app's engine (``db.session.make_engine``: ``pool_pre_ping``) and
  ``db.session.in_transaction`` (retry on a lost connection; votes are idempotent) must recover: every vote is
  either written once or refused with a clear error, nothing is lost or duplicated.
* ``fuzz``: ``--fuzz-files`` generated files per format (JSONL, JSON, CSV, Parquet; the generator of
  ``tests/test_ingest_properties.py``: deep nesting, huge numbers, NULs, Unicode digits, duplicate headers, wrong
  encodings, truncated Parquet) through import validation: each ends in clean rows or a ``GeoAlignError``.
* ``pii``: recall and false positives of the scrubber (``bench/pii.py``'s planted benchmark).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import NullPool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import review_load  # noqa: E402
from collect import auth  # noqa: E402
from collect.accounts import create_user  # noqa: E402
from collect.auth import CurrentUser  # noqa: E402
from collect.review import next_item, skip, submit_vote  # noqa: E402
from db import migrate  # noqa: E402
from db.errors import GeoAlignError  # noqa: E402
from db.models import Pair, User, Vote  # noqa: E402
from db.session import DatabaseUnavailable, in_transaction, make_engine, session_scope  # noqa: E402

PG_ADMIN_URL = review_load.PG_ADMIN_URL
CHOICES = ("left", "right", "tie", "both_bad")


# ------------------------------------------------------------------------------------------------------ databases


class Database:
    """A throwaway migrated database: a SQLite file or a PostgreSQL database created and dropped by ``admin_url``."""

    def __init__(self, backend: str, admin_url: str, tmp: Path, name: str) -> None:
        self.backend, self.admin_url = backend, admin_url
        if backend == "postgres":
            self.name = f"geoalign_reliability_{name}_{os.getpid()}"
            admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{self.name}"'))
            self.url = admin.url.set(database=self.name).render_as_string(hide_password=False)
        else:
            self.url = f"sqlite:///{tmp / f'{name}.db'}"

    def drop(self) -> None:
        if self.backend == "postgres":
            admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


# --------------------------------------------------------------------------------------------------------- logins


def check_logins(backend: str, admin_url: str, tmp: Path, attempts: int = 40) -> bool:
    db = Database(backend, admin_url, tmp, "logins")
    engine = make_engine(db.url)
    try:
        migrate.upgrade(engine)
        with session_scope(engine) as s:
            create_user(s, "target", "right-password-1", ["reviewer"])
        checked = Counter()
        claim = auth._claim_attempt

        def counting_claim(session, username, now):
            got = claim(session, username, now)
            checked["checked" if got is not None else "refused unchecked"] += 1
            return got

        auth._claim_attempt = counting_claim
        barrier, messages = threading.Barrier(attempts), Counter()

        def attempt() -> None:
            barrier.wait(timeout=60)
            try:
                with session_scope(engine) as s:
                    auth.login(s, "target", "wrong-password")
                messages["logged in"] += 1
            except GeoAlignError as exc:
                messages[str(exc)] += 1

        threads = [threading.Thread(target=attempt) for _ in range(attempts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with session_scope(engine) as s:
            locked = s.scalar(select(User.locked_until).where(User.username == "target")) is not None
        checked = Counter(checked)  # the concurrent attempts' figures, before the right password below
        auth._claim_attempt = claim
        try:
            with session_scope(engine) as s:
                auth.login(s, "target", "right-password-1")
            right = "accepted"
        except GeoAlignError:
            right = "refused"
    finally:
        auth._claim_attempt = claim
        engine.dispose()
        db.drop()
    ok = checked["checked"] == auth.MAX_FAILURES and locked and right == "refused" and len(messages) == 1
    print(f"logins   {backend:8}: {attempts} concurrent wrong passwords → {checked['checked']} checked, "
          f"{checked['refused unchecked']} refused unchecked, locked: {'yes' if locked else 'NO'}; the right "
          f"password while locked: {right}; distinct refusal messages: {len(messages)}  "
          f"[{'ok' if ok else 'FAILED'}: expect {auth.MAX_FAILURES} checked]")
    return ok


# ---------------------------------------------------------------------------------------------------------- votes


class Tally:
    """What the simulated reviewers were told, and everything that went wrong, across threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log = review_load.ReviewerLog()
        self.counts: Counter = Counter()

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n


def reviewer(factory, user: CurrentUser, votes: int, tally: Tally, seed: int,
             run: Callable[[Callable], object]) -> None:
    """Vote ``votes`` times (or until the queue is empty) with double-clicks, racing double-clicks and stale tabs."""
    rng = random.Random(seed + user.id)
    cast = loops = 0
    while cast < votes and loops < votes * 3:  # bounded: refusals and errors cannot spin forever
        loops += 1
        choice = rng.choice(CHOICES)
        try:
            item = run(lambda s: next_item(s, user))
            if item is None:
                tally.add("ran out of pairs")
                return
            if loops % 20 == 10:  # two submits of one assignment at the same instant
                review_load.race(factory, user, item.assignment_id, choice, tally.log)
                cast += 1
                continue
            result = run(lambda s, a=item.assignment_id, c=choice: submit_vote(s, user, a, c))
        except DatabaseUnavailable:
            tally.add("refused: database unavailable")
            continue
        except GeoAlignError as exc:
            tally.add(f"refused: {str(exc)[:60]}")
            continue
        except Exception as exc:  # noqa: BLE001 - counted: a reviewer would have seen an error page
            tally.add(f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:60]}")
            continue
        cast += 1
        if result.duplicate:  # a pair just served must not already hold this reviewer's vote
            tally.add("fresh pair answered duplicate")
        else:
            with tally.lock:
                tally.log.written.append(result.vote_id)
        try:
            if loops % 20 == 0:  # a double-click: the same assignment again must name the first vote
                again = run(lambda s, a=item.assignment_id: submit_vote(s, user, a, "tie"))
                tally.add("double-clicks")
                if not again.duplicate or again.vote_id != result.vote_id:
                    tally.add("double-click WRONG")
            if loops % 20 == 5:  # a stale tab presses Skip on the pair it showed, which is voted by now
                tally.add("stale skips")
                try:
                    run(lambda s, a=item.assignment_id: skip(s, user, a))
                    tally.add("stale skip ACCEPTED")
                except DatabaseUnavailable:
                    raise
                except GeoAlignError:
                    pass
        except DatabaseUnavailable:
            tally.add("refused: database unavailable")
        except Exception as exc:  # noqa: BLE001
            tally.add(f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:60]}")


def run_reviewers(engine, users: list[CurrentUser], votes: int, seed: int, tally: Tally,
                  killer: Callable[[threading.Event], None] | None = None) -> float:
    factory = sessionmaker(bind=engine, expire_on_commit=False)

    def run(work):
        return in_transaction(engine, work, backoff_s=0.05)

    stop = threading.Event()
    threads = [threading.Thread(target=reviewer, args=(factory, u, votes, tally, seed, run)) for u in users]
    side = threading.Thread(target=killer, args=(stop,)) if killer else None
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    if side:
        side.start()
    for t in threads:
        t.join()
    stop.set()
    if side:
        side.join()
    return time.perf_counter() - t0


def over_wanted(engine, first_vote: int) -> int:
    """Non-gold pairs that got more live votes (plus earlier ones) than they wanted."""
    live = select(Vote.pair_id).where(Vote.id > first_vote).distinct().subquery()
    per_pair = (select(Vote.pair_id, func.count().label("n")).where(Vote.pair_id.in_(select(live.c.pair_id)))
                .group_by(Vote.pair_id).subquery())
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(per_pair).join(Pair, Pair.id == per_pair.c.pair_id)
                           .where(per_pair.c.n > Pair.reviews_wanted, Pair.is_gold.is_(False)))


def account_line(engine, marker, tally: Tally, users: list[CurrentUser]) -> tuple[dict, int]:
    accounted = review_load.account(engine, marker, tally.log, users)
    return accounted, over_wanted(engine, marker.details["max_ids"]["votes"])


def filled(admin_url: str, tmp: Path, fresh_pairs: int, seed: int) -> tuple[Database, object]:
    db = Database("postgres", admin_url, tmp, "votes")
    per_region = max(review_load.default_prompts_per_region(20_000), -(-fresh_pairs // (6 * 250)))
    shape = review_load.Shape(votes=20_000, prompts_per_region=per_region, fresh_pairs=fresh_pairs, users=200,
                              seed=seed)
    engine = make_engine(db.url)
    t0 = time.perf_counter()
    review_load.fill(engine, shape)
    print(f"  (filled a PostgreSQL database with 20,000 votes and {fresh_pairs:,} open pairs in "
          f"{time.perf_counter() - t0:.0f} s)")
    return db, engine


def check_votes(engine, reviewers: int, votes: int, seed: int) -> bool:
    marker = review_load.read_marker(engine)
    users = review_load.live_users(engine, reviewers, seed)
    tally = Tally()
    seconds = run_reviewers(engine, users, votes, seed, tally)
    accounted, over = account_line(engine, marker, tally, users)
    c = tally.counts
    races_wrong = tally.log.race_wrong
    errors = {k: v for k, v in c.items() if k.startswith(("error", "refused"))}
    ok = (accounted["lost"] == 0 and accounted["duplicates"] == 0 and over == 0 and not c["double-click WRONG"]
          and not c["stale skip ACCEPTED"] and not races_wrong and not errors)
    print(f"votes    postgres: {reviewers} reviewers × {votes:,} votes: {accounted['new_votes']:,} written in "
          f"{seconds:.0f} s ({accounted['new_votes'] / seconds:.0f}/s); double-clicks {c['double-clicks']} "
          f"(wrong {c['double-click WRONG']}), racing double-clicks {tally.log.races} (wrong {races_wrong}), "
          f"stale-tab skips {c['stale skips']} (accepted {c['stale skip ACCEPTED']}); lost {accounted['lost']}, "
          f"duplicates {accounted['duplicates']}, pairs over their wanted reviews {over}; "
          f"errors {sum(errors.values())}"
          f"{' ' + str(errors) if errors else ''}  [{'ok' if ok else 'FAILED'}]")
    return ok


class RetryCounter(logging.Handler):
    """Counts ``db.session``'s "connection lost" warnings: each is one retry."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.n = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.n += "connection lost" in record.getMessage()


def check_kill(engine, url: str, reviewers: int, votes: int, seed: int, every_s: float = 1.0) -> bool:
    # the live votes of the previous check stay: this check counts only rows above its own marker
    marker = review_load.read_marker(engine)  # detached: the changed copy below is never written back
    with engine.connect() as conn:
        first = conn.scalar(select(func.max(Vote.id))) or 0
    marker.details = {**marker.details, "max_ids": {**marker.details["max_ids"], "votes": first}}
    users = review_load.live_users(engine, reviewers, seed + 1)
    killer_engine = create_engine(url, poolclass=NullPool)
    kills = Counter()

    def killer(stop: threading.Event) -> None:
        while not stop.wait(every_s):
            with killer_engine.connect() as conn:
                n = conn.scalar(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                     "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
                conn.commit()
            kills["rounds"] += 1
            kills["backends"] += n or 0

    retries = RetryCounter()
    session_log = logging.getLogger("db.session")
    level = session_log.level
    session_log.addHandler(retries)
    session_log.setLevel(logging.WARNING)
    session_log.propagate = False  # counted, not printed a hundred times
    tally = Tally()
    try:
        seconds = run_reviewers(engine, users, votes, seed + 1, tally, killer)
    finally:
        session_log.removeHandler(retries)
        session_log.setLevel(level)
        session_log.propagate = True
        killer_engine.dispose()
    accounted, over = account_line(engine, marker, tally, users)
    c = tally.counts
    refused = c["refused: database unavailable"]
    other = {k: v for k, v in c.items() if k.startswith("error")}
    ok = accounted["lost"] == 0 and accounted["duplicates"] == 0 and over == 0 and not other
    print(f"kill     postgres: {kills['backends']} backends killed in {kills['rounds']} sweeps over {seconds:.0f} s "
          f"while {reviewers} reviewers voted: {accounted['new_votes']:,} votes written, {retries.n} requests "
          f"retried on a fresh connection, {refused} refused clearly (\"nothing was saved, please try again\"), "
          f"other errors {sum(other.values())}{' ' + str(other) if other else ''}; lost {accounted['lost']}, "
          f"duplicates {accounted['duplicates']}  [{'ok' if ok else 'FAILED'}]")
    return ok


# ----------------------------------------------------------------------------------------------------------- fuzz


def check_fuzz(files: int, seed: int, tmp: Path) -> bool:
    from collect.ingest import validate_file
    from tests.test_ingest_properties import FORMATS, REGIONS, TAGS, _random_file

    rng = random.Random(seed)
    outcomes: dict[str, Counter] = {fmt: Counter() for fmt in FORMATS}
    t0 = time.perf_counter()
    for fmt in FORMATS:
        path = tmp / f"fuzz.{fmt}"
        for _ in range(files):
            path.write_bytes(_random_file(fmt, random.Random(rng.getrandbits(64))))
            kind = rng.choice(["examples", "preferences", "prompts"])
            try:
                _, clean, rejects = validate_file(path, kind, "en-GB-leeds", None, REGIONS, TAGS,
                                                  skip_invalid=rng.random() < 0.5)
                outcomes[fmt]["imported" if clean else "nothing valid, rejects written" if rejects
                              else "imported (empty)"] += 1
            except GeoAlignError:
                outcomes[fmt]["refused with a named error"] += 1
            except Exception as exc:  # noqa: BLE001 - the figure this check exists for
                outcomes[fmt][f"CRASH {type(exc).__name__}"] += 1
    crashes = sum(n for c in outcomes.values() for k, n in c.items() if k.startswith("CRASH"))
    parts = "; ".join(f"{fmt} " + ", ".join(f"{k} {n}" for k, n in sorted(c.items())) for fmt, c in outcomes.items())
    print(f"fuzz     {files * len(FORMATS):,} generated files in {time.perf_counter() - t0:.0f} s: {parts}  "
          f"[{'ok' if not crashes else 'FAILED'}: {crashes} tracebacks]")
    return not crashes


# ------------------------------------------------------------------------------------------------------------ pii


def check_pii(seed: int) -> bool:
    from bench import pii

    figures = pii.measure(seed=seed, per_region=40)
    recall = ", ".join(f"{k} {v:.1f} %" for k, v in sorted(figures["recall"].items()))
    print(f"pii      recall {recall}; false positives {figures['fp_clean']:.2f} % (clean demo corpus), "
          f"{figures['fp_hard']:.2f} % (hard negatives)  [{'ok' if figures['ok'] else 'FAILED'}]")
    return figures["ok"]


# ----------------------------------------------------------------------------------------------------------- main

CHECKS = ("logins", "votes", "kill", "fuzz", "pii")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=CHECKS, default=list(CHECKS), help="checks to run (default all)")
    parser.add_argument("--reviewers", type=int, default=32)
    parser.add_argument("--votes-per-reviewer", type=int, default=2_000)
    parser.add_argument("--kill-reviewers", type=int, default=8)
    parser.add_argument("--kill-votes", type=int, default=100, help="votes per reviewer while backends are killed")
    parser.add_argument("--fuzz-files", type=int, default=2_000, help="generated files per format (default 2,000)")
    parser.add_argument("--pg-url", default=os.environ.get("GEOALIGN_BENCH_PG_URL") or (
        os.environ["DATABASE_URL"] if os.environ.get("DATABASE_URL", "").startswith("postgresql") else PG_ADMIN_URL),
        help="a PostgreSQL URL used only to create and drop the bench databases")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    ok = True
    with tempfile.TemporaryDirectory(prefix="geoalign-reliability-") as name:
        tmp = Path(name)
        if "logins" in args.only:
            for backend in ("sqlite", "postgres"):
                ok &= check_logins(backend, args.pg_url, tmp)
        if {"votes", "kill"} & set(args.only):
            wanted = 2 * (args.reviewers * args.votes_per_reviewer + args.kill_reviewers * args.kill_votes)
            db, engine = filled(args.pg_url, tmp, wanted, args.seed)
            try:
                if "votes" in args.only:
                    ok &= check_votes(engine, args.reviewers, args.votes_per_reviewer, args.seed)
                if "kill" in args.only:
                    ok &= check_kill(engine, db.url, args.kill_reviewers, args.kill_votes, args.seed)
            finally:
                engine.dispose()
                db.drop()
        if "fuzz" in args.only:
            ok &= check_fuzz(args.fuzz_files, args.seed, tmp)
        if "pii" in args.only:
            ok &= check_pii(args.seed)
    print("reliability: all checks passed" if ok else "reliability: CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
