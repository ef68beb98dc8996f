"""Run one stage from its ``inputs.json``, e.g. under accelerate on two CPU processes:

    accelerate launch --cpu --num_processes 2 -m align.stages .geoalign/rounds/round-00001/stages/sft/inputs.json

``align.rounds`` writes the inputs file and launches this when the round config says ``launcher: accelerate``.
With ``GEOALIGN_JOB_ID`` set, rank 0 reports progress to that job and every rank stops when it is cancelled.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from align.jobs import JobContext
from align.stages.common import StageInputs
from align.stages.progress import StageProgress
from align.stages.runner import run_stage
from db.session import get_engine
from db.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m align.stages INPUTS_JSON", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    inputs = StageInputs(**json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    report = cancelled = None
    job_id = get_settings().job_id
    if job_id is not None:
        ctx = JobContext(get_engine(), job_id, {}, None)
        report, cancelled = ctx.progress, ctx.cancel_requested
    result = run_stage(inputs, [StageProgress(inputs.stage, report, cancelled)])
    logging.getLogger("align.stages").info("rank done: %s", json.dumps(result.metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
