"""Content hashing and the deterministic, stratified 80/10/10 split.

An item's split is decided once, when it is first imported, and stored; later imports only ever add items,
so nothing moves between splits and the test split stays unseen by training.

A brief's split belongs to its content, not to its region: prompts share a split whenever they share a content
hash (task type + normalised brief text), whichever regions they live in. A brief already stored in any region
gives its stored split to every new copy; identical new briefs arriving in several regions at once get one
split between them; every other new brief goes, in content-hash order, to the split furthest below its 80/10/10
target in its stratum (region × task type). Otherwise the same public brief imported into two regions could
train in one and be evaluated in the other, and an all-regions round would be scored on what it trained on.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Collection, Hashable, Iterable, Mapping

SPLIT_SHARES = {"train": 0.8, "val": 0.1, "test": 0.1}
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFC-normalise and collapse whitespace, so trivially different copies hash alike."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()


def content_hash(*parts: str) -> str:
    """SHA-256 hex digest of the normalised parts, joined with a separator no text contains."""
    joined = "\x1f".join(normalize_text(p) for p in parts)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def assign_splits(new_hashes: Iterable[str], existing: Mapping[str, int] | None = None) -> dict[str, str]:
    """Assign splits to new items of one stratum (region × task type), keeping the stratum near 80/10/10.

    Items are taken in content-hash order (so the result does not depend on file order); each goes to the
    split furthest below its target share given the ``existing`` counts and the items assigned so far.
    This is the one-stratum case of :func:`assign_splits_by_content`, which also handles briefs shared by regions.

    Example:
        >>> s = assign_splits([f"{i:02x}" for i in range(10)])
        >>> sorted(s.values()).count("train"), sorted(s.values()).count("test")
        (8, 1)
    """
    return assign_splits_by_content({h: (None,) for h in new_hashes}, {None: existing or {}})


def assign_splits_by_content(
    items: Mapping[str, Collection[Hashable]],
    counts: Mapping[Hashable, Mapping[str, int]] | None = None,
    known: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """One split per content hash, shared by every stratum the hash joins, keeping each stratum near 80/10/10.

    ``items`` maps each content hash to the strata (e.g. ``(region id, task type)``) that a new item with that
    hash joins; ``counts`` gives each stratum's stored items per split; ``known`` gives the split a hash already
    has elsewhere (stored in another region). Steps:

    1. a hash in ``known`` keeps that split, whatever the strata's balance, and counts in each of its strata;
    2. the other hashes, in hash order (so the result does not depend on file order), each take the split with
       the largest total deficit over their strata (deficit = the split's target share of the stratum's new
       total minus what it holds), ties going to the larger share; each then counts in all its strata.

    For hashes that join one stratum each this is exactly the per-stratum rule of :func:`assign_splits`.

    Example:
        >>> items = {"aa": [("leeds", "ad_copy"), ("perth", "ad_copy")], "bb": [("perth", "ad_copy")]}
        >>> got = assign_splits_by_content(items, known={"bb": "test"})
        >>> got["aa"], got["bb"]
        ('train', 'test')
    """
    known = known or {}
    tally: dict[Hashable, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SPLIT_SHARES, 0))
    for stratum, stored in (counts or {}).items():
        tally[stratum].update({name: int(stored.get(name, 0)) for name in SPLIT_SHARES})
    out: dict[str, str] = {}

    def place(h: str, split: str) -> None:
        out[h] = split
        for stratum in set(items[h]):
            tally[stratum][split] += 1

    for h in sorted(h for h in items if h in known):
        place(h, known[h])
    for h in sorted(h for h in items if h not in out):
        strata = [tally[s] for s in set(items[h])]
        # deficit = how many items the split should have at each stratum's new total, minus what it has, summed
        score = {name: (sum(SPLIT_SHARES[name] * (sum(c.values()) + 1) - c[name] for c in strata), share)
                 for name, share in SPLIT_SHARES.items()}
        place(h, max(score, key=score.__getitem__))
    return out
