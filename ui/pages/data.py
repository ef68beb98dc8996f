"""The Data page: upload and import files with a validation report, download training datasets, write gold pairs.

The page functions are thin; ``import_upload``, ``export_bytes`` and ``collect.gold`` do the work and are tested
without Streamlit.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from collect.auth import CurrentUser, require
from collect.datasets import DatasetFilter, preference_rows, sft_rows
from collect.export import write_rows
from collect.gold import create_gold_pair, gold_pairs, prompt_options
from collect.ingest import KINDS, TASK_TYPES, ImportReport, import_file, rejects_jsonl
from collect.overview import region_codes
from collect.prompting import PROMPT_FORMATS
from collect.tags import ensure_default_tags
from db.errors import GeoAlignError, ValidationError
from db.session import session_scope
from ui.access import page_user, roles_of

UPLOAD_TYPES = ["jsonl", "json", "csv", "parquet"]


def import_upload(
    actor: CurrentUser | None,
    name: str,
    data: bytes,
    kind: str,
    region: str | None = None,
    task_type: str | None = None,
    dry_run: bool = True,
    skip_invalid: bool = False,
) -> ImportReport:
    """Import uploaded bytes as if they were the file ``name`` (its suffix picks the reader); with ``skip_invalid``
    the valid rows are imported and ``report.rejects`` holds the others."""
    require(actor, *roles_of("data"))
    suffix = Path(name).suffix.lower()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(name).name
        path.write_bytes(data)
        with session_scope() as session:
            ensure_default_tags(session)
            report = import_file(
                session, path, kind, region=region, task_type=task_type, dry_run=dry_run, source=Path(name).name,
                skip_invalid=skip_invalid,
            )
    report.file = Path(name).name if suffix else name
    # the temporary path means nothing to the uploader: name their file in the rejects too
    report.rejects = [(report.file, *reject[1:]) for reject in report.rejects]
    return report


def export_bytes(
    actor: CurrentUser | None, what: str, filters: DatasetFilter, fmt: str = "jsonl",
    prompt_format: str = "conversational",
) -> tuple[bytes, str, int]:
    """A dataset file's bytes, its download name and its row count."""
    require(actor, *roles_of("data"))
    with session_scope() as session:
        rows = sft_rows(session, filters, prompt_format) if what == "sft" else \
            preference_rows(session, filters, prompt_format)[0]
    name = f"geoalign-{what}.{fmt}"
    with tempfile.TemporaryDirectory() as tmp:
        path = write_rows(rows, Path(tmp) / name, fmt)
        return path.read_bytes(), name, len(rows)


def problems_frame(error: ValidationError) -> pd.DataFrame:
    return pd.DataFrame(error.problems, columns=["file", "row", "field", "problem"])


def _region_codes() -> list[str]:
    with session_scope() as session:
        return region_codes(session)


def _show_report(report: ImportReport) -> None:
    st.success(report.summary())
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Rows read", report.rows)
    c2.metric("Would import" if report.dry_run else "Imported", report.created)
    c3.metric("Duplicates skipped", report.duplicates_skipped)
    c4.metric("PII scrubbed", sum(report.pii.values()))
    if report.pii:
        st.caption(
            "Scrubbed per type (values are never stored): "
            + ", ".join(f"{k} {v}" for k, v in sorted(report.pii.items()))
        )
    if report.rejects:
        st.warning(f"{report.rejected} invalid rows were skipped; download them to fix and import again.")
        st.dataframe(
            pd.DataFrame([r[:4] for r in report.rejects], columns=["file", "row", "field", "problem"]),
            hide_index=True, use_container_width=True,
        )
        name = f"{Path(report.file).stem}.rejects.jsonl"
        st.download_button(f"Download the rejected rows ({name})", rejects_jsonl(report), file_name=name,
                           key="data_rejects_download")


def render_import(actor: CurrentUser) -> None:
    regions = _region_codes()
    if not regions:
        st.info("No regions yet: run `geoalign demo` or `geoalign import regions region.json` first.")
        return
    upload = st.file_uploader("File to import", type=UPLOAD_TYPES, key="data_upload")
    c1, c2, c3 = st.columns(3)
    kind = c1.selectbox(
        "What the file holds",
        KINDS,
        key="data_kind",
        format_func={"examples": "gold examples", "prompts": "prompts only", "preferences": "preference pairs"}.get,
    )
    region = c2.selectbox(
        "Region",
        [None, *regions],
        key="data_region",
        format_func=lambda r: "from the file's region column" if r is None else r,
    )
    task_type = c3.selectbox(
        "Task type",
        [None, *TASK_TYPES],
        key="data_task",
        format_func=lambda t: "from the file's task_type column" if t is None else t,
    )
    if upload is None:
        st.caption("JSONL, JSON, CSV or Parquet. Hugging Face dataset directories: `geoalign import … DIR`.")
        return
    skip_invalid = st.checkbox(
        "Skip invalid rows", key="data_skip_invalid",
        help="Import the valid rows and list the invalid ones for download, instead of importing nothing.",
    )
    b1, b2 = st.columns(2)
    dry, real = b1.button("Validate (dry run)", key="data_dry"), b2.button("Import", type="primary", key="data_go")
    if not (dry or real):
        return
    try:
        report = import_upload(actor, upload.name, upload.getvalue(), kind, region, task_type, dry_run=not real,
                               skip_invalid=skip_invalid)
    except ValidationError as exc:
        st.error(f"Nothing was imported: {str(exc).split(';')[0]}")
        if exc.problems:
            st.dataframe(problems_frame(exc), hide_index=True, use_container_width=True)
        return
    except GeoAlignError as exc:
        st.error(str(exc))
        return
    _show_report(report)


def render_export(actor: CurrentUser) -> None:
    regions = _region_codes()
    c1, c2, c3 = st.columns(3)
    what = c1.selectbox(
        "Dataset",
        ["preferences", "sft"],
        key="export_what",
        format_func={"preferences": "preferences (prompt/chosen/rejected)", "sft": "SFT (prompt/completion)"}.get,
    )
    fmt = c2.selectbox("Format", ["jsonl", "parquet"], key="export_fmt")
    splits = c3.multiselect(
        "Splits",
        ["train", "val"],
        default=["train"],
        key="export_splits",
        help="The test split is held out for evaluation and cannot be exported for training.",
    )
    c4, c5 = st.columns([2, 1])
    chosen = c4.multiselect("Regions (empty: all)", regions, key="export_regions")
    prompt_format = c5.selectbox(
        "Prompt format", list(PROMPT_FORMATS), key="export_prompt_format",
        help="conversational: TRL's chat messages (system context + brief, assistant replies); text: the plain "
             "'Region: … Copy:' prompt; raw: the brief as stored.",
    )
    if not splits:
        st.warning("Pick at least one split.")
        return
    try:
        data, name, n = export_bytes(
            actor, what, DatasetFilter(splits=tuple(splits), regions=tuple(chosen) or None), fmt, prompt_format
        )
    except ValidationError as exc:
        st.info(str(exc))
        return
    st.download_button(f"Download {n} rows ({name})", data, file_name=name, key="export_download")


def render_gold(actor: CurrentUser) -> None:
    regions = _region_codes()
    if not regions:
        st.caption("Gold pairs need a region with prompts: import some first.")
        return
    c1, c2 = st.columns([1, 3])
    region = c1.selectbox("Region", regions, key="gold_region")
    with session_scope() as session:
        briefs = dict(prompt_options(session, actor, region))
    if not briefs:
        st.caption(f"No prompts in {region} yet.")
    else:
        prompt_id = c2.selectbox("Brief", list(briefs), key="gold_prompt", format_func=lambda p: briefs[p][:120],
                                 help="Type to search the briefs.")
        better = st.text_area("Better output", key="gold_better")
        worse = st.text_area("Worse output", key="gold_worse")
        if st.button("Create gold pair", key="gold_create"):
            try:
                with session_scope() as session:
                    pair_id = create_gold_pair(session, actor, prompt_id, better, worse)
            except GeoAlignError as exc:
                st.error(str(exc))
            else:
                st.success(f"Gold pair {pair_id} is stored; reviewers of {region} will meet it in their queues.")
    with session_scope() as session:
        pairs = gold_pairs(session, actor, region)
    if pairs:
        st.dataframe(pd.DataFrame(pairs), hide_index=True, use_container_width=True,
                     column_config={"accuracy": st.column_config.NumberColumn(format="percent")})
    else:
        st.caption(f"No gold pairs in {region} yet.")


def render() -> None:
    actor = page_user("data")
    st.title("Data")
    tab_import, tab_export = st.tabs(["Import", "Export"])
    with tab_import:
        render_import(actor)
    with tab_export:
        render_export(actor)
    with st.expander("Gold pairs: outputs with a known answer, to measure reviewers' accuracy"):
        render_gold(actor)
