"""The leads' dashboard: the grouped queries, the assembled tables, region narrowing and the Streamlit page."""

import json
from datetime import timedelta

import pandas as pd
import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from cli.common import cli_actor
from collect.review import submit_vote
from db import queries
from db.errors import AuthError, PermissionDenied
from db.models import Assignment, Choice, ModelVersion, Pair, Round, Side, Vote
from db.queries import ALL_REGIONS
from db.session import session_scope
from rewards.dashboard import load_dashboard
from tests.conftest import MONDAY, cast, lineage, login_as, make_pairs


@pytest.fixture
def voted(loaded):
    """Leeds: v2 beat base 3-1 with a tie and a "both bad" (two weeks), v2 vs v1 one win; Perth: nothing."""
    ids = lineage(loaded)
    rev = login_as(loaded, "rev", regions=["en-GB-leeds"])
    cast(loaded, rev, ids, "v2", "base", ["win", "win", "loss"], tags=["local_idiom"])
    cast(loaded, rev, ids, "v2", "base", ["win", "tie", "both_bad"], when=MONDAY + timedelta(days=8))
    cast(loaded, rev, ids, "v2", "v1", ["win"])
    return loaded, ids


def test_comparison_counts_are_canonical_and_weekly(voted):
    engine, ids = voted
    with session_scope(engine) as s:
        counts = queries.comparison_counts(s)
    got = {(r.week.date().isoformat(), r.model_a, r.model_b): (r.a_wins, r.b_wins, r.ties, r.both_bad)
           for r in counts.itertuples()}
    base, v1, v2 = ids["base"], ids["v1"], ids["v2"]
    assert got == {("2026-11-16", base, v2): (1, 2, 0, 0), ("2026-11-23", base, v2): (0, 1, 1, 1),
                   ("2026-11-16", v1, v2): (0, 1, 0, 0)}
    assert set(counts["region"]) == {"en-GB-leeds"}


def test_gold_and_self_pairs_stay_out_of_the_counts(voted):
    engine, ids = voted
    rev = login_as(engine, "other", regions=["en-GB-leeds"])
    with session_scope(engine) as s:
        gold = s.scalar(select(Pair).where(Pair.assigned == 0, Pair.model_a_id != Pair.model_b_id).limit(1))
        gold.is_gold, gold.gold_choice = True, Choice.a
        gold_id = gold.id
        s.add(Assignment(pair_id=gold_id, user_id=rev.id, shown_left=Side.a))
    with session_scope(engine) as s:
        submit_vote(s, rev, s.scalar(select(Assignment.id).where(Assignment.pair_id == gold_id)), "left")
    self_pair = make_pairs(engine, "en-GB-leeds", 1, versions=("base", "base"))[0]
    with session_scope(engine) as s:
        s.add(Vote(pair_id=self_pair, user_id=rev.id, region_id=ids["region"], choice=Choice.a, shown_left=Side.a))
    with session_scope(engine) as s:
        assert int(queries.comparison_counts(s)[["a_wins", "b_wins", "ties", "both_bad"]].sum().sum()) == 7
        records = queries.vote_records(s)
    gold_row = records[records["pair_id"] == gold_id].iloc[0]
    assert (gold_row["is_gold"], gold_row["gold_choice"], gold_row["choice"], gold_row["user"]) == (
        True, "a", "a", "other")


def test_versions_frame_knows_parents_bases_and_rounds(voted):
    engine, ids = voted
    with session_scope(engine) as s:
        rnd = Round(number=3, status="succeeded")
        s.add(rnd)
        s.flush()
        s.get(ModelVersion, ids["v2"]).round_id = rnd.id
    with session_scope(engine) as s:
        frame = queries.versions_frame(s).set_index("name")
    assert frame.loc["v2", "parent_id"] == ids["v1"] and frame.loc["v2", "base_id"] == ids["base"]
    assert frame.loc["base", "base_id"] == ids["base"] and pd.isna(frame.loc["base", "parent_id"])
    assert frame.loc["v2", "round_number"] == 3 and pd.isna(frame.loc["v1", "round_number"])


def test_reason_tags_go_to_the_preferred_version(voted):
    engine, ids = voted
    with session_scope(engine) as s:
        tags = queries.reason_tag_counts(s)
    got = {(r.version_id, r.tag): r.votes for r in tags.itertuples()}
    assert got == {(ids["v2"], "local_idiom"): 2, (ids["base"], "local_idiom"): 1}


def test_dashboard_tables_for_a_region_and_all_regions(voted):
    engine, ids = voted
    with session_scope(engine) as s:
        d = load_dashboard(s, cli_actor(s), n_boot=50)
    assert d.total_votes == 7 and d.regions == ["en-GB-leeds"]
    leeds = d.region("en-GB-leeds")
    row = leeds.win_rates.set_index(["version", "opponent"]).loc[("v2", "base")]
    assert (row["wins"], row["ties"], row["losses"], row["both_bad"], row["n"]) == (3, 1, 1, 1, 5)
    assert row["rate"] == pytest.approx(3.5 / 5)
    assert set(d.region(ALL_REGIONS).win_rates["region"]) == {ALL_REGIONS}
    assert list(leeds.votes_by_reviewer[["user", "votes"]].itertuples(index=False, name=None)) == [("rev", 7)]
    assert d.region("en-AU-perth").win_rates.empty
    assert set(leeds.leaderboard["version"]) == {"base", "v1", "v2"}
    assert set(d.tables()) >= {"win_rates", "weekly", "leaderboard", "votes_daily", "agreement", "reviewers"}
    assert d.timings["total"] > 0


def _dashboard_page():
    from ui.pages import dashboard as dashboard_page

    dashboard_page.render()


def _page(engine) -> AppTest:
    at = AppTest.from_function(_dashboard_page, default_timeout=60)
    at.session_state["geoalign_user"] = login_as(engine, "lead", roles=("lead",))
    return at


def test_dashboard_page_empty_state(loaded):
    at = _page(loaded).run()
    assert not at.exception
    assert "No votes yet" in at.info[0].value


def test_dashboard_page_shows_charts_and_downloads(voted):
    engine, _ = voted
    at = _page(engine).run()
    assert not at.exception
    assert [m.label for m in at.metric][:3] == ["Votes", "Reviewers", "v2 vs base"]
    assert at.metric[0].value == "7"
    charts = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    # win-rate by round, over time, leaderboard, votes per day and per reviewer, reasons (no round has finished)
    assert len(charts) == 6
    fields = {layer["encoding"]["y"]["field"] for layer in charts[0]["layer"] if "y" in layer["encoding"]}
    assert {"low", "rate"} <= fields
    downloads = [b.label for b in at.get("download_button")]
    assert "Download win rates (CSV)" in downloads and "Download leaderboard (CSV)" in downloads
    at.selectbox(key="dashboard_region").set_value("en-GB-leeds").run()
    assert not at.exception and at.metric[0].value == "7"


def test_stats_command_prints_and_exports(voted, tmp_path, capsys):
    from cli.main import main

    assert main(["stats", "--region", "en-GB-leeds", "--out", str(tmp_path / "csv"), "--bootstrap", "20"]) == 0
    out = capsys.readouterr().out
    assert "win-rates (en-GB-leeds" in out and "Bradley–Terry leaderboard" in out and "reviewers flagged: 0" in out
    exported = pd.read_csv(tmp_path / "csv" / "win_rates.csv")
    assert list(exported.loc[exported["opponent"] == "base", ["version", "wins", "ties", "losses"]].itertuples(
        index=False, name=None)) == [("v2", 3, 1, 1)]
    assert main(["stats", "--region", "en-AU-perth"]) == 2
    assert "no votes in region 'en-AU-perth'" in capsys.readouterr().err


def test_load_dashboard_refuses_a_reviewer(voted):
    engine, _ = voted
    reviewer = login_as(engine, "rita", regions=["en-GB-leeds"])
    with session_scope(engine) as s:
        with pytest.raises(PermissionDenied, match="lead or engineer or admin"):
            load_dashboard(s, reviewer, n_boot=10)
        with pytest.raises(AuthError):
            load_dashboard(s, None, n_boot=10)
