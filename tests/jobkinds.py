"""The "sleep" job kind of the queue tests; ``python -m tests.jobkinds worker ...`` is ``geoalign`` with it registered.

A sleep job may stand for a round (``round_id``): it settles its round as a round job would, so the queue's
cancel, reap and failure paths can be tested without training anything.
"""

from __future__ import annotations

import sys
import time

from align.jobs import JobContext, register
from align.rounds import settle_round
from cli.main import main


@register("sleep", settle=settle_round)
def sleep_job(ctx: JobContext) -> dict:
    """Sleep ``seconds`` in ``steps``, reporting progress and honouring cancel."""
    seconds = float(ctx.payload.get("seconds", 1.0))
    steps = max(1, int(ctx.payload.get("steps", 10)))
    started = time.monotonic()
    for step in range(1, steps + 1):
        ctx.check_cancel()
        time.sleep(seconds / steps)
        elapsed = time.monotonic() - started
        ctx.progress(stage="sleep", step=step, total=steps,
                     history_point={"step": step, "elapsed_s": round(elapsed, 3)})
    ctx.log(f"slept {elapsed:.2f} s in {steps} steps")
    return {"slept_s": round(elapsed, 3), "steps": steps}


if __name__ == "__main__":
    sys.exit(main())
