"""Read import files into plain rows: JSONL, JSON, CSV, Parquet and Hugging Face ``save_to_disk`` directories.

Every row carries ``_row``, its 1-based position in the file (for CSV, the line number, header being line 1),
so validation messages can point at it. Whatever the bytes, reading either returns rows or raises a
``ValidationError`` naming the file (and the row where there is one): deep nesting, numbers too long for Python,
duplicate columns and damaged files included.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from db.errors import NotFound, ValidationError

MAX_FILE_BYTES = 1024 * 1024 * 1024  # files are validated whole in memory; split anything larger
# Conversational rows nest three deep (row > messages > message); far deeper is never data, and stopping early
# keeps every later step (repr in messages, JSON columns, the rejects file) clear of Python's recursion limit.
MAX_NESTING = 32
SUPPORTED = ".jsonl, .json, .csv, .parquet or a Hugging Face dataset directory (save_to_disk)"

Problem = tuple[str, int | None, str | None, str]
# A row that could not be read: its problem and what the file held there (the line, or the record as parsed).
Unreadable = tuple[Problem, Any]


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ValidationError(f"{path}: not UTF-8 (invalid byte at line {line}, offset {exc.start}); "
                              "re-save the file as UTF-8") from exc


def too_deep(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether lists and dicts in ``value`` nest more than ``limit`` levels (a flat row is one level)."""
    stack = [(value, 1)]
    while stack:  # iterative, so the check itself cannot hit the recursion limit
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def _nesting_message() -> str:
    return f"nested more than {MAX_NESTING} levels deep"


def _long_number_message() -> str:
    return f"holds a number with more than {sys.get_int_max_str_digits()} digits"


def _line_of_trouble(text: str) -> int | None:
    """The line where JSON ``text`` first nests too deep or holds a too-long number (for errors only: slow)."""
    depth = digits = 0
    line, in_string, escaped = 1, False, False
    limit = sys.get_int_max_str_digits()
    for ch in text:
        if ch == "\n":
            line += 1
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
            continue
        digits = digits + 1 if "0" <= ch <= "9" else 0
        if ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if depth > MAX_NESTING or digits > limit:
            return line
    return None


def _parse_json(text: str) -> tuple[Any, str | None]:
    """``(value, None)``, or ``(None, why)`` for text that is not JSON Python can hold."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    except RecursionError:
        return None, _nesting_message()
    except ValueError:  # int() refuses more digits than sys.get_int_max_str_digits()
        return None, _long_number_message()
    return value, None


def _jsonl(path: Path, text: str) -> tuple[list[dict[str, Any]], list[Unreadable]]:
    rows, bad = [], []
    # Only "\n" ends a JSON Lines record: str.splitlines() would also cut at U+2028, U+0085 and other characters
    # that may stand unescaped inside a JSON string. A trailing "\r" is JSON whitespace.
    for i, line in enumerate(text.split("\n"), start=1):
        if not line.strip(" \t\r"):
            continue
        obj, why = _parse_json(line)
        if why is not None:
            why = why.replace("line 1, column", "column")
        elif not isinstance(obj, dict):
            why = f"expected a JSON object, got {type(obj).__name__}"
        elif too_deep(obj):
            why = _nesting_message()
        if why is None:
            rows.append(obj | {"_row": i})
        else:
            bad.append(((str(path), i, None, why), line))
    return rows, bad


def _json(path: Path, text: str) -> tuple[list[dict[str, Any]], list[Unreadable]]:
    data, why = _parse_json(text)
    if why is not None:
        line = _line_of_trouble(text) if not why.startswith("invalid JSON") else None
        where = f"line {line}: " if line is not None else ""
        raise ValidationError(f"{path}: {where}{why}; nothing imported", [(str(path), line, None, why)])
    if isinstance(data, dict):
        data = data["data"] if isinstance(data.get("data"), list) else [data]
    if not isinstance(data, list) or not all(isinstance(o, dict) for o in data):
        raise ValidationError(f"{path}: expected a JSON object, a list of objects, or {{\"data\": [...]}}")
    rows, bad = [], []
    for i, obj in enumerate(data, start=1):
        if too_deep(obj):
            bad.append(((str(path), i, None, _nesting_message()), None))
        else:
            rows.append(obj | {"_row": i})
    return rows, bad


def _refuse_duplicate_columns(path: Path, names: list[str], line: int | None) -> None:
    repeated = {name: n for name, n in Counter(names).items() if n > 1 and name}
    if repeated:
        where = f"line {line}: " if line is not None else ""
        shown = ", ".join(f"{name!r} ({n} times)" for name, n in repeated.items())
        raise ValidationError(f"{path}: {where}duplicate column {shown}; rename or drop the copies so no value is "
                              "silently lost", [(str(path), line, name, f"column appears {n} times")
                                                for name, n in repeated.items()])


def _csv(path: Path, text: str) -> tuple[list[dict[str, Any]], list[Unreadable]]:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        _refuse_duplicate_columns(path, list(reader.fieldnames or []), 1)
        rows, bad = [], []
        for r in reader:
            cells = {k: v for k, v in r.items() if k is not None}
            if None in r:  # more cells than header columns: which column a value belongs to is unknown
                bad.append(((str(path), reader.line_num, None, f"{len(cells) + len(r[None])} cells, more than "
                             f"the header's {len(cells)}"), cells | {"_extra_cells": r[None]}))
                continue
            rows.append(cells | {"_row": reader.line_num})
        return rows, bad
    except csv.Error as exc:
        raise ValidationError(f"{path}: malformed CSV ({exc})") from exc


def _to_rows(path: Path, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Unreadable]]:
    rows, bad = [], []
    for i, record in enumerate(records, start=1):
        if too_deep(record):
            bad.append(((str(path), i, None, _nesting_message()), None))
        else:
            rows.append(_plain(record) | {"_row": i})
    return rows, bad


def _plain(value: Any) -> Any:
    """numpy/pyarrow values → plain Python (lists, dicts, str, numbers, None)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _parquet(path: Path) -> tuple[list[dict[str, Any]], list[Unreadable]]:
    import pyarrow.parquet as pq  # lazy: pyarrow loads for Parquet files only, not on `geoalign --help`

    try:
        table = pq.read_table(path)
        _refuse_duplicate_columns(path, table.column_names, None)
        records = table.to_pylist()
    except ValidationError:
        raise
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file or unconvertible values
        raise ValidationError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from exc
    return _to_rows(path, records)


def _hf_dataset(path: Path) -> tuple[list[dict[str, Any]], list[Unreadable]]:
    from datasets import Dataset, DatasetDict, load_from_disk  # lazy: datasets is slow to import; only this needs it

    try:
        data = load_from_disk(str(path))
    except Exception as exc:  # datasets raises FileNotFoundError/ValueError variants for non-datasets
        raise ValidationError(f"{path}: not a Hugging Face dataset directory ({exc})") from exc
    try:
        if isinstance(data, DatasetDict):
            records = [r | {"_hf_split": name} for name, ds in data.items() for r in ds.to_list()]
        else:
            assert isinstance(data, Dataset)
            records = data.to_list()
    except Exception as exc:  # damaged Arrow files fail only when their values are converted
        raise ValidationError(f"{path}: not a readable dataset ({type(exc).__name__}: {exc})") from exc
    return _to_rows(path, records)


def read_rows(path: Path | str) -> tuple[list[dict[str, Any]], list[Unreadable]]:
    """The readable rows of ``path`` and, apart, the rows that could not be read (a broken JSON line, a row
    nested too deep); anything wrong with the file as a whole raises ``ValidationError``."""
    path = Path(path)
    if not path.exists():
        raise NotFound(f"{path}: file not found")
    size = _size(path)
    if size > MAX_FILE_BYTES:
        raise ValidationError(f"{path}: {size / 2**20:.0f} MiB is over the {MAX_FILE_BYTES // 2**20} MiB limit; "
                              "split it into smaller files")
    if path.is_dir():
        if any((path / marker).exists() for marker in ("dataset_info.json", "dataset_dict.json", "state.json")):
            return _hf_dataset(path)
        raise ValidationError(f"{path}: is a directory but not a Hugging Face dataset; expected {SUPPORTED}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _parquet(path)
    if suffix not in (".jsonl", ".json", ".csv"):
        raise ValidationError(f"{path}: unsupported file type {suffix or '(none)'}; expected {SUPPORTED}")
    text = _decode(path, path.read_bytes())
    return {".jsonl": _jsonl, ".json": _json, ".csv": _csv}[suffix](path, text)


def read_records(path: Path | str) -> list[dict[str, Any]]:
    """Read ``path`` into a list of dicts, each with its 1-based ``_row``; clear errors for anything unreadable."""
    rows, bad = read_rows(path)
    if bad:
        raise ValidationError(f"{path}: {len(bad)} unreadable rows, nothing imported", [p for p, _ in bad])
    return rows
