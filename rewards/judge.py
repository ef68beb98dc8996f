"""An independent judge of local authenticity: does a text sound like this region's own copy, not the others'?

The judge embeds texts with the bundled MiniLM sentence encoder *as published* (mean-pooled, L2-normalised; it is
never trained here) and compares each text with the centroid of every region's reference copy::

    score(text, R) = cos(e(text), c_R) - mean over other regions R' of cos(e(text), c_R')

References are gold examples written by local copywriters for *validation-split* briefs, which no stage trains on
(SFT, DPO and the reward model read them only to validate). So the judge is independent of every training signal:
- not the rule reward (``rewards/rules.py``: local and avoided term lists), which online RL optimises;
- not the reward model, which learns from reviewers' votes alone. It starts from the same pretrained encoder, so
  when the judge casts the votes (``bench/alignment.py``) the reward model can learn its taste quickly: a
  simulated reviewer is a best case for how fast votes turn into a reward, not a stand-in for people.

``agreement`` measures how far the judge can be trusted: how often it prefers a region's held-out (test-split)
gold copy over another region's gold copy for the same task, and over the base model's output for the same brief;
and how often another region's gold copy fools it into ranking it above the base model's output for this region.

    judge = LocalityJudge({"en-GB-manchester": [...], "en-US-austin": [...]})
    judge.score(["Proper mint, our kid"], ["en-GB-manchester"])   # one score per text; higher is more local
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)


class LocalityJudge:
    """Sentence-embedding judge of how much a text sounds like one region rather than the others (see module doc)."""

    name = "locality-judge (MiniLM sentence embeddings vs held-out local gold copy)"

    def __init__(self, references: Mapping[str, Sequence[str]], encoder: str | None = None, batch_size: int = 32,
                 max_length: int = 256):
        # lazy: transformers and torch load when a judge is built, not when a dashboard imports rewards
        from transformers import AutoModel, AutoTokenizer

        from rewards.reward_model import default_backbone

        empty = sorted(code for code, texts in references.items() if not texts)
        if not references or empty:
            raise ValueError(f"the judge needs reference copy for every region; none for {empty or 'any region'}")
        path = encoder or default_backbone()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.batch_size, self.max_length = batch_size, max_length
        self.regions = sorted(references)
        centroids = np.stack([self.embed(references[code]).mean(axis=0) for code in self.regions])
        self.centroids = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)  # (regions, dim)

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised mean-pooled embeddings, shape (len(texts), dim), pooled as sentence-transformers does."""
        out = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            hidden = self.model(**enc).last_hidden_state  # (batch, tokens, dim)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (batch, tokens, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.centroids.shape[1]), dtype=np.float32)

    def score(self, texts: Sequence[str], regions: Sequence[str]) -> list[float]:
        """One locality score per text for its region; higher is more local. Unknown regions are a ValueError."""
        unknown = sorted(set(regions) - set(self.regions))
        if unknown:
            raise ValueError(f"the judge has no reference copy for region(s) {unknown}")
        if not texts:
            return []
        sims = self.embed(texts) @ self.centroids.T  # (texts, regions)
        index = np.array([self.regions.index(r) for r in regions])
        own = sims[np.arange(len(texts)), index]
        others = (sims.sum(axis=1) - own) / max(1, len(self.regions) - 1)
        return (own - others if len(self.regions) > 1 else own).round(5).tolist()


def agreement(judge: LocalityJudge, gold: Sequence[dict], base_outputs: Mapping[int, str] | None = None) -> dict:
    """How often the judge prefers held-out local gold over other regions' gold and over the base model's output,
    and how often other regions' gold beats the base model's output for a region (lower is better).

    ``gold`` rows have ``region``, ``task_type``, ``text`` and ``prompt_id`` (test-split gold, never a reference);
    ``base_outputs`` maps prompt ids to the base model's text for that brief. Returns shares with their counts.
    """
    wins = total = 0
    by_task: dict[str, list[dict]] = {}
    for row in gold:
        by_task.setdefault(row["task_type"], []).append(row)
    own_scores = dict(zip((id(r) for r in gold), judge.score([r["text"] for r in gold], [r["region"] for r in gold]),
                          strict=True))
    for rows in by_task.values():
        for row in rows:
            others = [o for o in rows if o["region"] != row["region"]]
            if not others:
                continue
            # the other regions' copy, judged as if it were written for this region
            foreign = judge.score([o["text"] for o in others], [row["region"]] * len(others))
            wins += sum(own_scores[id(row)] > f for f in foreign)
            total += len(foreign)
    out = {"gold_vs_other_regions": round(wins / total, 4) if total else None, "gold_vs_other_regions_n": total}
    if base_outputs:
        rows = [r for r in gold if r["prompt_id"] in base_outputs]
        base = judge.score([base_outputs[r["prompt_id"]] for r in rows], [r["region"] for r in rows])
        beats = sum(own_scores[id(r)] > b for r, b in zip(rows, base, strict=True))
        out |= {"gold_vs_base": round(beats / len(rows), 4) if rows else None, "gold_vs_base_n": len(rows)}
        # can copy from elsewhere fool it? other regions' gold, judged for this region, against the base's output
        fooled = n = 0
        for row, b in zip(rows, base, strict=True):
            foreign = [o for o in gold if o["region"] != row["region"] and o["task_type"] == row["task_type"]]
            if foreign:
                fooled += sum(f > b for f in judge.score([o["text"] for o in foreign], [row["region"]] * len(foreign)))
                n += len(foreign)
        out |= {"other_regions_gold_vs_base": round(fooled / n, 4) if n else None, "other_regions_gold_vs_base_n": n}
    return out
