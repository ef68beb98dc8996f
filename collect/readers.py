"""Read import files into plain rows: JSONL, JSON, CSV, Parquet and Hugging Face ``save_to_disk`` directories.

Every row carries ``_row``, its 1-based position in the file (for CSV, the line number, header being line 1),
so validation messages can point at it.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from db.errors import NotFound, ValidationError

MAX_FILE_BYTES = 1024 * 1024 * 1024  # files are validated whole in memory; split anything larger
SUPPORTED = ".jsonl, .json, .csv, .parquet or a Hugging Face dataset directory (save_to_disk)"


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


def _jsonl(path: Path, text: str) -> list[dict[str, Any]]:
    rows, problems = [], []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append((str(path), i, None, f"invalid JSON: {exc.msg} (column {exc.colno})"))
            continue
        if not isinstance(obj, dict):
            problems.append((str(path), i, None, f"expected a JSON object, got {type(obj).__name__}"))
            continue
        rows.append(obj | {"_row": i})
    if problems:
        raise ValidationError(f"{path}: {len(problems)} unreadable rows, nothing imported", problems)
    return rows


def _json(path: Path, text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    if isinstance(data, dict):
        data = data["data"] if isinstance(data.get("data"), list) else [data]
    if not isinstance(data, list) or not all(isinstance(o, dict) for o in data):
        raise ValidationError(f"{path}: expected a JSON object, a list of objects, or {{\"data\": [...]}}")
    return [o | {"_row": i} for i, o in enumerate(data, start=1)]


def _csv(path: Path, text: str) -> list[dict[str, Any]]:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = []
        for r in reader:
            if None in r:  # more cells than header columns
                raise ValidationError(f"{path}: line {reader.line_num} has more cells than the header")
            rows.append({k: v for k, v in r.items() if k is not None} | {"_row": reader.line_num})
        return rows
    except csv.Error as exc:
        raise ValidationError(f"{path}: malformed CSV ({exc})") from exc


def _to_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_plain(r) | {"_row": i} for i, r in enumerate(records, start=1)]


def _plain(value: Any) -> Any:
    """numpy/pyarrow values → plain Python (lists, dicts, str, numbers, None)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise ValidationError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from exc
    return _to_rows(table.to_pylist())


def _hf_dataset(path: Path) -> list[dict[str, Any]]:
    from datasets import Dataset, DatasetDict, load_from_disk

    try:
        data = load_from_disk(str(path))
    except Exception as exc:  # datasets raises FileNotFoundError/ValueError variants for non-datasets
        raise ValidationError(f"{path}: not a Hugging Face dataset directory ({exc})") from exc
    if isinstance(data, DatasetDict):
        records = [r | {"_hf_split": name} for name, ds in data.items() for r in ds.to_list()]
    else:
        assert isinstance(data, Dataset)
        records = data.to_list()
    return _to_rows(records)


def read_records(path: Path | str) -> list[dict[str, Any]]:
    """Read ``path`` into a list of dicts, each with its 1-based ``_row``; clear errors for anything unreadable."""
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
