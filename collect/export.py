"""Write datasets to disk: Hugging Face ``save_to_disk`` directories, JSONL, Parquet or CSV, published atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
from datasets import Dataset

from db.errors import ValidationError

FORMATS = ("hf", "jsonl", "parquet", "csv")


def infer_format(path: Path, fmt: str | None) -> str:
    """The explicit format, or the one the path's suffix names (a path without suffix is an HF directory)."""
    if fmt:
        if fmt not in FORMATS:
            raise ValidationError(f"unknown format {fmt!r}; choose from {FORMATS}")
        return fmt
    return {".jsonl": "jsonl", ".parquet": "parquet", ".csv": "csv", "": "hf"}.get(Path(path).suffix.lower()) or "hf"


def write_rows(rows: list[dict], path: Path, fmt: str | None = None) -> Path:
    """Write ``rows`` to ``path``; readers see the old file or the complete new one, never a partial write."""
    path = Path(path)
    fmt = infer_format(path, fmt)
    if not rows:
        raise ValidationError("nothing to export: no rows match the filters")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        target = staging / "out"
        if fmt == "jsonl":
            with open(target, "w", encoding="utf-8") as fh:
                for r in rows:
                    fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
        elif fmt == "csv":
            pd.DataFrame(rows).to_csv(target, index=False)
        elif fmt == "parquet":
            Dataset.from_list(rows).to_parquet(str(target))
        else:
            Dataset.from_list(rows).save_to_disk(str(target))
        if path.is_dir():  # a directory cannot be replaced in one step: move the old one aside first
            os.replace(path, staging / "old")
        os.replace(target, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
