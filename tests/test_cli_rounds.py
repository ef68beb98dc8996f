"""``geoalign round …`` and ``geoalign votes simulate``: help, empty states, one-line errors, queueing."""

import pytest
from sqlalchemy import func, select

from cli.main import main
from db.models import Job, JobStatus, Round
from db.session import session_scope


@pytest.mark.parametrize("words", [["round", "start"], ["round", "resume"], ["round", "cancel"], ["round", "list"],
                                   ["round", "show"], ["votes", "simulate"]], ids=" ".join)
def test_round_commands_have_help(words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*words, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: geoalign " + " ".join(words))


@pytest.fixture
def migrated(loaded):
    """The CLI's default database (GEOALIGN_HOME's SQLite), migrated, with the mini regions."""
    return loaded


def test_round_queue_list_show_cancel(migrated, tmp_path, capsys):
    assert main(["round", "list"]) == 0
    assert "no rounds yet" in capsys.readouterr().out
    config = tmp_path / "round.yaml"
    config.write_text("sft: {num_train_epochs: 1}\n")
    assert main(["round", "start", "--region", "en-GB-leeds", "--config", str(config), "--stages", "sft,rl"]) == 0
    out = capsys.readouterr().out
    assert "round 1 (en-GB-leeds, #1): stages sft, rl; job 1" in out and "geoalign worker" in out
    with session_scope(migrated) as s:
        rnd = s.get(Round, 1)
        assert rnd.status == JobStatus.queued and rnd.config["sft"] == {"num_train_epochs": 1}
        assert rnd.config["round"]["stages"] == ["sft", "rl"]
    assert main(["round", "list"]) == 0 and "en-GB-leeds" in capsys.readouterr().out
    assert main(["round", "show", "1"]) == 0 and "stages     sft, rl" in capsys.readouterr().out
    assert main(["round", "cancel", "1"]) == 0 and "cancelled" in capsys.readouterr().out
    with session_scope(migrated) as s:
        assert s.get(Job, 1).status == JobStatus.cancelled and s.get(Round, 1).status == JobStatus.cancelled
    assert main(["round", "resume", "1"]) == 0 and "resume queued as job 2" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["round", "start", "--region", "en-GB-leeds", "--stages", "sft,ppo"], "unknown stage(s) ['ppo']"),
    (["round", "start", "--region", "xx-nowhere"], "unknown region 'xx-nowhere'"),
    (["round", "start", "--region", "en-GB-leeds", "--stages", ","], "round.stages is empty"),
    (["round", "start", "--region", "en-GB-leeds", "--stages", "reward,dpo"],
     "round.stages ['reward', 'dpo'] would publish nothing: 0 preference pairs in the train split of en-GB-leeds"),
    (["round", "show", "99"], "round 99 does not exist"),
    (["round", "resume", "99"], "round 99 does not exist"),
    (["votes", "simulate", "--region", "xx-nowhere"], "unknown region 'xx-nowhere'"),
])
def test_round_errors_are_one_line(migrated, args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("geoalign: error: ") and message in err and len(err.strip().splitlines()) == 1
    with session_scope(migrated) as s:
        assert s.scalar(select(func.count()).select_from(Round)) == 0  # refused before anything was queued


def test_round_show_prints_a_reward_only_rounds_accuracies(migrated, capsys):
    reward = {"steps": 30, "train_pairs": 40, "val_pairs": 10, "newest_pairs": 6, "val_accuracy": 0.8,
              "val_accuracy_from": "one evaluation after training", "newest_accuracy": 0.75,
              "newest_accuracy_previous_model": 0.5, "train_sample_accuracy": 0.925, "train_sample_pairs": 40}
    with session_scope(migrated) as s:
        s.add(Round(number=1, status=JobStatus.succeeded, config={"round": {"stages": ["reward"]}},
                    completed_stages=["reward", "publish"],
                    metrics={"reward": reward, "version": "all-r1", "reward_only": True}))
    assert main(["round", "show", "1"]) == 0
    out = capsys.readouterr().out
    assert "published  all-r1 (a reward model only: the policy is unchanged)" in out
    assert ("accuracy   validation 0.80 (10 pairs) · newest votes 0.75 (6 pairs; previous model 0.50) · "
            "train sample 0.93 (40 of 40 pairs)") in out


def test_round_show_leads_with_the_independent_judge(migrated, capsys):
    rate = {"rate": 0.75, "low": 0.5, "high": 0.9, "n": 8, "wins": 6, "ties": 0, "losses": 2}
    with session_scope(migrated) as s:
        s.add(Round(number=1, status=JobStatus.succeeded, config={"round": {}}, completed_stages=["sft", "eval"],
                    metrics={"eval": {"vs_base": rate | {"rate": 0.5}, "judge_vs_base": rate, "prompts": 8}}))
    assert main(["round", "show", "1"]) == 0
    lines = [line.strip() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("win-rate")]
    assert [line.split("  ")[1].strip() for line in lines] == ["judge vs base (independent)",
                                                               "reward model vs base (trained on it)"]
    assert lines[0].endswith("0.75 [0.50, 0.90] (n=8)")


def test_bad_config_file_is_named(migrated, tmp_path, capsys):
    config = tmp_path / "round.yaml"
    config.write_text("dpo:\n  beta: high\n")
    assert main(["round", "start", "--all", "--config", str(config)]) == 2
    assert "dpo.beta: expected float or int, got 'high'" in capsys.readouterr().err
    with session_scope(migrated) as s:
        assert s.scalar(select(func.count()).select_from(Round)) == 0  # nothing queued
