"""Content hashing and the deterministic, stratified 80/10/10 split.

An item's split is decided once, when it is first imported, and stored; later imports only ever add items,
so nothing moves between splits and the test split stays unseen by training.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping

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

    Example:
        >>> s = assign_splits([f"{i:02x}" for i in range(10)])
        >>> sorted(s.values()).count("train"), sorted(s.values()).count("test")
        (8, 1)
    """
    counts = {name: int((existing or {}).get(name, 0)) for name in SPLIT_SHARES}
    out: dict[str, str] = {}
    for h in sorted(set(new_hashes)):
        total = sum(counts.values()) + 1
        # deficit = how many items this split should have at the new total, minus what it has
        split = max(SPLIT_SHARES, key=lambda name: (SPLIT_SHARES[name] * total - counts[name], SPLIT_SHARES[name]))
        counts[split] += 1
        out[h] = split
    return out
