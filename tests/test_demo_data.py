"""The bundled demo data: six regions, ≥ 60 tagged gold examples each, in the schema the importers expect."""

import json
import re
from collections import Counter

import pytest

from cli.demo import DEMO_DATA, demo_region_dirs
from collect.ingest import MONTHS, TASK_TYPES

REGIONS = {"en-GB-manchester", "en-US-austin", "en-AU-melbourne", "de-DE-munich", "es-ES-madrid",
           "es-MX-mexico-city"}
EXAMPLE_TAGS = {"local_idiom", "cultural_reference", "place_name", "seasonal", "positive_local_sentiment"}
LIMITS = {"ad_copy": (1, 300), "meta_description": (100, 170), "social_post": (1, 280), "email_subject": (1, 70)}


def _examples(code):
    return [json.loads(line) for line in (DEMO_DATA / code / "examples.jsonl").read_text("utf-8").splitlines()
            if line.strip()]


def test_six_regions():
    assert {d.name for d in demo_region_dirs()} == REGIONS


@pytest.mark.parametrize("code", sorted(REGIONS))
def test_region_profile(code):
    region = json.loads((DEMO_DATA / code / "region.json").read_text("utf-8"))
    assert region["code"] == code and region["locale"] == "-".join(code.split("-")[:2])
    assert list(region["climate_by_month"]) == MONTHS
    assert 25 <= len(region["local_terms"]) <= 40 and 20 <= len(region["avoid_terms"]) <= 30
    assert region["hemisphere"] == ("south" if code == "en-AU-melbourne" else "north")


@pytest.mark.parametrize("code", sorted(REGIONS))
def test_gold_examples(code):
    rows = _examples(code)
    region = json.loads((DEMO_DATA / code / "region.json").read_text("utf-8"))
    assert len(rows) >= 60
    assert set(Counter(r["task_type"] for r in rows)) == set(TASK_TYPES)
    assert min(Counter(r["task_type"] for r in rows).values()) >= 15
    assert len({r["prompt"] for r in rows}) == len(rows)
    assert set(range(1, 13)) <= {r["month"] for r in rows}
    for r in rows:
        assert r["region"] == code
        assert r["tags"] and set(r["tags"]) <= EXAMPLE_TAGS, r
        low, high = LIMITS[r["task_type"]]
        assert low <= len(r["completion"]) <= high, r
        for term in region["avoid_terms"]:
            assert not re.search(rf"(?<!\w){re.escape(term.lower())}(?!\w)", r["completion"].lower()), (term, r)


def test_no_region_uses_another_regions_currency():
    foreign = {"en-GB-manchester": ["$", "€"], "en-US-austin": ["£", "€"], "en-AU-melbourne": ["£", "€"],
               "de-DE-munich": ["$", "£"], "es-ES-madrid": ["$", "£"], "es-MX-mexico-city": ["€", "£"]}
    for code, bad in foreign.items():
        for r in _examples(code):
            assert not any(sym in r["completion"] for sym in bad), (code, r["completion"])
