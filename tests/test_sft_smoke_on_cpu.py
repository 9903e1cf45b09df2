# Copyright 2026 The dagrpo-verl Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""The SFT baseline end to end on the CPU: ``recipes/run_sft_baseline.sh`` -> evaluator -> plots.

The recipe itself runs (its conversion step, then ``torchrun -m verl.trainer.sft_trainer``: verl
0.9.1's SFT trainer, FSDP2 engine over gloo, one process) on the embedded tiny Qwen2 and eight
synthetic prompts whose expert solutions it memorises, with the CPU settings of ``+platform=cpu_sft``
and the CPU platform of ``dagrpo_verl.cpu``. Nothing is replaced: the checkpoint verl writes is
what ``python -m dagrpo_verl.eval`` evaluates (beside the untrained model, in one table) and the
metrics file verl's file logger writes is what ``python -m dagrpo_verl.eval.plot`` draws.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from dagrpo_verl.cpu.smoke import CONFIG_DIR, cpu_env

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
STEPS = 60  # one batch of all 8 conversations per step; the 10% warm-up makes step 1's update 0


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The recipe's output directory after STEPS steps, and the untrained model."""
    from dagrpo_verl.cpu.models import build_tiny_qwen2
    from dagrpo_verl.data.prepare import convert_rows, write_rows
    from dagrpo_verl.data.synthetic import make_rows

    tmp = tmp_path_factory.mktemp("sft_smoke")
    model = build_tiny_qwen2(tmp / "model")
    rows = make_rows(8, seed=0, split="train")
    write_rows(convert_rows(rows).rows, tmp / "train.parquet")  # what `prepare` writes
    out = tmp / "out"
    env = cpu_env()
    env.update(
        PYTHON=sys.executable,
        MODEL_PATH=str(model),
        TRAIN_FILE=str(tmp / "train.parquet"),
        OUT_DIR=str(out),
        GPUS="1",
        SFT_MAX_LENGTH="64",
        MAX_TOKEN_LEN_PER_GPU="512",
    )
    env.pop("DRY_RUN", None)
    overrides = [
        f"hydra.searchpath=[file://{CONFIG_DIR}]",
        "+platform=cpu_sft",
        "data.train_batch_size=8",
        "optim.lr=3e-2",
        f"trainer.total_epochs={STEPS}",
        "trainer.save_freq=-1",
        "trainer.logger=[console,file]",
    ]
    proc = subprocess.run(
        ["bash", str(REPO / "recipes" / "run_sft_baseline.sh"), *overrides],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return {"out": out, "model": model, "rows": rows, "log": proc.stdout}


def test_recipe_trains_on_the_anchors_and_checkpoints(run):
    out = run["out"]
    report = json.loads((out / "sft_train.report.json").read_text())
    assert (report["written"], report["dropped"]) == (8, 0)
    assert "sft: wrote 8 of 8 rows" in run["log"]

    steps = [json.loads(line) for line in (out / "verl_metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(1, STEPS + 1))
    loss = [s["data"]["train/loss"] for s in steps]
    assert sum(loss[-3:]) / 3 < 0.5 * loss[0], loss  # the eight solutions are being memorised
    assert all(s["data"]["train/grad_norm"] > 0 for s in steps)

    assert (out / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == str(STEPS)
    ckpt = out / "checkpoints" / f"global_step_{STEPS}"
    assert (ckpt / "model_world_size_1_rank_0.pt").is_file()
    assert (ckpt / "huggingface" / "model.safetensors").is_file()  # checkpoint.save_contents has hf_model


def _anchor_nll(model_dir: Path, rows: list[dict]) -> float:
    """Mean token NLL of the anchors given their prompts, computed by transformers alone."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    total, count = 0.0, 0
    for row in rows:
        prompt = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        ids = tok(prompt + row["extra_info"]["anchor"], return_tensors="pt").input_ids
        n_prompt = len(tok(prompt).input_ids)
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1], -1)
        target = ids[0, 1:]
        nll = -logp[torch.arange(len(target)), target][n_prompt - 1 :]
        total, count = total + float(nll.sum()), count + len(nll)
    return total / count


def test_checkpoint_loads_as_hf_model_and_merges_the_same(run, tmp_path):
    from safetensors.torch import load_file

    from dagrpo_verl.eval.checkpoint import resolve_model

    root = run["out"] / "checkpoints"
    hf_dir = Path(resolve_model(str(root), tmp_path / "unused"))
    assert hf_dir == root / f"global_step_{STEPS}" / "huggingface"
    trained, base = _anchor_nll(hf_dir, run["rows"]), _anchor_nll(run["model"], run["rows"])
    assert trained < 0.5 * base, (trained, base)

    # a checkpoint saved without hf_model: verl's model merger rebuilds the same weights (in bfloat16)
    shards_only = tmp_path / "global_step_x"
    shutil.copytree(hf_dir.parent, shards_only)
    (shards_only / "huggingface" / "model.safetensors").unlink()
    merged = Path(resolve_model(str(shards_only), tmp_path / "merged"))
    assert merged == tmp_path / "merged"
    saved, rebuilt = load_file(hf_dir / "model.safetensors"), load_file(merged / "model.safetensors")
    assert saved.keys() == rebuilt.keys()
    for key in saved:
        torch.testing.assert_close(rebuilt[key].float(), saved[key].float(), rtol=1e-2, atol=1e-2)


def test_eval_table_holds_the_sft_run_beside_the_base_model(run, tmp_path):
    from dagrpo_verl.eval import cli, table

    problems = tmp_path / "math.parquet"  # the training prompts, named as a benchmark the evaluator knows
    pd.DataFrame([{**r, "data_source": "math500"} for r in run["rows"]]).to_parquet(problems)
    common = ["--data", str(problems), "--backend", "hf", "--temperature", "0", "--max-new-tokens", "24"]
    common += ["--samples", "all=1", "--no-progress"]
    models = {"Base": str(run["model"]), "SFT": str(run["out"] / "checkpoints")}
    for name, model in models.items():
        assert cli.main(["--model", model, "--name", name, "--out", str(tmp_path / name), *common]) == 0
    scores = {name: pd.read_csv(tmp_path / name / "scores.csv").iloc[0] for name in models}
    samples = {
        name: [json.loads(line) for line in (tmp_path / name / "samples.jsonl").read_text().splitlines()]
        for name in models
    }
    # the untrained model rambles to the token budget; the SFT model answers in the anchors' format and stops
    boxed = {name: sum("\\boxed{" in s["response"] for s in samples[name]) for name in models}
    assert boxed["SFT"] >= 6 and boxed["Base"] == 0, boxed
    assert scores["SFT"].truncated_frac < scores["Base"].truncated_frac, scores
    run_info = json.loads((tmp_path / "SFT" / "run.json").read_text())
    assert run_info["model"].endswith(f"global_step_{STEPS}")  # the evaluated checkpoint is pinned

    assert table.main([str(tmp_path / "Base"), str(tmp_path / "SFT"), "--md", str(tmp_path / "t.md")]) == 0
    rows = [line for line in (tmp_path / "t.md").read_text().splitlines() if line.startswith(("| Base", "| SFT"))]
    assert len(rows) == 2


def test_plot_draws_the_sft_run_beside_an_rl_run(run, tmp_path, capsys):
    from dagrpo_verl.eval import plot

    rl = tmp_path / "grpo.jsonl"  # an RL run's metrics as verl's file logger writes them
    rl.write_text(
        "".join(
            json.dumps({"step": s, "data": {"critic/score/mean": 0.1 * s, "actor/grad_norm": 1.0, "actor/entropy": 2}})
            + "\n"
            for s in (1, 2, 3)
        )
    )
    assert plot.main([f"SFT={run['out']}", f"GRPO={rl}", "--out", str(tmp_path / "plots")]) == 0
    assert {"training_dynamics.png", "sft_dynamics.png", "metrics.csv"} <= {
        p.name for p in (tmp_path / "plots").iterdir()
    }
    sft = plot.load_metrics(run["out"])
    logged = [json.loads(line)["data"]["train/loss"] for line in (run["out"] / "verl_metrics.jsonl").open()]
    assert sft["train/loss"].tolist() == logged
    csv = pd.read_csv(tmp_path / "plots" / "metrics.csv")
    assert csv[csv.run == "SFT"]["train/loss"].tolist() == logged
    # SFT has no reward curve: the panel says so instead of leaving the run out
    reward, grad_norm = plot.TRAINING_PANELS[0], plot.TRAINING_PANELS[3]
    assert plot.panel_key(sft, reward) is None and plot.is_sft_run(sft)
    assert plot.not_logged_label(sft, "SFT") == "SFT: SFT run, no rollouts (not logged)"
    assert plot.panel_key(sft, grad_norm) == "train/grad_norm"
    assert not plot.is_sft_run(plot.load_metrics(rl))
