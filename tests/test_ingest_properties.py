"""Property tests: whatever a file holds, an import either succeeds or fails with a clear error and changes nothing."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from collect.ingest import import_file
from db.errors import GeoAlignError
from db.models import Base
from db.session import session_scope

FIELDS = ["prompt", "completion", "chosen", "rejected", "task_type", "region", "tags", "month", "strength"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 20), st.floats(allow_nan=True),
                    st.text(max_size=30), st.sampled_from(["ad_copy", "social_post", "en-GB-leeds", "local_idiom",
                                                           "clear", "3", ""]))
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars, max_size=2),
                   st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]),
                                                   "content": st.text(max_size=10)}), max_size=3))
rows = st.lists(st.dictionaries(st.sampled_from(FIELDS), values, max_size=len(FIELDS)), min_size=1, max_size=6)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _counts(engine):
    with session_scope(engine) as s:
        return {t.name: s.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


def _attempt(engine, path, kind, region):
    before = _counts(engine)
    try:
        with session_scope(engine) as s:
            import_file(s, path, kind, region=region)
    except GeoAlignError as exc:
        assert str(exc).strip() and "\n" not in str(exc).splitlines()[0]
        assert _counts(engine) == before, "a failed import left rows behind"


@SETTINGS
@given(data=rows, kind=st.sampled_from(["examples", "prompts", "preferences"]),
       region=st.sampled_from([None, "en-GB-leeds"]))
def test_any_jsonl_rows(loaded, tmp_path, data, kind, region):
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in data), encoding="utf-8")
    _attempt(loaded, path, kind, region)


@SETTINGS
@given(raw=st.binary(max_size=200), suffix=st.sampled_from([".jsonl", ".json", ".csv"]))
def test_any_bytes(loaded, tmp_path, raw, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(raw)
    _attempt(loaded, path, "examples", "en-GB-leeds")
