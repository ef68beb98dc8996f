"""Property tests: whatever a file holds, an import either succeeds or fails with a clear error and changes nothing.

Two levels. Reading and validation (:func:`collect.ingest.validate_file`, no database) run 10,000 generated files
per format: JSONL, JSON, CSV and Parquet, with deep nesting, numbers too long for ``int()``, NUL and other control
characters, lone surrogates, Unicode digits, duplicate headers, wrong encodings and truncated Parquet. Whatever
passes validation must be storable text. A smaller number of files per format then goes through the whole import
into one database, checking after every failure that no table changed.
"""

import csv
import datetime
import io
import json
import os
import random

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from collect.ingest import _UNSTORABLE, KINDS, MAX_TEXT_CHARS, import_file, validate_file
from db.errors import GeoAlignError, ValidationError
from db.models import Base
from db.session import session_scope

FIELDS = ["prompt", "completion", "chosen", "rejected", "task_type", "region", "tags", "month", "strength"]
REGIONS = {"en-GB-leeds": None, "en-AU-perth": None}  # validation looks only at the codes and tag names
TAGS = {"local_idiom": None, "seasonal": None, "place_name": None}
FORMATS = ["jsonl", "json", "csv", "parquet"]
FUZZ_EXAMPLES = int(os.environ.get("GEOALIGN_FUZZ_EXAMPLES", 10_000))  # lower it for a quick local run
VALIDATION = settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
IMPORTS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

# ------------------------------------------------------------------------------------------- generated values

# Text with what breaks importers: NUL and other controls, a lone surrogate, digits int() refuses, line breaks
# that str.splitlines() honours but JSON Lines does not, and plain words the validators accept.
awkward = st.sampled_from(["\x00", "\x1b", "\x7f", "\x85", "\u2028", "\ud800", "²", "٣", "１２", "\r\n", "\t",
                           '"', ",", "\n\nHuman: hi\n\nAssistant:", "Ey up", " "])
text = st.one_of(st.text(max_size=20), st.lists(st.one_of(awkward, st.text(max_size=5)), max_size=6).map("".join))
storable_text = text.map(lambda t: t.encode("utf-8", "replace").decode("utf-8"))  # what Arrow can hold
known = st.sampled_from(["ad_copy", "social_post", "en-GB-leeds", "en-AU-perth", "local_idiom", "clear", "slight",
                         "3", "12", "13", "0", "²", "", "['seasonal']", "[[[[1]]]]", "[" * 200])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 20), st.integers(), st.floats(), text, known,
                    st.sampled_from([2**31 - 1, 2**31, 10**30, -(2**63)]))
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]),
                                           "content": text}), max_size=3)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(text, scalars, max_size=2), messages)
rows = st.lists(st.dictionaries(st.sampled_from(FIELDS), values, max_size=len(FIELDS)), min_size=1, max_size=5)
# JSON fragments no json.dumps of a Python value produces: too deep, too long a number, broken
fragments = st.one_of(
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(4000, 6000).map(lambda n: "9" * n),
    st.sampled_from(['"\\ud800"', '"\\u0000"', "NaN", "-Infinity", "1e999", "[", "{", '"', "tru", ""]),
)


@st.composite
def json_rows(draw) -> list[str]:
    """JSON objects as text, some with a field replaced by a raw fragment."""
    out = []
    for row in draw(rows):
        line = json.dumps(row, ensure_ascii=draw(st.booleans()))
        if draw(st.integers(0, 3)) == 0:
            line = "{" + json.dumps(draw(st.sampled_from(FIELDS))) + ": " + draw(fragments) + "}"
        elif draw(st.integers(0, 9)) == 0:
            line = draw(fragments)
        out.append(line)
    return out


ENCODINGS = st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"])


def _encode(content: str, encoding: str) -> bytes:
    # surrogatepass writes a lone surrogate as the bytes UTF-8 forbids, as a badly converted file would hold
    return content.encode(encoding, "surrogatepass" if encoding.startswith("utf-8") else "replace")


@st.composite
def jsonl_files(draw) -> bytes:
    lines = draw(json_rows())
    return _encode(draw(st.sampled_from(["\n", "\r\n"])).join(lines), draw(ENCODINGS))


@st.composite
def json_files(draw) -> bytes:
    items = draw(json_rows())
    shape = draw(st.sampled_from(["list", "data", "one", "raw"]))
    body = {"list": "[" + ",".join(items) + "]", "data": '{"data": [' + ",".join(items) + "]}",
            "one": items[0], "raw": draw(fragments)}[shape]
    return _encode(body, draw(ENCODINGS))


@st.composite
def csv_files(draw) -> bytes:
    header = draw(st.lists(st.one_of(st.sampled_from(FIELDS), text), min_size=1, max_size=7))
    if draw(st.booleans()):
        header.append(draw(st.sampled_from(header)))  # a duplicate header
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in draw(st.lists(st.lists(st.one_of(text, known, st.integers(4000, 6000).map(lambda n: "1" * n)),
                                      max_size=len(header) + 1), max_size=5)):
        writer.writerow(row)
    return _encode(out.getvalue(), draw(ENCODINGS))


ARROW_COLUMNS = {
    "string": lambda: st.lists(st.one_of(st.none(), storable_text, known), max_size=4),
    "int64": lambda: st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), max_size=4),
    "float64": lambda: st.lists(st.one_of(st.none(), st.floats()), max_size=4),
    "list": lambda: st.lists(st.one_of(st.none(), st.lists(storable_text, max_size=3)), max_size=4),
    "messages": lambda: st.lists(st.lists(st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant"]), "content": storable_text}), max_size=3), max_size=4),
    "binary": lambda: st.lists(st.one_of(st.none(), st.binary(max_size=5)), max_size=4),
    "date": lambda: st.lists(st.one_of(st.none(), st.dates()), max_size=4),
}


@st.composite
def parquet_files(draw) -> bytes:
    names = draw(st.lists(st.one_of(st.sampled_from(FIELDS), storable_text), min_size=1, max_size=5))
    if draw(st.integers(0, 4)) == 0:
        names.append(draw(st.sampled_from(names)))  # a duplicate column
    length = draw(st.integers(0, 4))
    arrays = []
    for _ in names:
        column = draw(ARROW_COLUMNS[draw(st.sampled_from(sorted(ARROW_COLUMNS)))]())
        arrays.append(pa.array((column + [None] * length)[:length]))
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, names=names), buffer)
    data = buffer.getvalue()
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip"]))
    if damage == "truncate":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif damage == "flip":
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    return data


FILES = {"jsonl": jsonl_files(), "json": json_files(), "csv": csv_files(), "parquet": parquet_files()}
kinds = st.sampled_from(KINDS)
region_args = st.sampled_from([None, "en-GB-leeds"])
task_args = st.sampled_from([None, "ad_copy"])

# ------------------------------------------------------------------------------------------- checks


def _check_error(exc: GeoAlignError, path) -> None:
    """A refusal is one line a user can act on, naming the file (and the row, where a row is to blame)."""
    message = str(exc)
    assert message.strip() and "\n" not in message.splitlines()[0]
    assert str(path) in message
    if isinstance(exc, ValidationError):
        for file, row, _field, reason in exc.problems:
            assert file == str(path) and reason
            assert row is None or row >= 1


def _check_clean(clean: list[dict]) -> None:
    """Whatever validation lets through is storable: plain bounded text, a month 1-12, known choices."""
    for row in clean:
        for name in ("prompt", "completion", "chosen", "rejected"):
            if name in row:
                value = row[name]
                assert isinstance(value, str) and value.strip() and len(value) <= MAX_TEXT_CHARS
                assert not _UNSTORABLE.search(value)
        assert row["month"] is None or (type(row["month"]) is int and 1 <= row["month"] <= 12)
        assert row["region"] in REGIONS
        assert all(t in TAGS for t in row.get("tags", []))


def _validate(path, kind, region, task_type, skip_invalid) -> None:
    try:
        read, clean, rejects = validate_file(path, kind, region, task_type, REGIONS, TAGS, skip_invalid)
    except GeoAlignError as exc:
        _check_error(exc, path)
        return
    _check_clean(clean)
    assert skip_invalid or not rejects
    for file, row, _field, reason, _held in rejects:
        assert file == str(path) and row is not None and row >= 1 and reason
    assert len(clean) + len({r[1] for r in rejects}) <= read


# Drawing a structured file through Hypothesis costs about 30 ms, too slow for 40,000 files on a small machine.
# The validation-level tests therefore let Hypothesis draw a seed and build the file from it with ``random``: the
# same ingredients as the strategies above, a fraction of the cost, and a failing seed still replays.
AWKWARD = ["\x00", "\x1b", "\x7f", "\x85", "\u2028", "\ud800", "²", "٣", "１２", "\r\n", "\t", '"', ",", "é",
           "\n\nHuman: hi\n\nAssistant:", "Ey up", " ", "ad_copy", "en-GB-leeds", "local_idiom", "clear", "3", "12"]
KNOWN = ["ad_copy", "social_post", "en-GB-leeds", "en-AU-perth", "local_idiom", "clear", "slight", "3", "12", "13",
         "0", "²", "", "['seasonal']", "[[[[1]]]]", "[" * 200]


def _text(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.choice(KNOWN)
    return "".join(rng.choice(AWKWARD) if rng.random() < 0.5 else chr(rng.choice([rng.randint(32, 126),
                   rng.randint(0, 0x2FFF)])) for _ in range(rng.randint(0, 8)))


def _value(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if roll < 0.35:
        return _text(rng)
    if roll < 0.45:
        return rng.choice([None, True, False, 2**31 - 1, 2**31, 10**30, -(2**63), 0.5, 3.0, float("inf"),
                           float("nan"), 1e300])
    if roll < 0.6:
        return rng.randint(-5, 20)
    if roll < 0.7 or depth >= 3:
        return rng.choice(KNOWN)
    if roll < 0.8:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if roll < 0.9:
        return {_text(rng): _value(rng, depth + 1) for _ in range(rng.randint(0, 2))}
    return [{"role": rng.choice(["user", "assistant", "system"]), "content": _text(rng)}
            for _ in range(rng.randint(0, 3))]


def _fragment(rng: random.Random) -> str:
    n = rng.randint(1, 3000)
    return rng.choice(["[" * n + "]" * n, '{"a":' * n + "1" + "}" * n, "9" * rng.randint(4000, 6000), '"\\ud800"',
                       '"\\u0000"', "NaN", "-Infinity", "1e999", "[", "{", '"', "tru", ""])


def _json_rows(rng: random.Random) -> list[str]:
    out = []
    for _ in range(rng.randint(1, 5)):
        row = {rng.choice(FIELDS): _value(rng) for _ in range(rng.randint(0, len(FIELDS)))}
        roll = rng.random()
        if roll < 0.25:
            line = "{" + json.dumps(rng.choice(FIELDS)) + ": " + _fragment(rng) + "}"
        elif roll < 0.32:
            line = _fragment(rng)
        else:
            line = json.dumps(row, ensure_ascii=rng.random() < 0.5)
        out.append(line)
    return out


def _encode_random(content: str, rng: random.Random) -> bytes:
    return _encode(content, rng.choice(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]))


def _random_file(fmt: str, rng: random.Random) -> bytes:
    """A file of format ``fmt`` built from ``rng``: mostly near-valid rows with something awkward in them."""
    if fmt == "jsonl":
        return _encode_random(rng.choice(["\n", "\r\n"]).join(_json_rows(rng)), rng)
    if fmt == "json":
        items = _json_rows(rng)
        body = rng.choice(["[" + ",".join(items) + "]", '{"data": [' + ",".join(items) + "]}", items[0],
                           _fragment(rng)])
        return _encode_random(body, rng)
    if fmt == "csv":
        header = [rng.choice(FIELDS) if rng.random() < 0.7 else _text(rng) for _ in range(rng.randint(1, 7))]
        if rng.random() < 0.3:
            header.append(rng.choice(header))
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        for _ in range(rng.randint(0, 5)):
            writer.writerow([_text(rng) if rng.random() < 0.95 else "1" * 5000
                             for _ in range(rng.randint(0, len(header) + 1))])
        return _encode_random(out.getvalue(), rng)
    names = [rng.choice(FIELDS) if rng.random() < 0.7 else _storable(_text(rng)) for _ in range(rng.randint(1, 5))]
    if rng.random() < 0.2:
        names.append(rng.choice(names))
    length = rng.randint(0, 4)
    columns = {
        "string": lambda: rng.choice([None, _storable(_text(rng))]),
        "int64": lambda: rng.choice([None, rng.randint(-(2**63), 2**63 - 1), rng.randint(0, 13), 2**31]),
        "float64": lambda: rng.choice([None, 3.0, 0.5, float("nan"), float("inf")]),
        "list": lambda: rng.choice([None, [_storable(_text(rng)) for _ in range(rng.randint(0, 3))]]),
        "messages": lambda: [{"role": rng.choice(["user", "assistant"]), "content": _storable(_text(rng))}
                             for _ in range(rng.randint(0, 3))],
        "binary": lambda: rng.choice([None, rng.randbytes(rng.randint(0, 5))]),
        "date": lambda: rng.choice([None, datetime.date(rng.randint(1, 9999), 1, 1)]),
    }
    arrays = [pa.array([make() for _ in range(length)]) for make in (columns[rng.choice(sorted(columns))]
                                                                       for _ in names)]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, names=names), buffer)
    data = buffer.getvalue()
    damage = rng.choice(["none", "none", "truncate", "flip"])
    at = rng.randint(0, len(data) - 1)
    if damage == "truncate":
        data = data[:at]
    elif damage == "flip":
        data = data[:at] + bytes([data[at] ^ rng.randint(1, 255)]) + data[at + 1:]
    return data


def _storable(value: str) -> str:
    return value.encode("utf-8", "replace").decode("utf-8")  # Arrow strings cannot hold a lone surrogate


def _validation_test(fmt: str):
    @VALIDATION
    @given(seed=st.integers(0, 2**64 - 1), kind=kinds, region=region_args, task_type=task_args,
           skip_invalid=st.booleans())
    def test(tmp_path, seed, kind, region, task_type, skip_invalid):
        path = tmp_path / f"fuzz.{fmt}"
        path.write_bytes(_random_file(fmt, random.Random(seed)))
        _validate(path, kind, region, task_type, skip_invalid)

    test.__doc__ = f"{FUZZ_EXAMPLES:,} generated {fmt} files: validation returns storable rows or a GeoAlignError."
    return test


test_any_jsonl_file_validates_or_is_refused = _validation_test("jsonl")
test_any_json_file_validates_or_is_refused = _validation_test("json")
test_any_csv_file_validates_or_is_refused = _validation_test("csv")
test_any_parquet_file_validates_or_is_refused = _validation_test("parquet")


# ------------------------------------------------------------------------------------------- whole imports


def _counts(engine):
    with session_scope(engine) as s:
        return {t.name: s.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


def _attempt(engine, path, kind, region, task_type=None, skip_invalid=False):
    before = _counts(engine)
    try:
        with session_scope(engine) as s:
            import_file(s, path, kind, region=region, task_type=task_type, skip_invalid=skip_invalid)
    except GeoAlignError as exc:
        _check_error(exc, path)
        assert _counts(engine) == before, "a failed import left rows behind"


@IMPORTS
@given(fmt=st.sampled_from(FORMATS), data=st.data(), kind=kinds, region=region_args, task_type=task_args,
       skip_invalid=st.booleans())
def test_any_file_imports_or_changes_nothing(loaded, tmp_path, fmt, data, kind, region, task_type, skip_invalid):
    path = tmp_path / f"fuzz.{fmt}"
    path.write_bytes(data.draw(FILES[fmt]))
    _attempt(loaded, path, kind, region, task_type, skip_invalid)


@IMPORTS
@given(data=rows, kind=kinds, region=region_args)
def test_any_jsonl_rows(loaded, tmp_path, data, kind, region):
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in data), encoding="utf-8")
    _attempt(loaded, path, kind, region)


@IMPORTS
@given(raw=st.binary(max_size=200), suffix=st.sampled_from([".jsonl", ".json", ".csv", ".parquet"]))
def test_any_bytes(loaded, tmp_path, raw, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(raw)
    _attempt(loaded, path, "examples", "en-GB-leeds")
