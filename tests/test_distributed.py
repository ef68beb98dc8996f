"""Stage runners under ``accelerate launch`` with two CPU processes: world size 2, each rank sees half the batches."""

import json
import math
import re

from align.config import load_config
from align.rounds import launch_stage
from align.stages import StageInputs, run_stage


def _inputs(tmp_path, tiny_model, name):
    workdir = tmp_path / name
    (workdir / "data").mkdir(parents=True)
    rows = [{"prompt": f"Region: Leeds (en-GB)\nTask: social media post\nBrief: offer {i}\nCopy:\n",
             "completion": f"Ey up Leeds, proper deal {i} at Kirkgate Market this Saturday!"} for i in range(24)]
    (workdir / "data" / "sft_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = load_config({"round": {"report_to": "none"},
                          "sft": {"num_train_epochs": 1, "per_device_train_batch_size": 4, "save_strategy": "no"}})
    return StageInputs(stage="sft", workdir=str(workdir), config=config.raw, base_model=str(tiny_model),
                       adapter_in=None)


def test_sft_under_accelerate_on_two_cpu_processes(tmp_path, tiny_model):
    single = run_stage(_inputs(tmp_path, tiny_model, "single"))
    assert single.metrics["world_size"] == 1 and single.metrics["rank_batches_per_epoch"] == 24 // 4

    inputs = _inputs(tmp_path, tiny_model, "dist")
    result = launch_stage(inputs, num_processes=2)
    assert result.metrics["world_size"] == 2 and result.metrics["rank"] == 0
    assert result.metrics["rank_batches_per_epoch"] == math.ceil(24 / (4 * 2))  # half of the single-process run
    assert result.metrics["steps"] == single.metrics["steps"] // 2
    assert (inputs.stage_dir / "adapter" / "adapter_config.json").exists()
    ranks = [json.loads(m) for m in re.findall(r"rank done: (\{.*\})", (inputs.stage_dir / "launch.log").read_text())]
    assert sorted(r["rank"] for r in ranks) == [0, 1]
    assert all(r["rank_batches_per_epoch"] == 3 for r in ranks)
