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
"""The chain-sums task of the rectification scenario: its judge, reward function, data and warm start.

Real parts: math-verify in dagrpo_verl.grading.pool's grading processes, dagrpo_verl.algo.core's masks,
transformers.
"""

import asyncio
import math
import time

import pandas as pd
import pytest
import torch

from dagrpo_verl.algo import core
from dagrpo_verl.cpu.chain_sums import (
    compute_score,
    reference_solution,
    step_judge_score,
    warm_start,
    write_chain_task,
)

REFERENCE = reference_solution(1, 2, 4)  # "1 + 2 = 3. 3 + 4 = 7. \boxed{7}"


FAULTS = {"grade_timeout": 0.0, "grade_error": 0.0, "reward_error": 0.0}


def _score(response, ground_truth="7", extra_info=None, **settings) -> dict:
    info = {"anchor": REFERENCE} if extra_info is None else extra_info
    return asyncio.run(compute_score("dagrpo/chain_sums", response, ground_truth, info, **settings))


def test_reference_solution_text():
    assert REFERENCE == "1 + 2 = 3. 3 + 4 = 7. \\boxed{7}"


@pytest.mark.parametrize(
    "response, reward, judge, work",
    [
        ("1 + 2 = 3. 3 + 4 = 7. \\boxed{7}", 1.0, 10.0, 1.0),  # correct
        ("1 + 2 = 4. 4 + 4 = 9. \\boxed{7}", 1.0, 5.0, 0.0),  # lucky guess: right box, wrong work
        ("\\boxed{7}", 1.0, 5.0, 0.0),  # right box, no work
        ("1 + 2 = 3. 3 + 4 = 7. \\boxed{8}", 0.0, 6.0, 1.0),  # near miss: right work, wrong box
        ("1 + 2 = 3. 3 + 4 = 8. \\boxed{8}", 0.0, 3.5, 0.5),  # one step right
        ("1 + 2 = 3. 3 + 4 = 8. \\boxed{7}", 1.0, 7.5, 0.5),
        ("1+2=3.3+4=7. 7", 0.0, 6.0, 1.0),  # no box: R = 0 (require_boxed), spacing does not matter
        ("hello", 0.0, 1.0, 0.0),
    ],
)
def test_reward_and_judge_by_hand(response, reward, judge, work):
    assert _score(response) == {"score": reward, "acc": reward, "judge_score": judge, "work": work, **FAULTS}


@pytest.mark.parametrize(
    "response, work",
    [
        ("11 + 2 = 3. 3 + 4 = 7.", 0.5),  # whole numbers only: "11 + 2 = 3" does not state "1 + 2 = 3"
        ("1 + 2 = 3. 3 + 4 = 78.", 0.5),
        ("x1 + 2 = 3y", 0.5),
        (" " * 1995 + "1 + 2 = 3. 3 + 4 = 7.", 0.0),  # past MAX_JUDGED_CHARS: not read
        (" " * 1985 + "1 + 2 = 3. 3 + 4 = 7.", 0.5),  # only the first step within it
    ],
)
def test_steps_are_whole_numbers_within_the_judged_prefix(response, work):
    assert _score(response)["work"] == work


def test_the_masks_drop_lucky_guesses_next_to_near_misses():
    """A group: correct (10), lucky guess (5) | near miss (6), garbage (1). δ = 3 keeps the correct
    positive and the garbage negative and zeroes the two the binary reward cannot tell apart."""
    responses = [
        "1 + 2 = 3. 3 + 4 = 7. \\boxed{7}",
        "1 + 2 = 5. 5 + 4 = 9. \\boxed{7}",
        "1 + 2 = 3. 3 + 4 = 7. \\boxed{9}",
        "5 5 5",
    ]
    scored = [_score(r) for r in responses]
    rewards = torch.tensor([[s["score"]] for s in scored])
    advantages, _, _ = core.compute_dagrpo_outcome_advantage(
        rewards, torch.ones_like(rewards), ["g"] * 4, judge_scores=torch.tensor([s["judge_score"] for s in scored])
    )
    assert advantages[:, 0].tolist() == [0.5, 0.0, -0.0, -0.5]


def test_reward_kwargs_are_refused_not_ignored():
    with pytest.raises(ValueError, match="takes no reward_kwargs other than grading"):
        _score("\\boxed{7}", judge={"backend": "openai"})
    with pytest.raises(ValueError, match="reward_kwargs.grading.timeout_s"):
        _score("\\boxed{7}", grading={"timeout_s": -1})
    # verl's reward-model arguments are accepted (and unused), the grading bound is taken
    assert _score("\\boxed{7}", reward_router_address=None, grading={"timeout_s": 5})["score"] == 1.0


@pytest.mark.parametrize(
    "ground_truth, extra_info",
    [
        ("7", {}),  # no reference solution
        ("7", {"anchor": None}),
        ("7", {"anchor": "no steps here"}),  # a reference that states no step
        ("7", ["not", "a", "dict"]),
        (None, {"anchor": REFERENCE}),  # a null ground truth
        (float("nan"), {"anchor": REFERENCE}),
    ],
)
def test_a_row_it_cannot_read_is_a_counted_error_not_an_exception(ground_truth, extra_info):
    result = _score("1 + 2 = 3. 3 + 4 = 7. \\boxed{7}", ground_truth, extra_info)
    assert result["reward_error"] == 1.0 and result["score"] == result["acc"] == 0.0 and result["work"] == 0.0
    assert math.isnan(result["judge_score"])  # a missing judge score, not a made-up one


def test_hostile_responses_are_bounded():
    """Responses a policy could write (huge, nested, NUL, lone surrogates, not text, a math-verify hang,
    regex-adversarial digit and space runs): the same keys, a score in [1, 10], bounded time."""
    started = time.perf_counter()
    for response in (
        "1 + 2 = 3. " * 200_000,
        "9" * 1_000_000 + " + 1 = 2",
        "{" * 100_000 + "\\boxed{7",
        "\x00" * 10_000,
        "\ud800 1 + 2 = 3 \udfff \\boxed{7}",
        None,
        12345,
        ("1" + " " * 40 + "+") * 1000,
        "1+" * 100_000,
        ("1 + " + " " * 30) * 10_000,
    ):
        result = _score(response)
        assert set(result) == {"score", "acc", "judge_score", "work", *FAULTS} and 1.0 <= result["judge_score"] <= 10.0
        assert result["reward_error"] == 0.0
    assert time.perf_counter() - started < 30


def test_a_grade_past_the_bound_scores_zero_and_is_counted():
    """``\\boxed{10^{10^{10}}}`` hangs math-verify in C (no signal interrupts it); the grading process is
    killed at ``grading.timeout_s`` and the sample counts as a timeout, its work still judged."""
    started = time.perf_counter()
    result = _score("1 + 2 = 3. 3 + 4 = 7. \\boxed{10^{10^{10}}}", "1", grading={"timeout_s": 1.0})
    assert time.perf_counter() - started < 10
    assert result["grade_timeout"] == 1.0 and result["score"] == 0.0 and result["judge_score"] == 6.0


def test_task_holds_out_combinations(tmp_path):
    train, val = write_chain_task(tmp_path, max_operand=3, val_frac=0.25, seed=1)
    train_rows, val_rows = pd.read_parquet(train), pd.read_parquet(val)
    assert len(train_rows) + len(val_rows) == 4**3 and len(val_rows) == 16
    questions = lambda rows: {r["extra_info"]["question"] for _, r in rows.iterrows()}  # noqa: E731
    assert not questions(train_rows) & questions(val_rows)
    for _, row in pd.concat([train_rows, val_rows]).iterrows():
        anchor = row["extra_info"]["anchor"]
        assert step_judge_score(anchor, anchor, True) == (10.0, 1.0)
        assert _score_row(row, anchor)["score"] == 1.0


def _score_row(row, response):
    truth, info = row["reward_model"]["ground_truth"], dict(row["extra_info"])
    return asyncio.run(compute_score(row["data_source"], response, truth, info))


def test_warm_start_trains_and_is_reused(tmp_path):
    from dagrpo_verl.cpu.models import build_tiny_qwen2

    base = build_tiny_qwen2(tmp_path / "tiny")
    train, _ = write_chain_task(tmp_path / "data", max_operand=2)
    out = warm_start(base, tmp_path / "start", train, steps=3, batch_size=4)
    weights = out / "model.safetensors"
    first = weights.stat().st_mtime_ns
    assert warm_start(base, tmp_path / "start", train, steps=3, batch_size=4) == out
    assert weights.stat().st_mtime_ns == first  # same settings: reused
    from safetensors.torch import load_file

    trained, initial = load_file(weights), load_file(base / "model.safetensors")
    assert any(not torch.equal(trained[k], initial[k]) for k in initial)
    warm_start(base, tmp_path / "start", train, steps=4, batch_size=4)
    assert weights.stat().st_mtime_ns != first  # other settings: rebuilt
