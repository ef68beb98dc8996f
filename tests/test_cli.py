"""The CLI: useful --help everywhere, one-line errors with exit code 2 and no traceback."""

import os
import subprocess
import sys

import pytest

from cli.main import build_parser, main

SUBCOMMANDS = [
    ["demo"],
    ["status"],
    ["db", "upgrade"],
    ["db", "downgrade"],
    ["db", "current"],
    ["import", "regions"],
    ["import", "examples"],
    ["model", "build-demo"],
    ["model", "list"],
    ["pairs", "generate"],
    ["pairs", "list"],
    ["users", "add"],
    ["users", "list"],
    ["users", "reset-password"],
    ["users", "set-role"],
    ["import", "prompts"],
    ["import", "preferences"],
    ["export", "sft"],
    ["export", "preferences"],
    ["tags", "list"],
    ["tags", "add"],
    ["tags", "remove"],
]


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*words, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: geoalign " + " ".join(words)) and len(out.splitlines()) >= 4


def test_top_level_help_lists_commands_and_configuration():
    text = build_parser().format_help()
    for word in ("demo", "db", "import", "model", "pairs", "users", "status", "DATABASE_URL", "GEOALIGN_HOME"):
        assert word in text


def _run(args, env_extra, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "GEOALIGN_HOME")} | env_extra
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


@pytest.mark.parametrize(
    "url, needle",
    [
        ("nonsense://", "DATABASE_URL 'nonsense://'"),
        ("postgresql+psycopg://nobody@127.0.0.1:1/x", "cannot reach database"),
        ("not a url", "is not a URL"),
    ],
)
def test_bad_database_url_is_one_line(url, needle, tmp_path):
    result = _run(["db", "upgrade"], {"DATABASE_URL": url, "GEOALIGN_HOME": str(tmp_path)}, tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geoalign: error:") and needle in lines[0]


def test_commands_on_an_unmigrated_database_say_so(home, capsys):
    assert main(["status"]) == 2
    assert "geoalign db upgrade" in capsys.readouterr().err


def test_import_errors_name_the_problem(home, mini_data, capsys):
    assert main(["db", "upgrade"]) == 0
    assert main(["import", "regions", str(mini_data / "en-GB-leeds" / "region.json")]) == 0
    capsys.readouterr()
    assert main(["import", "examples", str(home / "nope.jsonl"), "--region", "en-GB-leeds"]) == 2
    assert "nope.jsonl: file not found" in capsys.readouterr().err
    path = str(mini_data / "en-GB-leeds" / "examples.jsonl")
    assert main(["import", "examples", path, "--region", "xx-nowhere"]) == 2
    assert "unknown region 'xx-nowhere'" in capsys.readouterr().err
    assert main(["import", "examples", path, "--region", "en-GB-leeds", "--dry-run"]) == 0
    assert "would import 12 examples" in capsys.readouterr().out
    assert main(["import", "examples", path, "--region", "en-GB-leeds"]) == 0
    assert "imported 12 examples" in capsys.readouterr().out
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "en-GB-leeds" in out and " 12 " in out


def test_users_add_list_reset(home, mini_data, capsys, monkeypatch):
    from collect.accounts import verify_password
    from db.models import User
    from db.session import get_engine, session_scope

    main(["db", "upgrade"])
    main(["import", "regions", str(mini_data / "en-AU-perth" / "region.json")])
    monkeypatch.setenv("PW", "correct horse battery")
    assert main(["users", "add", "ana", "--role", "reviewer", "--region", "en-AU-perth", "--password-env", "PW"]) == 0
    assert main(["users", "add", "ana", "--role", "lead"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["users", "add", "bo", "--role", "reviewer", "--region", "en-XX-atlantis"]) == 2
    assert "unknown region 'en-XX-atlantis'" in capsys.readouterr().err
    assert main(["users", "list"]) == 0
    assert "regions=en-AU-perth" in capsys.readouterr().out
    assert main(["users", "reset-password", "ana"]) == 0
    new = capsys.readouterr().out.rsplit(": ", 1)[1].strip()
    with session_scope(get_engine()) as s:
        user = s.query(User).filter_by(username="ana").one()
        assert verify_password(user.password_hash, new) and not verify_password(
            user.password_hash, "correct horse battery"
        )
    assert main(["users", "reset-password", "nobody"]) == 2
    assert "unknown user 'nobody'" in capsys.readouterr().err


def test_pairs_generate_rejects_unknown_things(home, capsys):
    main(["db", "upgrade"])
    capsys.readouterr()
    assert main(["pairs", "generate", "--version", "v9"]) == 2
    assert "unknown model version 'v9'" in capsys.readouterr().err


def test_users_set_role(home, mini_data, capsys):
    main(["db", "upgrade"])
    main(["import", "regions", str(mini_data / "en-AU-perth" / "region.json")])
    main(["users", "add", "ana", "--role", "reviewer"])
    capsys.readouterr()
    assert main(["users", "set-role", "ana", "--role", "lead", "--role", "reviewer", "--region", "en-AU-perth"]) == 0
    assert "roles=lead,reviewer regions=en-AU-perth active=True" in capsys.readouterr().out
    assert main(["users", "set-role", "ana", "--active", "no"]) == 0
    assert "active=False" in capsys.readouterr().out
    assert main(["users", "set-role", "ghost", "--role", "lead"]) == 2


def test_import_export_round_trip_via_cli(home, mini_data, tmp_path, capsys):
    import json

    main(["db", "upgrade"])
    main(["import", "regions", str(mini_data / "en-GB-leeds" / "region.json")])
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text("".join(json.dumps({"prompt": f"Brief {i}", "chosen": f"Good {i}", "rejected": f"Bad {i}"}) + "\n"
                             for i in range(10)))
    assert main(["import", "preferences", str(prefs), "--region", "en-GB-leeds", "--task-type", "ad_copy",
                 "--report-json", str(tmp_path / "report.json")]) == 0
    assert json.loads((tmp_path / "report.json").read_text())["created"] == 10
    out = tmp_path / "out.jsonl"
    args = ["export", "preferences", str(out), "--split", "train", "--split", "val", "--prompt-format", "raw"]
    assert main(args) == 0
    assert "wrote" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["prompt"], r["chosen"]) for r in rows} <= {(f"Brief {i}", f"Good {i}") for i in range(10)}
    assert main(["export", "preferences", str(out), "--split", "test"]) == 2
    assert "held out" in capsys.readouterr().err
    assert main(["tags", "add", "humour_lands", "--label", "Humour lands"]) == 0
    assert main(["tags", "add", "Bad Name", "--label", "x"]) == 2
    assert main(["tags", "remove", "humour_lands"]) == 0


def test_model_build_demo_tiny_needs_the_demo_data_and_says_so(home, capsys):
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    assert main(["model", "build-demo", "--tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no train-split gold examples" in err[0] and "geoalign demo --no-app" in err[0]
    assert not (home / "models" / "tiny").exists()
