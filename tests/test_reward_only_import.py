"""An ML engineer measures a reward model on an imported public preference set: import, reward-only round, show.

The rows mimic Anthropic's HH-RLHF layout (implicit prompt: two transcripts sharing the "Human: … Assistant:" prefix).
"""

from __future__ import annotations

import json

from sqlalchemy import select

from cli.main import main
from db.models import ModelVersion, Round
from db.session import session_scope
from tests.conftest import write_jsonl

TOPICS = ["a chippy in Headingley", "Kirkgate Market", "a Roundhay café", "the Leeds Festival",
          "a Chapel Allerton bar", "a Hyde Park bakery", "the Royal Armouries", "a Kirkstall brewery",
          "Elland Road match day", "Briggate shops"]


def hh_rows(n: int) -> list[dict]:
    """``n`` implicit-prompt pairs; the chosen reply is the helpful one, the rejected a curt refusal."""
    rows = []
    for i in range(n):
        prompt = f"\n\nHuman: Write a two-line ad for {TOPICS[i % len(TOPICS)]} (variant {i}).\n\nAssistant:"
        rows.append({"chosen": prompt + f" Proper Leeds welcome at {TOPICS[i % len(TOPICS)]}: come early, stay late.",
                     "rejected": prompt + " I can't help with that."})
    return rows


def test_a_reward_only_round_on_an_imported_preference_set(loaded, tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEOALIGN_BASE_MODEL", str(tiny_model))
    path = write_jsonl(tmp_path / "hh.jsonl", hh_rows(60))
    assert main(["import", "preferences", str(path), "--region", "en-GB-leeds", "--task-type", "ad_copy"]) == 0
    config = tmp_path / "reward.yaml"
    config.write_text(json.dumps({"reward": {"num_train_epochs": 2}, "round": {"min_preference_pairs": 4}}))
    capsys.readouterr()
    assert main(["round", "start", "--region", "en-GB-leeds", "--stages", "reward", "--config", str(config),
                 "--now"]) == 0
    out = capsys.readouterr().out
    assert "published en-GB-leeds-r1, a new reward model" in out and "validation" in out
    with session_scope(loaded) as s:
        rnd = s.scalar(select(Round))
        version = s.scalar(select(ModelVersion).where(ModelVersion.round_id == rnd.id))
        reward = version.metrics["stages"]["reward"]
        # the imported pairs were split 80/10/10 by content, so validation pairs exist and are measured
        assert reward["train_pairs"] >= 40 and reward["val_pairs"] >= 4 and 0 <= reward["val_accuracy"] <= 1
        assert version.stage == "reward" and version.lineage["reward_only"] is True
    assert main(["round", "show", str(rnd.id)]) == 0
    assert "accuracy   validation" in capsys.readouterr().out
