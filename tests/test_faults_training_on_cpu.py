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
"""Faults during training, through verl's real trainer on the CPU (docs/reliability.md).

One DaGRPO run of 6 steps (``python -m dagrpo_verl.main +platform=cpu``: verl 0.9.1's v1 trainer,
TransferQueue, reward loop, FSDP2 engine; the ``hf_cpu`` rollout backend stands in for vLLM/SGLang,
see docs/cpu.md), 2 prompts x 4 samples per step in data order, every group with its anchor, and a
real HTTP judge (``judge.backend=openai`` against :class:`~dagrpo_verl.judge.testing.LocalJudgeServer`
on 127.0.0.1, on-disk judge cache, anchors judged too). Three faults, each bounded in time:

1. **A data row the reward cannot read** (row 1: a null ground truth, steps 1 and 6): its samples
   score 0 with ``reward_error`` = 1 and a missing judge score; ``reward/errors`` counts them; the run
   goes on (4 of 8 samples is within ``reward_kwargs.max_error_frac=0.5``).
2. **The judge endpoint dies during step 2 and comes back for step 4**: its first step-2 request hangs,
   then the server is stopped (connections refused) until step 3 has been logged. Steps 2 and 3 miss
   every score (``dagrpo/missing_scores``, ``judge/failures``), ``on_missing_score=mask`` masks every
   advantage, the generation time stays within the judge deadline, and step 4 has every score again.
3. **SIGKILL after the step-4 checkpoint** (once step 5 is logged; the driver, Ray and every worker),
   then the same command again (``trainer.resume_mode=auto``): the run resumes at step 4, draws the
   prompts of step 5 again (verl's dataloader state in ``global_step_4/data.pt``), with the settings
   saved next to it (``dagrpo_settings.json``, :mod:`dagrpo_verl.integration.resume`), gets the anchors' judge
   scores from the on-disk cache (no anchor request reaches the judge again), and appends steps 5-6
   to the same metrics file.

About 3.5 minutes on 2 cores (measured 197 s: two trainer start-ups); every wait has a timeout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import torch

from dagrpo_verl.cpu.models import build_tiny_qwen2
from dagrpo_verl.cpu.smoke import cpu_env
from dagrpo_verl.data.synthetic import make_rows
from dagrpo_verl.integration.resume import SETTINGS_FILE
from dagrpo_verl.judge.testing import ChatRequest, LocalJudgeServer, Reply, verdict_line

ROWS, BATCH, N = 10, 2, 4  # 10 prompts, 2 per step, 4 samples per prompt: 8 samples per step
STEPS, SAVE_FREQ = 6, 2
BAD_ROW = 1  # null ground truth: steps 1 and 6 (second epoch)
OUTAGE_ROWS = {2, 3, 4, 5}  # the prompts of steps 2 and 3
KILL_AFTER_STEP = 5
DEADLINE_S = 4.0  # judge.deadline_s
ROLLOUT_SCORE, ANCHOR_SCORE = 2.0, 10.0  # the anchor beats every rollout by more than delta = 3
RUN_TIMEOUT_S = 900
ROW_TAG = re.compile(r"\[row (\d+)\]")


def _data(path: Path) -> list[dict]:
    """The synthetic task; questions tagged ``[row i]`` so the judge server knows the prompt of a request."""
    rows = make_rows(ROWS, seed=0, split="train", terms=2, max_operand=99, anchor_style="answer")
    for i, row in enumerate(rows):
        row["extra_info"]["question"] = f"[row {i}] {row['extra_info']['question']}"
    rows[BAD_ROW]["reward_model"]["ground_truth"] = None
    pd.DataFrame(rows).to_parquet(path)
    return rows


class Judge:
    """The judge endpoint of the run: a server on one port, killed and brought back by this test."""

    def __init__(self, anchors: dict[int, str]):
        self.anchors = anchors
        self.phase = "A"
        self.log: list[tuple[str, int, bool]] = []  # (phase, row, is the candidate the row's anchor)
        self.dying = threading.Event()
        self.back = False
        self.server = LocalJudgeServer(self.rule).start()
        self.port = self.server.port

    def rule(self, request: ChatRequest) -> Reply:
        row = int(ROW_TAG.search(request.user).group(1))
        is_anchor = request.candidate.strip() == self.anchors[row].strip()
        self.log.append((self.phase, row, is_anchor))
        if row in OUTAGE_ROWS and not self.back:
            self.dying.set()  # the endpoint dies with this request in flight (and any other until it is down)
            return Reply(delay_s=60.0)
        return Reply(content=f"Checked.\n{verdict_line(ANCHOR_SCORE if is_anchor else ROLLOUT_SCORE)}")

    def die(self) -> None:
        self.server.stop()

    def come_back(self) -> None:
        self.back = True
        self.server = LocalJudgeServer(self.rule, port=self.port).start()

    def rows(self, phase: str, anchors: bool) -> set[int]:
        return {row for p, row, is_anchor in self.log if p == phase and is_anchor == anchors}


def _steps(path: Path) -> list[tuple[int, dict]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [(entry["step"], entry["data"]) for entry in map(json.loads, lines)]


def _wait_for_step(path: Path, step: int, proc: subprocess.Popen, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while not any(s == step for s, _ in _steps(path)):
        assert proc.poll() is None, f"the run ended (rc={proc.returncode}) before step {step} was logged"
        assert time.monotonic() < end, f"step {step} not logged within {timeout_s:.0f} s"
        time.sleep(0.05)


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and everything it started (Ray's processes included), as a node failure would."""
    driver = _process(proc.pid)  # None: the driver is gone already (its children were reparented)
    family = [proc.pid] + ([child.pid for child in driver.children(recursive=True)] if driver else [])
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=60)
    psutil.wait_procs([p for p in map(_process, family) if p is not None], timeout=60)


def _process(pid: int):
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


@pytest.mark.slow
def test_judge_outage_reward_errors_and_a_killed_run_resumed(tmp_path):
    rows = _data(tmp_path / "train.parquet")
    model = build_tiny_qwen2(tmp_path / "model")
    metrics_path, ckpt = tmp_path / "metrics.jsonl", tmp_path / "ckpt"
    judge = Judge({i: row["extra_info"]["anchor"] for i, row in enumerate(rows)})
    judge_key = "reward.custom_reward_function.reward_kwargs.judge"
    command = [
        sys.executable, "-m", "dagrpo_verl.main", "+platform=cpu",
        f"data.train_files={tmp_path / 'train.parquet'}", f"data.val_files={tmp_path / 'train.parquet'}",
        f"data.train_batch_size={BATCH}", "data.shuffle=false",
        "data.max_prompt_length=64", "data.max_response_length=16",
        f"actor_rollout_ref.model.path={model}",
        f"actor_rollout_ref.rollout.n={N}", "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={BATCH}",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
        "algorithm.dagrpo.anchor.trigger=always", "algorithm.dagrpo.anchor.judge_anchors=true",
        "algorithm.dagrpo.on_missing_score=mask",
        f"{judge_key}.backend=openai", f"+{judge_key}.base_url=http://127.0.0.1:{judge.port}/v1",
        f"+{judge_key}.model=judge",
        f"+{judge_key}.cache_dir={tmp_path / 'judge_cache'}", f"+{judge_key}.deadline_s={DEADLINE_S}",
        f"+{judge_key}.timeout_s=2", f"+{judge_key}.connect_timeout_s=1", f"+{judge_key}.max_retries=4",
        "+reward.custom_reward_function.reward_kwargs.max_error_frac=0.5",
        f"trainer.total_training_steps={STEPS}", f"trainer.save_freq={SAVE_FREQ}", "trainer.resume_mode=auto",
        "trainer.val_before_train=false", "trainer.test_freq=-1", "trainer.logger=[console,file]",
        f"trainer.default_local_dir={ckpt}",
    ]  # fmt: skip
    env = cpu_env()
    env["VERL_FILE_LOGGER_PATH"] = str(metrics_path)

    # ---- run A: reward errors at step 1, judge outage at steps 2-3, killed once step 5 is logged
    with open(tmp_path / "run_a.log", "w") as log:
        run_a = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        start = time.monotonic()
        while not judge.dying.wait(0.05):  # the first step-2 request arrived: the endpoint dies
            assert run_a.poll() is None, f"run A ended (rc={run_a.returncode}) before step 2"
            assert time.monotonic() - start < RUN_TIMEOUT_S, "step 2 never reached the judge"
        judge.die()
        _wait_for_step(metrics_path, 3, run_a, RUN_TIMEOUT_S)
        judge.come_back()
        _wait_for_step(metrics_path, KILL_AFTER_STEP, run_a, RUN_TIMEOUT_S)
    finally:
        _kill_tree(run_a)
    output_a = (tmp_path / "run_a.log").read_text()
    before = _steps(metrics_path)
    assert [step for step, _ in before] == [1, 2, 3, 4, 5], output_a[-3000:]
    a = dict(before)

    # 1. the unreadable row: counted, not raised; the run went on
    assert a[1]["reward/errors"] == N  # the row's 3 rollouts and its anchor (which replaced the 4th)
    # its group's rewards are all 0 (every sample scored 0 on the error), so no advantage needs its judge scores:
    # none counts as missing, and a sample the reward could not score is not sent to the judge (see `judged` below)
    assert a[1]["dagrpo/missing_scores"] == 0
    assert all(a[s]["reward/errors"] == 0 for s in (2, 3, 4, 5))
    assert all(a[s]["reward/grade_timeouts"] == 0 and a[s]["reward/grade_errors"] == 0 for s in a)
    assert "raised while being scored" in output_a and "GroundTruthError" in output_a

    # 2. the outage: every score missing at steps 2-3, masked, within the deadline; all back at step 4
    samples = BATCH * N
    for step in (2, 3):
        assert a[step]["dagrpo/missing_scores"] == samples, step
        # every judged item failed: each group's samples, judged once the group is mixed (anchors included)
        assert a[step]["judge/failures"] == a[step]["judge/requests"] == samples, step
        assert a[step]["dagrpo/pos_masked_frac"] == 1.0 and a[step]["dagrpo/neg_masked_frac"] == 1.0, step
        assert a[step]["actor/grad_norm"] == 0.0, step  # on_missing_score=mask: nothing trained on a guess
        # bounded: the rollouts' judge calls, then the anchor's, each within deadline_s (+ scheduling slack)
        assert a[step]["timing_s/gen"] <= a[4]["timing_s/gen"] + 2 * DEADLINE_S + 5.0, step
    assert a[3]["judge/connection_errors"] >= a[3]["judge/requests"]  # the closed port refused every attempt
    for step in (4, 5):
        assert a[step]["dagrpo/missing_scores"] == 0 and a[step]["judge/failures"] == 0, step
        assert a[step]["dagrpo/pos_masked_frac"] == 0.0, step  # anchor 10 vs rollouts 2: kept
        assert a[step]["actor/grad_norm"] > 0.0, step
    judged = judge.rows("A", anchors=True)
    assert {0, 6, 7, 8, 9} <= judged and not judged & {BAD_ROW, 4, 5}  # step 3 found the port closed

    # 3a. what verl saved: the step-4 checkpoint with the dataloader after 4 batches
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == "4"
    loader = torch.load(ckpt / "global_step_4" / "data.pt", weights_only=False)
    assert loader["_num_yielded"] == 4 and loader["_sampler_iter_state"]["samples_yielded"] == 4 * BATCH
    saved = json.loads((ckpt / "global_step_4" / SETTINGS_FILE).read_text())  # what verl does not save
    assert saved["algorithm.dagrpo.on_missing_score"] == "mask" and saved["algorithm.dagrpo.delta"] == 3.0
    assert saved[f"{judge_key}.base_url"] == f"http://127.0.0.1:{judge.port}/v1"

    # ---- run B: the same command after the kill
    judge.phase = "B"
    try:
        proc = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    finally:
        judge.server.stop()
    output_b = proc.stdout + proc.stderr
    assert proc.returncode == 0, output_b[-5000:]
    assert re.search(r"Resuming from \S*global_step_4", output_b), output_b[-3000:]
    assert f"resuming at step 4: the {len(saved)} run settings equal the checkpoint's" in output_b

    # 3b. metrics continue in the same file: run A's lines kept, steps 5-6 appended
    after = _steps(metrics_path)
    assert after[: len(before)] == before
    assert [step for step, _ in after[len(before) :]] == [5, 6]
    b = dict(after[len(before) :])
    # the dataloader position: step 5 drew rows 8-9 again, step 6 rows 0-1 (row 1 makes no judge request)
    assert judge.rows("B", anchors=False) == {8, 9, 0}
    # the judge cache: every anchor (rows 8, 9 from run A's step 5, row 0 from step 1) came from the disk cache
    assert judge.rows("B", anchors=True) == set()
    assert b[5]["judge/cache_hits"] >= BATCH and b[6]["judge/cache_hits"] >= 1
    assert b[5]["dagrpo/missing_scores"] == 0 and b[5]["dagrpo/anchor_groups_frac"] == 1.0
    assert b[6]["reward/errors"] == N  # the unreadable row again, in the second epoch
