"""A/B tests: export of generic and tuned variants, atomic import of campaign results, the lift and its CI."""

import csv
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from align.abtest import import_results, variant_key
from cli.common import cli_actor
from cli.main import main
from db.errors import NotFound, ValidationError
from db.models import AbTest, AbVariant, ModelVersion, Region, TaskType
from db.queries import ALL_REGIONS, ab_results
from db.session import session_scope
from rewards.dashboard import load_dashboard
from rewards.lift import lift, lift_table
from tests.conftest import load_mini, login_as

BRIEFS = "id,brief,task_type\nb1,Porridge deal in Headingley,ad_copy\nb2,Summer sale at the market,email_subject\n" \
         "b3,New bakery opening,social_post\n"


@pytest.fixture
def versions(loaded, tiny_model, tmp_path):
    """base (the tiny model) and v1, a random LoRA on it; a briefs CSV."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                          LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    lora.save_pretrained(tmp_path / "v1")
    with session_scope(loaded) as s:
        base = ModelVersion(name="base", base_model=str(tiny_model))
        s.add(base)
        s.flush()
        s.add(ModelVersion(name="v1", base_model=str(tiny_model), adapter_path=str(tmp_path / "v1"),
                           parent_id=base.id))
    briefs = tmp_path / "briefs.csv"
    briefs.write_text(BRIEFS)
    return loaded, briefs


def export(*extra, name="spring", version="v1", briefs, out):
    return main(["abtest", "export", "--name", name, "--region", "en-GB-leeds", "--version", version, "--input",
                 str(briefs), "--output", str(out), "--max-new-tokens", "12", *extra])


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_export_writes_a_generic_and_a_tuned_variant_per_brief(versions, tmp_path, capsys):
    engine, briefs = versions
    out = tmp_path / "ab" / "spring.csv"
    assert export("--ban", "porridge", briefs=briefs, out=out) == 0
    assert "3 briefs × 2 variants" in capsys.readouterr().out
    rows = read_csv(out)
    assert [r["id"] for r in rows] == ["b1", "b2", "b3"]
    assert {(r["generic_version"], r["tuned_version"], r["region"], r["test"]) for r in rows} == {
        ("base", "v1", "en-GB-leeds", "spring")}
    assert [r["generic_variant_id"] for r in rows] == ["spring-b1-generic", "spring-b2-generic", "spring-b3-generic"]
    assert [r["tuned_variant_id"] for r in rows] == ["spring-b1-tuned", "spring-b2-tuned", "spring-b3-tuned"]
    assert all(r["generic_text"] and r["tuned_text"] for r in rows)
    assert not any("porridge" in (r["generic_text"] + r["tuned_text"]).lower() for r in rows)
    assert [r["generic_text"] for r in rows] != [r["tuned_text"] for r in rows]  # the adapter changes the copy

    # the generic arm is exactly what the base model writes with the same seed, parameters and constraints
    base_out = tmp_path / "base.jsonl"
    assert main(["generate", "--region", "en-GB-leeds", "--version", "base", "--input", str(briefs), "--output",
                 str(base_out), "--max-new-tokens", "12", "--ban", "porridge"]) == 0
    assert [json.loads(line)["text"] for line in base_out.read_text().splitlines()] == [
        r["generic_text"] for r in rows]

    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(AbVariant)) == 6
    again = tmp_path / "again.csv"
    assert export(briefs=briefs, out=again) == 0  # same test: rewritten from the database, not generated anew
    assert "already existed" in capsys.readouterr().out and read_csv(again) == rows
    assert export(version="base", briefs=briefs, out=again) == 2
    assert "its own base" in capsys.readouterr().err


def test_export_rejects_bad_input_and_stores_nothing(versions, tmp_path, capsys):
    engine, briefs = versions
    out = tmp_path / "out.csv"
    briefs.write_text("id,brief,task_type\nb1,One,ad_copy\nb1,Two,ad_copy\n")
    assert export(briefs=briefs, out=out) == 2
    assert "row 3: field id 'b1' repeats row 2" in capsys.readouterr().err
    briefs.write_text("id,brief,task_type\nb 1,One,ad_copy\n")
    assert export(briefs=briefs, out=out) == 2
    assert "row 2: field id 'b 1' may hold" in capsys.readouterr().err
    assert export(name="no spaces", briefs=briefs, out=out) == 2
    assert "test name 'no spaces'" in capsys.readouterr().err
    assert export(version="v7", briefs=briefs, out=out) == 2
    assert "model version 'v7' does not exist" in capsys.readouterr().err
    assert not out.exists()
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(AbTest)) == 0


def make_test(engine, name="spring", briefs=("b1", "b2"), region="en-GB-leeds"):
    """A stored A/B test (no model needed): base vs v1 with the given brief ids."""
    with session_scope(engine) as s:
        versions = {}
        for vname in ("base", "v1"):
            versions[vname] = s.scalar(select(ModelVersion).where(ModelVersion.name == vname)) or ModelVersion(
                name=vname, base_model="tiny")
            s.add(versions[vname])
        s.flush()
        test = AbTest(name=name, region_id=s.scalar(select(Region.id).where(Region.code == region)),
                      generic_version_id=versions["base"].id, tuned_version_id=versions["v1"].id)
        s.add(test)
        s.flush()
        s.add_all(AbVariant(test_id=test.id, variant_key=variant_key(name, b, arm), row_key=b, arm=arm,
                            task_type=TaskType.ad_copy, brief=f"brief {b}", text=f"{arm} copy {b}")
                  for b in briefs for arm in ("generic", "tuned"))


def results_file(path, rows, header="variant_id,impressions,clicks,conversions"):
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def stored(engine):
    with session_scope(engine) as s:
        return {v.variant_key: (v.impressions, v.clicks, v.conversions) for v in s.scalars(select(AbVariant))}


@pytest.fixture
def ab(any_engine, mini_data):
    load_mini(any_engine, mini_data)
    make_test(any_engine, briefs=("b1", "b2", "b3"))
    return any_engine


def test_results_import_sets_totals_and_is_idempotent(ab, tmp_path):
    first = results_file(tmp_path / "r1.csv", [("spring-b1-generic", 1000, 40, 4), ("spring-b1-tuned", 1000, 55, 7),
                                               ("spring-b2-generic", 500, 10, 1)])
    with session_scope(ab) as s:
        summary = import_results(s, first)
    assert (summary.rows, summary.changed, summary.tests) == (3, 3, ["spring"])
    assert stored(ab) == {"spring-b1-generic": (1000, 40, 4), "spring-b1-tuned": (1000, 55, 7),
                          "spring-b2-generic": (500, 10, 1), "spring-b2-tuned": (None, None, None),
                          "spring-b3-generic": (None, None, None), "spring-b3-tuned": (None, None, None)}
    with session_scope(ab) as s:
        assert import_results(s, first).changed == 0  # the same file again changes nothing
    newer = tmp_path / "r2.jsonl"
    newer.write_text(json.dumps({"variant_id": "spring-b1-tuned", "impressions": 2000, "clicks": 99.0,
                                 "conversions": 12}) + "\n")
    with session_scope(ab) as s:
        assert import_results(s, newer).changed == 1
    assert stored(ab)["spring-b1-tuned"] == (2000, 99, 12)  # newer totals replace, they do not add up


def test_a_bad_results_file_names_every_problem_and_changes_nothing(ab, tmp_path):
    good = results_file(tmp_path / "good.csv", [("spring-b1-generic", 100, 5, 1)])
    with session_scope(ab) as s:
        import_results(s, good)
    before = stored(ab)
    bad = results_file(tmp_path / "bad.csv", [
        ("spring-b1-generic", 200, 9, 2),  # valid on its own: must not be written either
        ("spring-b9-tuned", 10, 1, 0),
        ("spring-b1-generic", 10, 1, 0),
        ("spring-b2-tuned", -5, 0, 0),
        ("spring-b2-generic", "12.5", 1, 0),
        ("spring-b1-tuned", 10, 11, 0),
        ("spring-b3-tuned", 10, 1, 11),
        ("", 10, 1, 0),
    ])
    with session_scope(ab) as s, pytest.raises(ValidationError) as err:
        import_results(s, bad)
    assert err.value.problems == [
        (str(bad), 3, "variant_id", "'spring-b9-tuned' is not a variant of any exported A/B test"),
        (str(bad), 4, "variant_id", "'spring-b1-generic' repeats row 2"),
        (str(bad), 5, "impressions", "'-5' is not a non-negative whole number"),
        (str(bad), 6, "impressions", "'12.5' is not a non-negative whole number"),
        (str(bad), 7, "clicks", "11 clicks exceed 10 impressions"),
        (str(bad), 8, "conversions", "11 conversions exceed 10 impressions"),
        (str(bad), 9, "variant_id", "is missing"),
    ]
    assert "7 problem(s), nothing imported" in str(err.value)
    assert stored(ab) == before
    with session_scope(ab) as s, pytest.raises(ValidationError, match="missing clicks"):
        import_results(s, results_file(tmp_path / "cols.csv", [("spring-b1-tuned", 1, 0)],
                                       header="variant_id,impressions,conversions"))


def test_results_can_be_restricted_to_one_test(ab, tmp_path):
    make_test(ab, name="autumn", briefs=("a1",))
    path = results_file(tmp_path / "r.csv", [("spring-b1-tuned", 10, 1, 0), ("autumn-a1-tuned", 10, 2, 0)])
    with session_scope(ab) as s, pytest.raises(ValidationError) as err:
        import_results(s, path, test_name="spring")
    assert [p[1:3] for p in err.value.problems] == [(3, "variant_id")]
    assert "belongs to another test than 'spring'" in err.value.problems[0][3]
    with session_scope(ab) as s, pytest.raises(NotFound, match="'winter' does not exist"):
        import_results(s, path, test_name="winter")
    with session_scope(ab) as s:
        assert import_results(s, path).tests == ["autumn", "spring"]


def test_lift_and_its_interval_by_hand():
    # 50/1000 tuned vs 40/1000 generic: ratio 1.25; Katz: exp(log 1.25 ± z·sqrt(1/50 − 1/1000 + 1/40 − 1/1000))
    out = lift(40, 1000, 50, 1000)
    se = math.sqrt(1 / 50 - 1 / 1000 + 1 / 40 - 1 / 1000)
    z = norm.ppf(0.975)
    assert out["lift"] == pytest.approx(0.25)
    assert out["low"] == pytest.approx(1.25 * math.exp(-z * se) - 1, abs=1e-9)
    assert out["high"] == pytest.approx(1.25 * math.exp(z * se) - 1, abs=1e-9)
    assert (out["generic_rate"], out["tuned_rate"]) == (0.04, 0.05)
    assert not out["significant"] and 0.2 < out["p_value"] < 0.5
    big = lift(4000, 100_000, 5000, 100_000)
    assert big["significant"] and big["low"] > 0 and big["p_value"] < 1e-10
    worse = lift(5000, 100_000, 4000, 100_000)
    assert worse["significant"] and worse["high"] < 0
    none = lift(0, 100, 3, 100)
    assert math.isnan(none["lift"]) and math.isnan(none["low"]) and "no generic events" in none["note"]


def test_lift_interval_covers_the_true_lift_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    p_generic, p_tuned, n = 0.04, 0.05, 5000
    covered = 0
    for _ in range(400):
        g, t = rng.binomial(n, p_generic), rng.binomial(n, p_tuned)
        out = lift(int(g), n, int(t), n)
        covered += out["low"] <= p_tuned / p_generic - 1 <= out["high"]
    assert 0.92 <= covered / 400 <= 0.98


def frame(rows):
    return pd.DataFrame(rows, columns=["test", "region", "generic_version", "tuned_version", "row_key", "arm",
                                       "impressions", "clicks", "conversions"])


def test_lift_table_sums_arms_and_skips_what_cannot_be_compared():
    table = lift_table(frame([
        ("spring", "en-GB-leeds", "base", "v1", "b1", "generic", 1000, 40, 4),
        ("spring", "en-GB-leeds", "base", "v1", "b2", "generic", 1000, 20, 2),
        ("spring", "en-GB-leeds", "base", "v1", "b1", "tuned", 1000, 50, 80),  # view-through: more conversions
        ("spring", "en-GB-leeds", "base", "v1", "b2", "tuned", 1000, 30, 6),
        ("autumn", "en-AU-perth", "base", "v2", "a1", "tuned", 900, 9, 1),  # one arm only: nothing to compare
    ]))
    assert list(table["metric"]) == ["click-through", "conversion"]  # per click: tuned has 86 conversions, 80 clicks
    ctr = table.iloc[0]
    assert (ctr["test"], ctr["briefs"], ctr["generic_events"], ctr["generic_n"], ctr["tuned_events"],
            ctr["tuned_n"]) == ("spring", 2, 60, 2000, 80, 2000)
    assert ctr["lift"] == pytest.approx(80 / 60 - 1)
    assert lift_table(frame([])).empty


def test_dashboard_shows_the_lift_per_region(ab, tmp_path):
    make_test(ab, name="perth-spring", briefs=("p1",), region="en-AU-perth")
    with session_scope(ab) as s:
        import_results(s, results_file(tmp_path / "r.csv", [
            ("spring-b1-generic", 4000, 160, 20), ("spring-b1-tuned", 4000, 220, 31),
            ("perth-spring-p1-generic", 100, 3, 0), ("perth-spring-p1-tuned", 100, 4, 0)]))
        assert len(ab_results(s)) == 4
        d = load_dashboard(s, cli_actor(s), n_boot=10)
    assert set(d.abtests["test"]) == {"spring", "perth-spring"}
    leeds = d.region("en-GB-leeds").abtests
    assert list(zip(leeds["test"], leeds["metric"], strict=True)) == [
        ("spring", "click-through"), ("spring", "conversion"), ("spring", "conversion per click")]
    assert leeds.iloc[0]["lift"] == pytest.approx(220 / 160 - 1) and leeds.iloc[0]["significant"]
    perth = d.region("en-AU-perth").abtests
    assert "no generic events" in perth.loc[perth["metric"] == "conversion", "note"].item()
    assert len(d.region(ALL_REGIONS).abtests) == len(d.abtests)


def _dashboard_page():
    from ui.pages import dashboard as dashboard_page

    dashboard_page.render()


def test_dashboard_page_has_an_ab_tab_with_chart_and_download(loaded, tmp_path):
    from tests.conftest import cast, lineage

    ids = lineage(loaded)
    cast(loaded, login_as(loaded, "rev", regions=["en-GB-leeds"]), ids, "v2", "base", ["win"])
    make_test(loaded)
    with session_scope(loaded) as s:
        import_results(s, results_file(tmp_path / "r.csv", [("spring-b1-generic", 4000, 160, 20),
                                                            ("spring-b1-tuned", 4000, 220, 31)]))
    at = AppTest.from_function(_dashboard_page, default_timeout=60)
    at.session_state["geoalign_user"] = login_as(loaded, "lead", roles=("lead",))
    at.run()
    assert not at.exception
    assert "A/B tests" in [t.label for t in at.tabs]
    charts = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    lift_charts = [c for c in charts if any(layer["encoding"].get("x", {}).get("field") == "lift"
                                            for layer in c.get("layer", []))]
    assert len(lift_charts) == 1
    assert "Download ab tests (CSV)" in [b.label for b in at.get("download_button")]


def test_abtest_show_and_list_commands(loaded, settings, tmp_path, capsys):
    make_test(loaded)
    assert main(["abtest", "show"]) == 0
    assert "no results to compare yet" in capsys.readouterr().out
    path = results_file(tmp_path / "r.csv", [("spring-b1-generic", 1000, 40, 4), ("spring-b1-tuned", 1000, 50, 5)])
    assert main(["abtest", "import-results", str(path), "--test", "spring"]) == 0
    assert "2 variants read, 2 updated (0 unchanged) in spring" in capsys.readouterr().out
    assert main(["abtest", "list"]) == 0
    assert "base vs v1: 2 briefs, 2 variants with results" in capsys.readouterr().out
    assert main(["abtest", "show", "spring", "--out", str(tmp_path / "lift.csv")]) == 0
    out = capsys.readouterr().out
    assert "40/1,000 = 4.00%" in out and "+25.0% (" in out
    assert list(pd.read_csv(tmp_path / "lift.csv")["metric"]) == ["click-through", "conversion",
                                                                 "conversion per click"]
    bad = results_file(tmp_path / "bad.csv", [("spring-b1-tuned", 10, 20, 0)])
    assert main(["abtest", "import-results", str(bad)]) == 2
    assert "bad.csv:2:clicks: 20 clicks exceed 10 impressions" in capsys.readouterr().err


def test_campaign_results_show_before_any_vote(loaded, tmp_path):
    make_test(loaded)
    at = AppTest.from_function(_dashboard_page, default_timeout=60)
    at.session_state["geoalign_user"] = login_as(loaded, "lead", roles=("lead",))
    at.run()
    assert not at.exception and "No votes yet" in at.info[0].value
    assert at.get("vega_lite_chart") == [] and at.subheader == []  # nothing else yet
    with session_scope(loaded) as s:
        import_results(s, results_file(tmp_path / "r.csv", [("spring-b1-generic", 4000, 160, 20),
                                                            ("spring-b1-tuned", 4000, 220, 31)]))
    from ui.pages.dashboard import _dashboard

    _dashboard.clear()
    at.run()
    assert not at.exception and "No votes yet" in at.info[0].value
    assert len(at.get("vega_lite_chart")) == 1 and "Download ab tests (CSV)" in [
        b.label for b in at.get("download_button")]


@pytest.mark.parametrize(("impressions", "message"), [
    ("1" * 400, "'" + "1" * 36 + "... is over the largest count, 2147483647"),
    (2**31, "2147483648 is over the largest count, 2147483647"),
    ("2147483648", "'2147483648' is over the largest count, 2147483647"),
    (10**30, "1000000000000000000000000000000 is over the largest count, 2147483647"),
    (1e30, "1000000000000000019884624838656 is over the largest count, 2147483647"),
    ("٣", "'٣' is not a non-negative whole number"),
])
def test_counts_out_of_range_are_refused_naming_row_and_field(ab, tmp_path, impressions, message):
    # "1"*400 used to raise OverflowError (int(float(...))); 2**31 failed on PostgreSQL's INTEGER at the write and
    # 10**30 with OverflowError on SQLite
    before = stored(ab)
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"variant_id": "spring-b1-generic", "impressions": 10, "clicks": 1, "conversions": 0})
                    + "\n" + json.dumps({"variant_id": "spring-b1-tuned", "impressions": impressions, "clicks": 1,
                                         "conversions": 0}) + "\n")
    with session_scope(ab) as s, pytest.raises(ValidationError) as err:
        import_results(s, path)
    assert err.value.problems == [(str(path), 2, "impressions", message)]
    assert stored(ab) == before


def test_the_largest_count_is_stored(ab, tmp_path):
    path = results_file(tmp_path / "max.csv", [("spring-b1-tuned", 2**31 - 1, 2**31 - 1, 0)])
    with session_scope(ab) as s:
        import_results(s, path)
    assert stored(ab)["spring-b1-tuned"] == (2**31 - 1, 2**31 - 1, 0)


def test_a_nul_in_a_variant_id_is_a_problem_not_a_database_error(ab, tmp_path):
    path = results_file(tmp_path / "nul.csv", [("spring-b1-tuned", 10, 1, 0), ("spring-b1-\x00generic", 10, 1, 0)])
    with session_scope(ab) as s, pytest.raises(ValidationError) as err:
        import_results(s, path)
    assert [p[1:3] for p in err.value.problems] == [(3, "variant_id")]
    assert "is not a variant id" in err.value.problems[0][3]
