"""Load test of the review loop: a database holding 1M votes, then reviewers looping "next pair → vote".

    python bench/review_load.py                               # PostgreSQL, then SQLite: 1M votes, 32 reviewers, 30 s
    python bench/review_load.py --votes 20000 --seconds 5     # smoke run, under a minute
    python bench/review_load.py --backend postgres --keep     # keep the filled database for the next run ...
    python bench/review_load.py --backend postgres --reuse    # ... and skip the fill when it matches
    python bench/review_load.py --backend postgres --think-ms 1000 --processes 2

Fill (timed, not part of the loop figures): a fresh database migrated with db/migrate.py (the same schema as
production), holding the six demo regions, ~2,000 prompts per region, a base model with four regional versions per
region and two all-region versions (parent chains), four generations per (prompt, version), 70 historic pairs per
prompt (5 each of 14 pairings: newest vs parent, vs base, older comparisons, regional vs all-region), 200 reviewers
with one or two regions each, and ``--votes`` votes spread over 12 weeks, each with its assignment, as many per pair
as review_policy.py asks (mostly one, a tenth three; gold pairs ~8) and ``pairs.assigned`` to match; plus a pool of
fresh, unvoted pairs, mostly of the comparisons the scheduler targets. PostgreSQL is filled with COPY, SQLite with
executemany inserts, each in one transaction with secondary indexes (and on PostgreSQL foreign keys) rebuilt after.

Live phase: ``--reviewers`` threads (optionally over ``--processes`` processes), each a distinct reviewer, loop
``next_item`` (one transaction, like a page load) then ``submit_vote`` (a second transaction, like the form post)
for ``--seconds``. Every 20th loop the reviewer double-clicks: the same assignment is submitted again from a new
session and must come back as a duplicate of the first vote; every 20th loop (offset by 10, untimed) two requests
submit the same assignment at the same instant and exactly one may write. Afterwards the votes table is checked
against what the reviewers were told: lost (acknowledged but missing) and duplicates (two votes for one pair and
reviewer, or votes nobody was told about) must both be 0. Errors (e.g. SQLite "database is locked") are counted,
never retried away. Target: p95 ≤ 20 ms per loop. ``--sql-stats`` names the statements the time went to.

Without ``--keep``/``--reuse`` the databases are throwaway (PostgreSQL: ``<--pg-database>_tmp<pid>``, dropped at
the end; SQLite: a temporary file). A reused database is reset to its fill first (rows of earlier live runs deleted).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import (
    JSON,
    Engine,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.orm import sessionmaker
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collect.auth import CurrentUser  # noqa: E402
from collect.ingest import import_regions  # noqa: E402
from collect.review import last_undoable, next_item, progress, submit_vote  # noqa: E402
from collect.review_policy import ReviewPolicy  # noqa: E402
from collect.splits import content_hash  # noqa: E402
from collect.tags import ensure_default_tags  # noqa: E402
from db import migrate  # noqa: E402
from db import session as db_session  # noqa: E402
from db.models import Assignment, AuditEvent, Base, Example, Pair, Region, Tag, User, UserRole, Vote  # noqa: E402
from db.settings import Settings  # noqa: E402

DEMO_DATA = Path(__file__).resolve().parent.parent / "collect" / "demo_data"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"  # only used to CREATE/DROP the bench database
MARKER = "bench_review_load_fill"  # audit action of the row that describes a finished fill (for --reuse)
FILL_FORMAT = 2  # bump when the fill changes: a kept database of another format is filled again

DAY, WEEK = 86_400.0, 7 * 86_400.0
WEEKS = 12  # votes are spread over this many weeks before the fill
SLOTS = ("base", "r1", "r2", "r3", "r4", "all1", "all2")  # the versions a region's prompts have generations from
SAMPLES = 4  # generations per (prompt, version)
HISTORIC = (  # (newer slot, older slot): the pairings voted on as versions were published
    (1, 0), (2, 1), (2, 0), (3, 2), (3, 0), (3, 1), (4, 3), (4, 0), (4, 2),  # newest vs parent, vs base, older
    (5, 0), (6, 5), (6, 0),  # all-region versions
    (2, 5), (4, 6),  # regional vs all-region
)
PAIRS_PER_PAIRING = 5  # historic pairs per (prompt, HISTORIC pairing): 70 per prompt, ~1.2 votes each (policy)
TARGETS = ((4, 3), (4, 0), (6, 5), (6, 0))  # the scheduler's targets: newest versions vs parent and vs base
CHUNK = 20_000
DOUBLE_CLICK_EVERY = 20
COMMENTS = ("", "Left reads more local.", "Too generic.", "Wrong season for this market.", "Nice use of slang.",
            "Price format is off.", "Neither mentions the neighbourhood.")
TIMED = ("loop", "next", "submit", "page")


# ------------------------------------------------------------------------------------------------------- data shape


@dataclass(frozen=True)
class Shape:
    """What one fill holds; a kept database is reused only when its shape matches."""

    votes: int
    prompts_per_region: int
    fresh_pairs: int
    users: int
    seed: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class TableRows:
    """Rows for one table, in the order of ``columns``; ``rows`` may be a generator (counted by ``count``)."""

    name: str
    columns: tuple[str, ...]
    rows: Iterable[tuple]
    count: int


def load_corpus() -> dict[str, list[dict]]:
    """The demo examples per region code: prompts and completions that read like real briefs and outputs."""
    corpus = {}
    for folder in sorted(p for p in DEMO_DATA.iterdir() if (p / "region.json").exists()):
        code = json.loads((folder / "region.json").read_text("utf-8"))["code"]
        corpus[code] = [json.loads(line) for line in (folder / "examples.jsonl").read_text("utf-8").splitlines()]
    return corpus


def default_prompts_per_region(votes: int, regions: int = 6) -> int:
    """Prompts per region so that the historic pairs get about the reviewers the policy asks for."""
    policy = ReviewPolicy.from_env()
    agree = max(policy.agreement_reviews, policy.reviews_per_pair)
    per_pair = (1 - policy.agreement_share) * policy.reviews_per_pair + policy.agreement_share * agree
    return max(10, round(votes / (regions * len(HISTORIC) * PAIRS_PER_PAIRING * per_pair)))


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def plan_fill(shape: Shape, regions: list[tuple[int, str]], tag_ids: list[int], corpus: dict[str, list[dict]],
              now: datetime) -> tuple[list[TableRows], dict[str, int]]:
    """All rows of the fill (ids assigned here, the database is fresh), in foreign-key order, and a summary."""
    rng = np.random.default_rng(shape.seed)
    policy = ReviewPolicy.from_env()  # pairs want reviewers as the deployment's scheduler would ask
    agree = max(policy.agreement_reviews, policy.reviews_per_pair)
    n_regions, per_region = len(regions), shape.prompts_per_region
    n_prompts = n_regions * per_region
    t_now = now.timestamp()
    t0 = t_now - WEEKS * WEEK
    epoch = _dt(t0 - 30 * DAY)

    # versions: slot → (id, publish time) per region; the base and the all-region versions are shared
    publish = np.zeros((n_regions, len(SLOTS)))
    version_id = np.zeros((n_regions, len(SLOTS)), dtype=np.int64)
    for i in range(n_regions):
        publish[i] = [t0 - DAY, *(t0 + k * 2.5 * WEEK + i * DAY for k in range(1, 5)), t0 + 3.5 * WEEK,
                      t0 + 8.5 * WEEK]
        version_id[i] = [1, *(2 + i * 4 + k for k in range(4)), 2 + 4 * n_regions, 3 + 4 * n_regions]
    versions, rounds = [], []
    specs = [(1, "demo-base", None, None, publish[0, 0], 0)]
    for i, (rid, code) in enumerate(regions):
        specs += [(int(version_id[i, k]), f"{code}-r{k}", rid, int(version_id[i, k - 1]), publish[i, k], k)
                  for k in range(1, 5)]
    specs += [(int(version_id[0, 5]), "all-regions-r1", None, 1, publish[0, 5], 1),
              (int(version_id[0, 6]), "all-regions-r2", None, int(version_id[0, 5]), publish[0, 6], 2)]
    for vid, name, rid, parent, ts, number in sorted(specs, key=lambda s: s[4]):
        round_id = None
        if parent is not None:
            round_id = len(rounds) + 1
            rounds.append((round_id, number, rid, "succeeded", {"dpo": {"beta": 0.1}},
                           ["sft", "rm", "dpo", "rl", "eval", "publish"], {"eval": {"prompts": 60}}, None,
                           _dt(ts - 3600), _dt(ts - 3500), _dt(ts)))
        versions.append((vid, name, "models/demo-base", None if parent is None else f"adapters/{name}", parent,
                         round_id, rid, "ready", "base" if parent is None else "rl", {}, {"round": round_id},
                         _dt(ts)))
    versions.sort()

    # users: a lead, an admin, then reviewers; each reviewer has a home region (balanced) and maybe a second one
    n_rev = shape.users
    users = [(1, "lead", "bench-no-login", True, False, 0, None, epoch),
             (2, "admin", "bench-no-login", True, False, 0, None, epoch)]
    roles = [(1, "lead"), (1, "engineer"), (2, "admin")]
    members: list[list[int]] = [[] for _ in range(n_regions)]
    memberships = []
    for u in range(n_rev):
        uid = 3 + u
        users.append((uid, f"reviewer-{u + 1:04d}", "bench-no-login", True, False, 0, None, epoch))
        roles.append((uid, "reviewer"))
        home = u % n_regions
        mine = [home]
        if rng.random() < 0.3:
            mine.append(int((home + rng.integers(1, n_regions)) % n_regions))
        for i in mine:
            members[i].append(uid)
            memberships.append((uid, regions[i][0]))
    activity = np.minimum(rng.pareto(1.5, 3 + n_rev) + 1.0, 20.0)  # a few reviewers do much of the work

    # prompts: demo briefs, numbered variants beyond the corpus size
    prompts, prompt_hash = [], []
    for i, (rid, code) in enumerate(regions):
        ex = corpus[code]
        for j in range(per_region):
            row = ex[j % len(ex)]
            brief = row["prompt"] if j < len(ex) else f"{row['prompt']} (brief {j // len(ex) + 1})"
            h = content_hash(row["task_type"], brief)
            prompt_hash.append(h)
            split = "train" if j % 10 < 8 else ("val" if j % 10 == 8 else "test")
            prompts.append((i * per_region + j + 1, rid, row["task_type"], brief, row.get("month"), split,
                            "bench", h, _dt(t0 - 2 * DAY + j)))

    n_gens = n_prompts * len(SLOTS) * SAMPLES
    params = {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 96}

    def generations() -> Iterator[tuple]:
        for g in range(n_prompts):
            i = g // per_region
            ex = corpus[regions[i][1]]
            for slot in range(len(SLOTS)):
                for s in range(SAMPLES):
                    text_ = ex[(g * 7 + slot * 3 + s * 11) % len(ex)]["completion"]
                    yield (1 + (g * len(SLOTS) + slot) * SAMPLES + s, g + 1, int(version_id[i, slot]), text_,
                           params, slot * 1000 + s, None, _dt(publish[i, slot] + (g % 3600)))

    def gen_id(g: np.ndarray, slot: np.ndarray, sample: np.ndarray) -> np.ndarray:
        return 1 + (g * len(SLOTS) + slot) * SAMPLES + sample

    # historic pairs: every prompt gets PAIRS_PER_PAIRING distinct sample combinations of each HISTORIC pairing,
    # created when the newer version was published
    hist = np.array(HISTORIC)
    n_hist = n_prompts * len(hist) * PAIRS_PER_PAIRING
    picked = np.argsort(rng.random((n_prompts * len(hist), SAMPLES * SAMPLES)), axis=1)[:, :PAIRS_PER_PAIRING]
    hg = np.repeat(np.arange(n_prompts), len(hist) * PAIRS_PER_PAIRING)
    ht = np.tile(np.repeat(np.arange(len(hist)), PAIRS_PER_PAIRING), n_prompts)
    new_slot, old_slot = hist[ht, 0], hist[ht, 1]
    s_new, s_old = picked.ravel() // SAMPLES, picked.ravel() % SAMPLES
    flip = rng.random(n_hist) < 0.5  # the older version's output is "a"
    h_region = hg // per_region
    gen_new, gen_old = gen_id(hg, new_slot, s_new), gen_id(hg, old_slot, s_old)
    h_created = (np.maximum(publish[h_region, new_slot], publish[h_region, old_slot])
                 + rng.uniform(0, 2 * DAY, n_hist))
    h_gold = rng.random(n_hist) < 0.01

    # fresh pairs: unused (version, sample) combinations of the same prompts, created in the last two days as a
    # round does, mostly the comparisons leads watch (newest vs parent and vs base)
    combos = [(a, b, x, y) for a in range(len(SLOTS)) for b in range(a + 1, len(SLOTS))
              for x in range(SAMPLES) for y in range(SAMPLES)]
    combo_index = np.zeros((len(SLOTS), len(SLOTS), SAMPLES, SAMPLES), dtype=np.int64)
    for c, (a, b, x, y) in enumerate(combos):
        combo_index[a, b, x, y] = c
    ctab = np.array(combos)
    lo_slot, hi_slot = np.minimum(new_slot, old_slot), np.maximum(new_slot, old_slot)
    lo_s = np.where(new_slot < old_slot, s_new, s_old)
    hi_s = np.where(new_slot < old_slot, s_old, s_new)
    taken = np.zeros(n_prompts * len(combos), dtype=bool)
    taken[hg * len(combos) + combo_index[lo_slot, hi_slot, lo_s, hi_s]] = True
    free = np.flatnonzero(~taken)
    n_fresh = min(shape.fresh_pairs, len(free))
    targeted = np.isin(ctab[free % len(combos), 0] * 10 + ctab[free % len(combos), 1],
                       [min(p) * 10 + max(p) for p in TARGETS])
    keys = np.where(targeted, np.log(8.0), 0.0) + rng.gumbel(size=len(free))  # weighted sample without replacement
    fresh_keys = np.sort(free[np.argpartition(-keys, n_fresh - 1)[:n_fresh]]) if n_fresh else free[:0]
    fg, fc = fresh_keys // len(combos), fresh_keys % len(combos)
    f_region = fg // per_region
    f_a = gen_id(fg, ctab[fc, 0], ctab[fc, 2])
    f_b = gen_id(fg, ctab[fc, 1], ctab[fc, 3])
    f_swap = rng.random(n_fresh) < 0.5
    f_a, f_b = np.where(f_swap, f_b, f_a), np.where(f_swap, f_a, f_b)
    f_ma = np.where(f_swap, version_id[f_region, ctab[fc, 1]], version_id[f_region, ctab[fc, 0]])
    f_mb = np.where(f_swap, version_id[f_region, ctab[fc, 0]], version_id[f_region, ctab[fc, 1]])
    f_created = t_now - rng.uniform(0, 2 * DAY, n_fresh)
    f_wanted = np.where(rng.random(n_fresh) < policy.agreement_share, agree, policy.reviews_per_pair)

    # votes per historic pair: as many as the policy wanted (gold pairs: many, they are shown to everyone), then
    # nudged so the total is exactly --votes: a few pairs end up short of reviewers (still open), or become
    # agreement pairs
    caps = np.array([min(len(m), 20) for m in members])[h_region]
    wanted = np.where(rng.random(n_hist) < policy.agreement_share, agree, policy.reviews_per_pair)
    k = np.where(h_gold, np.clip(rng.poisson(8, n_hist), 1, caps), np.minimum(wanted, caps))
    upper = np.where(h_gold, caps, np.minimum(np.maximum(wanted, agree), caps))
    if shape.votes > upper.sum():
        raise SystemExit(f"--votes {shape.votes} needs more prompts or users (at most {upper.sum()} fit)")
    while (diff := shape.votes - int(k.sum())) != 0:
        room = np.flatnonzero(k < upper) if diff > 0 else np.flatnonzero(k > 0)
        pick = rng.choice(room, min(abs(diff), len(room)), replace=False)
        k[pick] += 1 if diff > 0 else -1
    wanted = np.where(h_gold, 1, np.where(k > wanted, agree, wanted))

    # pair ids follow creation time, historic first
    h_order = np.argsort(h_created, kind="stable")
    h_pair_id = np.empty(n_hist, dtype=np.int64)
    h_pair_id[h_order] = np.arange(1, n_hist + 1)
    f_order = np.argsort(f_created, kind="stable")
    region_ids = np.array([rid for rid, _ in regions])
    h_a = np.where(flip, gen_old, gen_new)
    h_b = np.where(flip, gen_new, gen_old)
    h_ma = np.where(flip, version_id[h_region, old_slot], version_id[h_region, new_slot])
    h_mb = np.where(flip, version_id[h_region, new_slot], version_id[h_region, old_slot])

    def pairs() -> Iterator[tuple]:
        o = h_order
        cols = [x.tolist() for x in (hg[o] + 1, region_ids[h_region[o]], h_a[o], h_b[o], h_ma[o], h_mb[o],
                                     h_gold[o], flip[o], wanted[o], k[o], h_created[o])]
        for n, (pid, rid, a, b, ma, mb, gold, fl, want, got, ts) in enumerate(zip(*cols, strict=True)):
            yield (n + 1, pid, rid, a, b, ma, mb, None, gold, ("b" if fl else "a") if gold else None, want, got,
                   _dt(ts))
        o = f_order
        cols = [x.tolist() for x in (fg[o] + 1, region_ids[f_region[o]], f_a[o], f_b[o], f_ma[o], f_mb[o],
                                     f_wanted[o], f_created[o])]
        for n, (pid, rid, a, b, ma, mb, want, ts) in enumerate(zip(*cols, strict=True)):
            yield (n_hist + n + 1, pid, rid, a, b, ma, mb, None, False, None, want, 0, _dt(ts))

    # who voted: per region, a weighted sample without replacement per pair (Gumbel top-k on activity)
    v_pair, v_user, skip_pair, skip_user = [], [], [], []
    for i in range(n_regions):
        idx = np.flatnonzero(h_region == i)
        if not len(idx):
            continue
        mem = np.array(members[i])
        keys = np.log(activity[mem])[None, :] + rng.gumbel(size=(len(idx), len(mem)))
        order = np.argsort(-keys, axis=1)
        kk = k[idx]
        mask = np.arange(len(mem))[None, :] < kk[:, None]
        v_pair.append(np.repeat(idx, kk))
        v_user.append(mem[order][mask])
        skips = idx[(rng.random(len(idx)) < 0.02) & (kk < len(mem))]  # someone set the pair aside
        skip_pair.append(skips)
        skip_user.append(mem[order[np.searchsorted(idx, skips), k[skips]]])
    vp, vu = np.concatenate(v_pair), np.concatenate(v_user)
    n_votes = len(vp)
    delay = rng.exponential(4 * DAY, n_votes)
    vt = np.minimum(h_created[vp] + delay, t_now - rng.uniform(60, 6 * 3600, n_votes))
    vt = np.maximum(vt, h_created[vp] + 5)
    order = np.argsort(vt, kind="stable")
    vp, vu, vt = vp[order], vu[order], vt[order]

    r = rng.random(n_votes)
    newer = np.where(r < 0.5, 0, np.where(r < 0.8, 1, np.where(r < 0.92, 2, 3)))  # newer, older, tie, both bad
    gold_v = h_gold[vp]
    newer = np.where(gold_v, np.where(rng.random(n_votes) < 0.85, 0, rng.integers(1, 4, n_votes)), newer)
    newer_is_a = ~flip[vp]
    choice = np.where(newer == 0, np.where(newer_is_a, 0, 1),
                      np.where(newer == 1, np.where(newer_is_a, 1, 0), newer))  # 0 a, 1 b, 2 tie, 3 both_bad
    rs = rng.random(n_votes)
    strength = np.where(choice < 2, np.where(rs < 0.45, 1, np.where(rs < 0.85, 2, 0)), 0)  # 0 none, 1, 2
    shown = rng.integers(0, 2, n_votes)
    secs = np.round(rng.lognormal(3.2, 0.6, n_votes), 1)
    secs_known = rng.random(n_votes) >= 0.02
    comment = np.where(rng.random(n_votes) < 0.03, rng.integers(1, len(COMMENTS), n_votes), 0)
    rewrite = rng.random(n_votes) < 0.005
    n_tags = np.where(rng.random(n_votes) < 0.25, 1, 0) + np.where(rng.random(n_votes) < 0.05, 1, 0)
    sides, choices, strengths = ("a", "b"), ("a", "b", "tie", "both_bad"), (None, "slight", "clear")

    examples, seen_examples = [], set()
    for n in np.flatnonzero(rewrite).tolist():
        g = int(hg[vp[n]])
        rid, code = regions[g // per_region]
        body = corpus[code][(n * 13) % len(corpus[code])]["completion"]
        h = content_hash(prompt_hash[g], body)
        if (rid, h) not in seen_examples:
            seen_examples.add((rid, h))
            examples.append((len(examples) + 1, g + 1, rid, body, "rewrite", n + 1, h, _dt(vt[n] + 1)))

    def votes() -> Iterator[tuple]:
        for lo in range(0, n_votes, CHUNK):
            sl = slice(lo, lo + CHUNK)
            cols = [x.tolist() for x in (h_pair_id[vp[sl]], vu[sl], region_ids[h_region[vp[sl]]], choice[sl],
                                         strength[sl], comment[sl], rewrite[sl], shown[sl], secs[sl],
                                         secs_known[sl], vt[sl], hg[vp[sl]])]
            for n, (pid, uid, rid, ch, st, com, rw, sh, sec, known, ts, g) in enumerate(zip(*cols, strict=True)):
                body = None
                if rw:
                    ex = corpus[regions[g // per_region][1]]
                    body = ex[((lo + n) * 13) % len(ex)]["completion"]
                yield (lo + n + 1, pid, uid, rid, choices[ch], strengths[st], COMMENTS[com], body,
                       (sides[ch] if ch < 2 else sides[sh]) if rw else None, sides[sh], sec if known else None,
                       "review", _dt(ts))

    def vote_tags() -> Iterator[tuple]:
        picks = rng.integers(0, len(tag_ids), (n_votes, 2))
        for n in np.flatnonzero(n_tags).tolist():
            first = tag_ids[picks[n, 0]]
            yield (n + 1, first)
            second = tag_ids[picks[n, 1]]
            if n_tags[n] == 2 and second != first:
                yield (n + 1, second)

    # assignments: one per vote (shown just before it), plus the skipped ones; ids follow creation time
    sp, su = np.concatenate(skip_pair), np.concatenate(skip_user)
    a_pair = np.concatenate([h_pair_id[vp], h_pair_id[sp]])
    a_user = np.concatenate([vu, su])
    a_time = np.concatenate([vt - np.where(secs_known, secs, 30.0), h_created[sp] + rng.exponential(3 * DAY, len(sp))])
    a_time = np.minimum(a_time, t_now - 60)
    a_shown = np.concatenate([shown, rng.integers(0, 2, len(sp))])
    a_skipped = np.concatenate([np.zeros(n_votes, dtype=bool), np.ones(len(sp), dtype=bool)])
    a_order = np.argsort(a_time, kind="stable")
    n_assign = len(a_order)

    def assignments() -> Iterator[tuple]:
        for lo in range(0, n_assign, CHUNK):
            o = a_order[lo:lo + CHUNK]
            cols = [x.tolist() for x in (a_pair[o], a_user[o], a_shown[o], a_skipped[o], a_time[o])]
            for n, (pid, uid, sh, skipped, ts) in enumerate(zip(*cols, strict=True)):
                yield (lo + n + 1, pid, uid, sides[sh], skipped, not skipped, _dt(ts))

    n_vote_tags = int(n_tags.sum())  # an estimate for the progress bar (a repeated second tag is dropped)
    tables = [
        TableRows("users", ("id", "username", "password_hash", "is_active", "is_system", "failed_logins",
                            "locked_until", "created_at"), users, len(users)),
        TableRows("user_roles", ("user_id", "role"), roles, len(roles)),
        TableRows("user_regions", ("user_id", "region_id"), memberships, len(memberships)),
        TableRows("rounds", ("id", "number", "region_id", "status", "config", "completed_stages", "metrics",
                             "error", "created_at", "started_at", "finished_at"), rounds, len(rounds)),
        TableRows("model_versions", ("id", "name", "base_model", "adapter_path", "parent_id", "round_id",
                                     "region_id", "status", "stage", "metrics", "lineage", "created_at"),
                  versions, len(versions)),
        TableRows("prompts", ("id", "region_id", "task_type", "text", "month", "split", "source", "content_hash",
                              "created_at"), prompts, len(prompts)),
        TableRows("generations", ("id", "prompt_id", "model_version_id", "text", "params", "seed", "content_hash",
                                  "created_at"), generations(), n_gens),
        TableRows("pairs", ("id", "prompt_id", "region_id", "generation_a_id", "generation_b_id", "model_a_id",
                            "model_b_id", "round_id", "is_gold", "gold_choice", "reviews_wanted", "assigned",
                            "created_at"), pairs(),
                  n_hist + n_fresh),
        TableRows("assignments", ("id", "pair_id", "user_id", "shown_left", "skipped", "voted", "created_at"),
                  assignments(), n_assign),
        TableRows("votes", ("id", "pair_id", "user_id", "region_id", "choice", "strength", "comment", "rewrite",
                            "rewrite_of", "shown_left", "seconds_taken", "source", "created_at"), votes(), n_votes),
        TableRows("vote_tags", ("vote_id", "tag_id"), vote_tags(), n_vote_tags),
        TableRows("examples", ("id", "prompt_id", "region_id", "text", "source", "vote_id", "content_hash",
                               "created_at"), examples, len(examples)),
    ]
    summary = {"regions": n_regions, "prompts": n_prompts, "versions": len(versions), "generations": n_gens,
               "historic_pairs": n_hist, "historic_still_open": int(((k < wanted) & ~h_gold).sum()),
               "gold_pairs": int(h_gold.sum()), "fresh_pairs": n_fresh, "users": len(users), "votes": n_votes,
               "assignments": n_assign}
    return tables, summary


# ------------------------------------------------------------------------------------------------------------ fill


def _present_columns(engine: Engine, table: TableRows) -> list[int]:
    """Positions of the planned columns that the migrated table has (a model-only column is left out)."""
    have = {c["name"] for c in inspect(engine).get_columns(table.name)}
    missing = [c for c in table.columns if c not in have]
    if missing:
        print(f"  note: {table.name} has no column {', '.join(missing)} in this schema; left out")
    return [i for i, c in enumerate(table.columns) if c in have]


def _chunks(rows: Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _bar(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit=" rows", unit_scale=True, leave=False, mininterval=1, disable=None)


def write_postgres(engine: Engine, tables: list[TableRows]) -> dict[str, float]:
    """COPY every table over one raw psycopg connection, in one transaction, with the secondary indexes and foreign
    keys dropped and rebuilt afterwards from their own definitions (as pg_restore does); then move the id sequences
    on. Primary keys and unique constraints stay throughout."""
    from psycopg.types.json import Json

    keep = {t.name: _present_columns(engine, t) for t in tables}
    json_cols = {t.name: {i for i in keep[t.name]
                          if isinstance(Base.metadata.tables[t.name].c[t.columns[i]].type, JSON)} for t in tables}
    timings: dict[str, float] = {}
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        with conn.cursor() as cur:
            cur.execute("SET maintenance_work_mem = '256MB'")
            cur.execute("SELECT indexname, indexdef FROM pg_indexes i WHERE schemaname = current_schema() "
                        "AND tablename = ANY(%s) AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
                        "WHERE c.conname = i.indexname)", ([t.name for t in tables],))
            indexes = cur.fetchall()
            cur.execute("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                        "WHERE contype = 'f' AND conrelid::regclass::text = ANY(%s)", ([t.name for t in tables],))
            foreign_keys = cur.fetchall()  # re-added afterwards: one set-based check each instead of one per row
            for table, name, _ in foreign_keys:
                cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            for name, _ in indexes:
                cur.execute(f'DROP INDEX "{name}"')
            for t in tables:
                t0 = time.perf_counter()
                cols, js = keep[t.name], json_cols[t.name]
                names = ", ".join(t.columns[i] for i in cols)
                with _bar(t.count, f"COPY {t.name}") as bar, \
                        cur.copy(f"COPY {t.name} ({names}) FROM STDIN") as copy:
                    for chunk in _chunks(t.rows, CHUNK):
                        for row in chunk:
                            copy.write_row([Json(row[i]) if i in js else row[i] for i in cols]
                                           if js or len(cols) != len(t.columns) else row)
                        bar.update(len(chunk))
                timings[t.name] = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _, definition in indexes:
                cur.execute(definition)
            timings["indexes"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            for table, name, definition in foreign_keys:
                cur.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
            timings["foreign keys"] = time.perf_counter() - t0
            for t in tables:
                if "id" in t.columns:
                    cur.execute(f"SELECT setval(pg_get_serial_sequence('{t.name}', 'id'), "
                                f"(SELECT coalesce(max(id), 0) + 1 FROM {t.name}), false)")
        t0 = time.perf_counter()
        conn.commit()
        timings["commit"] = time.perf_counter() - t0
    finally:
        raw.close()
    t0 = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))  # what autovacuum would have done to a database that grew over weeks
    timings["vacuum analyze"] = time.perf_counter() - t0
    return timings


def write_sqlite(engine: Engine, tables: list[TableRows]) -> dict[str, float]:
    """Core executemany inserts of CHUNK rows, all in one transaction, with the secondary indexes dropped and
    rebuilt afterwards from their own definitions; then ANALYZE."""
    keep = {t.name: _present_columns(engine, t) for t in tables}
    timings: dict[str, float] = {}
    with engine.begin() as conn:
        indexes = conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN "
            f"({', '.join(repr(t.name) for t in tables)})").all()
        for name, _ in indexes:
            conn.exec_driver_sql(f'DROP INDEX "{name}"')
        for t in tables:
            t0 = time.perf_counter()
            table, cols = Base.metadata.tables[t.name], keep[t.name]
            names = [t.columns[i] for i in cols]
            with _bar(t.count, f"insert {t.name}") as bar:
                for chunk in _chunks(t.rows, CHUNK):
                    conn.execute(insert(table), [{n: row[i] for n, i in zip(names, cols, strict=True)}
                                                 for row in chunk])
                    bar.update(len(chunk))
            timings[t.name] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _, definition in indexes:
            conn.exec_driver_sql(definition)
        timings["indexes"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    timings["analyze"] = time.perf_counter() - t0
    return timings


def fill(engine: Engine, shape: Shape) -> dict[str, int]:
    """Migrate ``engine``'s empty database and fill it; the last row written is the MARKER audit event."""
    migrate.upgrade(engine)
    with db_session.session_scope(engine) as s:
        ensure_default_tags(s)
        for folder in sorted(p for p in DEMO_DATA.iterdir() if (p / "region.json").exists()):
            import_regions(s, folder / "region.json")
    with engine.connect() as conn:
        regions = [tuple(r) for r in conn.execute(select(Region.id, Region.code).order_by(Region.code))]
        tag_ids = list(conn.scalars(select(Tag.id).order_by(Tag.id)))
    t0 = time.perf_counter()
    tables, summary = plan_fill(shape, regions, tag_ids, load_corpus(), datetime.now(timezone.utc))
    print(f"  planned {summary['votes']:,} votes in {time.perf_counter() - t0:.1f} s")
    timings = (write_postgres if engine.dialect.name == "postgresql" else write_sqlite)(engine, tables)
    print("  written: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()
                                     if seconds >= 0.05))
    with db_session.session_scope(engine) as s:
        marks = {"votes": s.scalar(select(func.max(Vote.id))) or 0,
                 "assignments": s.scalar(select(func.max(Assignment.id))) or 0,
                 "examples": s.scalar(select(func.max(Example.id))) or 0,
                 "pairs": s.scalar(select(func.max(Pair.id))) or 0}
        s.add(AuditEvent(action=MARKER, entity="bench", details={"shape": shape.as_dict(), "format": FILL_FORMAT,
                                                                 "max_ids": marks,
                                                                 "summary": summary}))
    return summary


def read_marker(engine: Engine) -> AuditEvent | None:
    """The fill's description, if this database holds a finished fill."""
    try:
        with db_session.session_scope(engine) as s:
            return s.scalar(select(AuditEvent).where(AuditEvent.action == MARKER).order_by(AuditEvent.id.desc()))
    except Exception:  # an empty or foreign database: not reusable
        return None


def reset_live_rows(engine: Engine, marker: AuditEvent) -> int:
    """Undo what earlier live runs wrote (rows above the fill's ids; the claim counters of the pairs they claimed),
    so every run starts from the fill. Returns how many votes were removed."""
    m = marker.details["max_ids"]
    claimed = select(Assignment.pair_id).where(Assignment.id > m["assignments"])
    fill_claims = (select(func.count()).where(Assignment.pair_id == Pair.id, Assignment.id <= m["assignments"],
                                              Assignment.skipped.is_(False)).scalar_subquery())
    with engine.begin() as conn:
        conn.execute(delete(Example).where(Example.id > m["examples"]))
        n = conn.execute(delete(Vote).where(Vote.id > m["votes"])).rowcount
        if "assigned" in {c["name"] for c in inspect(conn).get_columns("pairs")}:
            conn.execute(update(Pair).where(Pair.id.in_(claimed)).values(assigned=fill_claims)
                         .execution_options(synchronize_session=False))
        conn.execute(delete(Assignment).where(Assignment.id > m["assignments"]))
        conn.execute(delete(Pair).where(Pair.id > m["pairs"]))  # made on demand by the scheduler
        conn.execute(delete(AuditEvent).where(AuditEvent.id > marker.id))
        for table in ("rollup_comparisons", "rollup_reviewers", "rollup_seconds", "rollup_tags", "rollup_state"):
            conn.execute(text(f"DELETE FROM {table}"))  # the dashboard's totals start again from the fill
    return n


# ----------------------------------------------------------------------------------------------------- live phase


@dataclass(frozen=True)
class LiveConfig:
    """How the reviewers behave (picklable: it travels to --processes children)."""

    seconds: float
    warmup: float = 0.0  # loops in the first ``warmup`` seconds run but are not timed (a server that has been up)
    think_s: float = 0.0
    page: bool = False
    seed: int = 0
    project_pool: bool = False
    sql_stats: bool = False


@dataclass
class ReviewerLog:
    """What simulated reviewers saw: timings in ms, vote ids they were told were written, errors, SQL times."""

    timings: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in TIMED})
    written: list[int] = field(default_factory=list)
    uncertain: list[int] = field(default_factory=list)  # flushed, then the commit raised: may or may not exist
    errors: Counter = field(default_factory=Counter)
    double_clicks: int = 0
    double_click_wrong: int = 0  # the second submit was not answered "duplicate of the first vote"
    races: int = 0  # racing double-clicks: two submits of one assignment at once
    race_wrong: int = 0  # not exactly one written, or the two answers named different votes
    fresh_duplicate: int = 0  # a newly served assignment answered "duplicate"
    empty: int = 0
    untimed: int = 0  # loops in the warm-up
    cpu: list[tuple[float, float]] = field(default_factory=list)  # per process: (CPU seconds, wall seconds)
    sql: dict[str, list[float]] = field(default_factory=dict)  # statement → [count, total s, max s]

    def merge(self, other: ReviewerLog) -> None:
        for k in TIMED:
            self.timings[k] += other.timings[k]
        self.written += other.written
        self.uncertain += other.uncertain
        self.errors.update(other.errors)
        self.double_clicks += other.double_clicks
        self.double_click_wrong += other.double_click_wrong
        self.races += other.races
        self.race_wrong += other.race_wrong
        self.fresh_duplicate += other.fresh_duplicate
        self.empty += other.empty
        self.untimed += other.untimed
        self.cpu += other.cpu
        for stmt, (n, total, worst) in other.sql.items():
            mine = self.sql.setdefault(stmt, [0, 0.0, 0.0])
            mine[0], mine[1], mine[2] = mine[0] + n, mine[1] + total, max(mine[2], worst)


def live_engine(url: str, connections: int, project_pool: bool) -> Engine:
    """An engine like db.session.make_engine's, with one pooled connection per reviewer thread.

    make_engine's pool (10 + 20 overflow on PostgreSQL, SQLAlchemy's 5 + 10 on SQLite) is smaller than 32
    reviewers; ``project_pool`` keeps it to measure exactly what the app would do.
    """
    if project_pool:
        return db_session.make_engine(url)
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False}, pool_size=connections,
                               max_overflow=4)
        event.listen(engine, "connect", db_session._sqlite_pragmas)  # the app's WAL / busy_timeout pragmas
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=connections, max_overflow=4)


def record_sql(engine: Engine, sql: dict[str, list[float]]) -> None:
    """Time every statement ``engine`` runs into ``sql`` (statement text, whitespace folded → count, total, max)."""
    lock = threading.Lock()

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany) -> None:
        elapsed = time.perf_counter() - conn.info.pop("bench_t0", time.perf_counter())
        key = " ".join(statement.split())
        with lock:
            row = sql.setdefault(key, [0, 0.0, 0.0])
            row[0], row[1], row[2] = row[0] + 1, row[1] + elapsed, max(row[2], elapsed)


def _error_key(exc: BaseException) -> str:
    msg = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    return f"{type(exc).__name__}: {msg[:90]}"


def race(factory: sessionmaker, user: CurrentUser, assignment_id: int, choice: str, log: ReviewerLog) -> None:
    """Two requests submit the same assignment at the same moment: exactly one may write, both must name its id."""
    barrier = threading.Barrier(2)
    out: list = [None, None]

    def submit(i: int) -> None:
        try:
            with factory() as s:
                barrier.wait(timeout=30)
                out[i] = submit_vote(s, user, assignment_id, choice)
                s.commit()
        except Exception as exc:
            out[i] = exc

    other = threading.Thread(target=submit, args=(1,))
    other.start()
    submit(0)
    other.join()
    log.races += 1
    results = [r for r in out if not isinstance(r, Exception)]
    for r in out:
        if isinstance(r, Exception):
            log.errors[f"racing double-click {_error_key(r)}"] += 1
    log.written += [r.vote_id for r in results if not r.duplicate]
    if sum(not r.duplicate for r in results) != 1 or len({r.vote_id for r in results}) != 1:
        log.race_wrong += 1


def reviewer_loop(factory: sessionmaker, user: CurrentUser, start: threading.Event, cfg: LiveConfig,
                  log: ReviewerLog) -> None:
    """One reviewer: next pair (a transaction), vote (another), every DOUBLE_CLICK_EVERY-th loop a double-click."""
    rng = random.Random(cfg.seed + user.id)
    with factory() as s:  # a warm pool, as in a running app
        s.execute(text("SELECT 1"))
    start.wait()
    timed_from = time.perf_counter() + cfg.warmup
    deadline = timed_from + cfg.seconds
    n = 0
    while (t0 := time.perf_counter()) < deadline:
        n += 1
        choice = rng.choices(("left", "right", "tie", "both_bad"), (45, 35, 12, 8))[0]
        strength = rng.choice(("slight", "clear", None)) if choice in ("left", "right") else None
        tags = rng.sample(("local_idiom", "place_name", "seasonal", "tone_off"), rng.choice((0, 0, 0, 1, 2)))
        pending = None
        try:
            with factory() as s:
                item = next_item(s, user)
                tp = time.perf_counter()
                if cfg.page:  # the rest of what the review page reads on each render
                    progress(s, user)
                    last_undoable(s, user)
                tp = time.perf_counter() - tp
                s.commit()
            t1 = time.perf_counter()
            if item is None:
                log.empty += 1
                break
            if n % DOUBLE_CLICK_EVERY == DOUBLE_CLICK_EVERY // 2:  # a racing double-click: not a timed loop
                race(factory, user, item.assignment_id, choice, log)
                continue
            with factory() as s:
                result = submit_vote(s, user, item.assignment_id, choice, strength, tags,
                                     seconds=round(rng.lognormvariate(3.2, 0.6), 1))
                pending = result.vote_id
                s.commit()
            t2 = time.perf_counter()
        except Exception as exc:  # counted, never retried: a reviewer would see an error page
            log.errors[_error_key(exc)] += 1
            if pending is not None:
                log.uncertain.append(pending)
            continue
        if result.duplicate:
            log.fresh_duplicate += 1
        else:
            log.written.append(result.vote_id)
        if t0 >= timed_from:
            log.timings["loop"].append((t2 - t0) * 1000)
            log.timings["next"].append((t1 - t0) * 1000)
            log.timings["submit"].append((t2 - t1) * 1000)
            if cfg.page:
                log.timings["page"].append(tp * 1000)
        else:
            log.untimed += 1
        if n % DOUBLE_CLICK_EVERY == 0:
            log.double_clicks += 1
            try:
                with factory() as s:
                    again = submit_vote(s, user, item.assignment_id, "tie")
                    s.commit()
                if not again.duplicate or again.vote_id != result.vote_id:
                    log.double_click_wrong += 1
                    if not again.duplicate:
                        log.written.append(again.vote_id)
            except Exception as exc:
                log.errors[f"double-click {_error_key(exc)}"] += 1
        if cfg.think_s:  # random (exponential) pauses: reviewers do not move in lockstep
            time.sleep(rng.expovariate(1 / cfg.think_s))


def run_reviewers(url: str, users: list[CurrentUser], cfg: LiveConfig, go: Callable[[], None]) -> ReviewerLog:
    """Threads for ``users`` in this process; ``go`` blocks until every process is ready to start."""
    engine = live_engine(url, len(users), cfg.project_pool)
    total = ReviewerLog()
    if cfg.sql_stats:
        record_sql(engine, total.sql)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    start = threading.Event()
    logs = [ReviewerLog() for _ in users]
    threads = [threading.Thread(target=reviewer_loop, args=(factory, u, start, cfg, log), daemon=True)
               for u, log in zip(users, logs, strict=True)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # let every thread check out its first connection
    go()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    start.set()
    for t in threads:
        t.join()
    total.cpu.append((time.process_time() - cpu0, time.perf_counter() - wall0))
    engine.dispose()
    for log in logs:
        total.merge(log)
    return total


def _process_main(url: str, users: list[CurrentUser], cfg: LiveConfig, ready, go_event, results) -> None:
    def go() -> None:
        ready.put(os.getpid())
        go_event.wait()

    results.put(run_reviewers(url, users, cfg, go))


def live_users(engine: Engine, n: int, seed: int) -> list[CurrentUser]:
    """``n`` distinct reviewers of the fill, as the app holds them after login."""
    expires = datetime.now(timezone.utc) + timedelta(days=1)
    with db_session.session_scope(engine) as s:
        ids = sorted(s.scalars(select(UserRole.user_id).where(UserRole.role == "reviewer")))
        if len(ids) < n:
            raise SystemExit(f"--reviewers {n}: the fill has only {len(ids)} reviewers (raise --users)")
        chosen = random.Random(seed).sample(ids, n)
        users = []
        for uid in chosen:
            user = s.get(User, uid)
            regions = sorted(user.regions, key=lambda r: r.code)
            users.append(CurrentUser(id=uid, username=user.username, roles=frozenset({"reviewer"}),
                                     regions=tuple(r.code for r in regions), region_ids=tuple(r.id for r in regions),
                                     expires_at=expires))
    return users


def run_live(url: str, users: list[CurrentUser], cfg: LiveConfig, processes: int) -> tuple[ReviewerLog, float]:
    """All reviewers, in this process or split over ``processes``; returns the merged log and the timed seconds
    (from the end of the warm-up until the last loop finished)."""
    if processes <= 1:
        box = {}
        log = run_reviewers(url, users, cfg, lambda: box.setdefault("t0", time.perf_counter()))
        return log, time.perf_counter() - box["t0"] - cfg.warmup
    ctx = mp.get_context("spawn")
    ready, results, go_event = ctx.Queue(), ctx.Queue(), ctx.Event()
    groups = [users[i::processes] for i in range(processes)]
    procs = [ctx.Process(target=_process_main, args=(url, g, cfg, ready, go_event, results)) for g in groups]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=300)
    t0 = time.perf_counter()
    go_event.set()
    total = ReviewerLog()
    for _ in procs:
        total.merge(results.get(timeout=cfg.warmup + cfg.seconds + 600))
    wall = time.perf_counter() - t0 - cfg.warmup
    for p in procs:
        p.join()
    return total, wall


def account(engine: Engine, marker: AuditEvent, log: ReviewerLog, users: list[CurrentUser]) -> dict[str, int]:
    """Compare the votes table with what the reviewers were told."""
    first_new = marker.details["max_ids"]["votes"]
    live_ids = {u.id for u in users}
    with engine.connect() as conn:
        rows = conn.execute(select(Vote.id, Vote.user_id).where(Vote.id > first_new)).all()
        twice = conn.scalar(select(func.count()).select_from(
            select(Vote.pair_id, Vote.user_id).group_by(Vote.pair_id, Vote.user_id)
            .having(func.count() > 1).subquery()))
    in_db = {vid for vid, _ in rows}
    told = set(log.written)
    unrecorded = in_db - told - set(log.uncertain)
    return {"lost": len(told - in_db), "duplicates": twice + len(unrecorded), "pair_user_twice": twice,
            "unrecorded": len(unrecorded), "uncertain_present": len(set(log.uncertain) & in_db),
            "not_live_user": sum(1 for _, uid in rows if uid not in live_ids), "new_votes": len(in_db)}


# ------------------------------------------------------------------------------------------------------ dashboard


def time_dashboard(engine: Engine) -> dict[str, float]:
    """Seconds per part of the leads' dashboard (``rewards.dashboard.load_dashboard``: folding new votes into the
    running totals, the grouped reads, win-rates, Bradley–Terry with 200 bootstrap resamples, agreement and
    reviewer quality). The first load after a bulk fill builds the running totals from every vote, once; it is
    printed apart, and the figures returned (their sum is the dashboard's time) are those of the next load, which
    is what a lead waits for from then on."""
    from cli.common import cli_actor
    from rewards.dashboard import load_dashboard

    for attempt in ("first", "next"):
        with db_session.session_scope(engine) as session:  # committed: the totals it folds in are kept
            started = time.perf_counter()
            timings = load_dashboard(session, cli_actor(session)).timings
        if attempt == "first":
            print(f"  dashboard, first load after the fill (builds the running totals once): "
                  f"{time.perf_counter() - started:.1f} s")
    return {k: v for k, v in timings.items() if k != "total"}


# ----------------------------------------------------------------------------------------------------------- main


def _pct(values: list[float]) -> tuple[float, float, float, float]:
    if not values:
        return (float("nan"),) * 4
    a = np.asarray(values)
    return tuple(float(x) for x in (*np.percentile(a, [50, 95, 99]), a.max()))


def prepare(backend: str, args: argparse.Namespace, shape: Shape, tmp: Path) -> tuple[str, float | None, Callable]:
    """The bench database's URL (filled), the fill time (None when reused) and a function that cleans up."""
    if backend == "postgres":
        admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
        # a throwaway run never touches the kept database of that name
        name = args.pg_database if args.keep or args.reuse else f"{args.pg_database}_tmp{os.getpid()}"
        if admin.url.database == name:
            raise SystemExit(f"--pg-database {name} is the admin database; pick another name")
        url = admin.url.set(database=name).render_as_string(hide_password=False)

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

        def create() -> None:
            drop()
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))

        with admin.connect() as conn:
            exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
    else:
        path = (Settings.from_env().home / "bench" / "review_load.db" if args.keep or args.reuse
                else tmp / "review_load.db")
        url = f"sqlite:///{path}"
        exists = path.exists()

        def drop() -> None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

        def create() -> None:
            drop()
            path.parent.mkdir(parents=True, exist_ok=True)

    if args.reuse and exists:
        engine = db_session.make_engine(url)
        marker = read_marker(engine)
        if (marker is not None and marker.details.get("shape") == shape.as_dict()
                and marker.details.get("format") == FILL_FORMAT):
            removed = reset_live_rows(engine, marker)
            engine.dispose()
            print(f"  reusing the filled database ({removed:,} votes of earlier live runs removed)")
            return url, None, (lambda: None)
        engine.dispose()
        print("  the kept database does not match this shape: filling again")
    create()
    cleanup = (lambda: None) if args.keep or args.reuse else drop
    t0 = time.perf_counter()
    engine = db_session.make_engine(url)
    try:
        fill(engine, shape)
    except BaseException:
        engine.dispose()
        cleanup()
        raise
    engine.dispose()
    return url, time.perf_counter() - t0, cleanup


def bench_backend(backend: str, args: argparse.Namespace, shape: Shape, tmp: Path) -> dict:
    """Fill (or reuse), time the dashboard hook, run the reviewers, account; prints as it goes."""
    print(f"\n== {backend} ==")
    url, fill_s, cleanup = prepare(backend, args, shape, tmp)
    engine = db_session.make_engine(url)
    try:
        marker = read_marker(engine)
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                version = conn.scalar(text("SHOW server_version"))
                size = conn.scalar(text("SELECT pg_database_size(current_database())")) / 2**20
            where = f"PostgreSQL {version}, database {engine.url.database}, {size:,.0f} MiB"
        else:
            path = Path(engine.url.database)
            where = f"SQLite {engine.dialect.dbapi.sqlite_version}, {path} ({path.stat().st_size / 2**20:,.0f} MiB)"
        summary = marker.details["summary"]
        print(f"  {where}")
        print("  " + ", ".join(f"{v:,} {k}" for k, v in summary.items()))
        if fill_s is not None:
            print(f"  fill {fill_s:.1f} s ({summary['votes'] / fill_s:,.0f} votes/s with everything around them)")
        dashboard = time_dashboard(engine)
        for label, seconds in dashboard.items():
            print(f"  dashboard: {label}: {seconds * 1000:,.0f} ms")
        users = live_users(engine, args.reviewers, args.seed)
        cfg = LiveConfig(seconds=args.seconds, warmup=args.warmup, think_s=args.think_ms / 1000, page=args.page,
                         seed=args.seed, project_pool=args.project_pool, sql_stats=args.sql_stats)
        per = f"{args.processes} processes" if args.processes > 1 else "1 process"
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"  live: {args.reviewers} reviewers ({per}), think {args.think_ms:g} ms, {args.seconds:g} s timed"
              + (f" after {args.warmup:g} s warm-up" if args.warmup else "")
              + (", with the page's progress/undo reads" if args.page else "")
              + f"; load average before: {load} on {os.cpu_count()} CPUs")
        log, wall = run_live(url, users, cfg, args.processes)
        acc = account(engine, marker, log, users)
    finally:
        engine.dispose()
        cleanup()
    loops = len(log.timings["loop"])
    result = {"backend": backend, "fill_s": fill_s, "loops": loops, "loops_per_s": loops / wall if wall else 0.0,
              "pct": {k: _pct(v) for k, v in log.timings.items()}, "errors": sum(log.errors.values()),
              "dashboard": dashboard, **acc, "log": log}
    report(result)
    return result


def _short_sql(statement: str, width: int = 220) -> str:
    """The statement with a long select list elided, so what tells statements apart (FROM, WHERE) shows."""
    head, sep, rest = statement.partition(" FROM ")
    if sep and head.startswith(("SELECT ", "SELECT DISTINCT ")) and len(head) > 60:
        statement = f"{head[:40]} … FROM {rest}"
    statement = statement.replace("::INTEGER", "")
    return statement if len(statement) <= width else statement[:width - 1] + "…"


def report(r: dict) -> None:
    log = r["log"]
    p50, p95, p99, mx = r["pct"]["loop"]
    print(f"  loops {r['loops']:,} ({r['loops_per_s']:,.1f} loops/s)")
    print(f"  {'ms per':10} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}")
    for key, label in (("loop", "loop"), ("next", " next_item"), ("page", "  page"), ("submit", " submit")):
        q = r["pct"][key]
        if key == "page" and not log.timings["page"]:
            continue
        print(f"  {label:10} {q[0]:8.1f} {q[1]:8.1f} {q[2]:8.1f} {q[3]:8.1f}")
    verdict = "ok" if p95 <= 20 else "over"
    print(f"  p95 {p95:.1f} ms: {verdict} (target ≤ 20 ms)")
    print(f"  lost {r['lost']}, duplicates {r['duplicates']} (pair+reviewer twice {r['pair_user_twice']}, "
          f"unacknowledged {r['unrecorded']}), errors {r['errors']}")
    print(f"  double-clicks {log.double_clicks} (answered wrongly {log.double_click_wrong}), racing double-clicks "
          f"{log.races} (wrong {log.race_wrong}); fresh pairs answered "
          f"duplicate {log.fresh_duplicate}; reviewers who ran out of pairs {log.empty}; "
          f"new votes in the table {r['new_votes']:,}")
    busy = [c / w for c, w in log.cpu if w]
    print(f"  client CPU: {sum(busy):.2f} cores busy ({', '.join(f'{b:.2f}' for b in busy)} per process; "
          "a process near 1.00 is bound by its GIL)")
    if log.uncertain:
        print(f"  commits that raised after the vote was flushed: {len(log.uncertain)} "
              f"({r['uncertain_present']} of them are in the table)")
    for msg, n in log.errors.most_common(5):
        print(f"  error ×{n}: {msg}")
    if log.sql:
        print("  SQL by total time (all loops, warm-up included):")
        print(f"  {'total s':>8} {'count':>6} {'mean ms':>8} {'max ms':>8}  statement")
        for stmt, (n, total, worst) in sorted(log.sql.items(), key=lambda kv: -kv[1][1])[:10]:
            print(f"  {total:8.2f} {n:6} {total / n * 1000:8.1f} {worst * 1000:8.1f}  {_short_sql(stmt)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument("--votes", type=int, default=1_000_000, help="historic votes in the fill (default 1M)")
    parser.add_argument("--prompts-per-region", type=int,
                        help="default: enough for ~1.2 votes per historic pair (1,984 at 1M votes; at least 10)")
    parser.add_argument("--fresh-pairs", type=int, help="unvoted pairs for the live phase (default: votes / 5, "
                                                        "at least 2,000)")
    parser.add_argument("--users", type=int, default=200, help="reviewers in the fill (default 200)")
    parser.add_argument("--reviewers", type=int, default=32, help="concurrent simulated reviewers (default 32)")
    parser.add_argument("--seconds", type=float, default=30, help="length of the live phase (default 30)")
    parser.add_argument("--think-ms", type=float, default=0,
                        help="mean of the random (exponential) pause between a reviewer's loops "
                             "(default 0: as fast as the server answers)")
    parser.add_argument("--processes", type=int, default=1,
                        help="split the reviewers over this many processes (threads share one GIL per process)")
    parser.add_argument("--warmup", type=float, default=0,
                        help="seconds of loops before timing starts (default 0: the first requests of a fresh "
                             "process, cold caches included, are timed)")
    parser.add_argument("--sql-stats", action="store_true",
                        help="time every SQL statement of the live phase and print the ten that took longest")
    parser.add_argument("--page", action="store_true",
                        help="also run the review page's per-render reads (progress, last_undoable) with next_item")
    parser.add_argument("--project-pool", action="store_true",
                        help="use db.session.make_engine's pool as is (fewer connections than 32 reviewers)")
    parser.add_argument("--keep", action="store_true", help="keep the filled database (PostgreSQL: --pg-database; "
                                                            "SQLite: $GEOALIGN_HOME/bench/review_load.db)")
    parser.add_argument("--reuse", action="store_true",
                        help="skip the fill when the kept database holds the same shape (implies --keep)")
    parser.add_argument("--pg-url", default=os.environ.get("GEOALIGN_BENCH_PG_URL") or (
        os.environ["DATABASE_URL"] if os.environ.get("DATABASE_URL", "").startswith("postgresql") else PG_ADMIN_URL),
        help="a PostgreSQL URL used only to create/drop the bench database (default: GEOALIGN_BENCH_PG_URL, "
             f"a PostgreSQL DATABASE_URL, else {PG_ADMIN_URL})")
    parser.add_argument("--pg-database", default="geoalign_bench_load",
                        help="the kept bench database's name (a run without --keep/--reuse uses NAME_tmpPID)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    per_region = args.prompts_per_region or default_prompts_per_region(args.votes)
    shape = Shape(votes=args.votes, prompts_per_region=per_region,
                  fresh_pairs=args.fresh_pairs if args.fresh_pairs is not None else max(2_000, args.votes // 5),
                  users=args.users, seed=args.seed)
    backends = ("postgres", "sqlite") if args.backend == "both" else (args.backend,)
    tmp = Path(tempfile.mkdtemp(prefix="geoalign-bench-load-"))
    try:
        results = [bench_backend(b, args, shape, tmp) for b in backends]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{'backend':9} {'fill s':>7} {'loops':>7} {'loops/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
          f"{'lost':>5} {'dup':>4} {'errors':>6} {'dash ms':>8}")
    for r in results:
        fill_s = f"{r['fill_s']:.1f}" if r["fill_s"] is not None else "reused"
        dash = sum(r["dashboard"].values()) * 1000
        print(f"{r['backend']:9} {fill_s:>7} {r['loops']:7,} {r['loops_per_s']:8.1f} {r['pct']['loop'][0]:7.1f} "
              f"{r['pct']['loop'][1]:7.1f} {r['pct']['loop'][2]:7.1f} {r['lost']:5} {r['duplicates']:4} "
              f"{r['errors']:6} {dash:8.0f}")
    print(f"({args.reviewers} reviewers, think {args.think_ms:g} ms, {args.seconds:g} s timed, "
          f"{args.processes} process{'es' if args.processes > 1 else ''}; target p95 ≤ 20 ms, lost = dup = 0)")
    return 0 if all(r["lost"] == 0 and r["duplicates"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
