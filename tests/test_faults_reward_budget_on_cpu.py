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
"""Reward faults in the trainer hooks: ``reward/*`` counts every step, and the reward-error budget.

Real: the v1 trainer class (``PPOTrainerSync`` with the DaGRPO mix-in, verl's own ``__init__``), the
composed ``dagrpo_trainer`` config, TransferQueue under local Ray, the reward function run inside a
Ray actor (standing in for verl's ``RewardLoopWorker``: the same ``__ray_call__`` route the trainer
uses to collect the examples). The end-to-end run through verl's trainer is
``tests/test_faults_training_on_cpu.py``.
"""

from __future__ import annotations

import asyncio
import math
import re

import numpy as np
import pytest
import ray
import torch
import transfer_queue as tq
from omegaconf import OmegaConf
from transfer_queue import KVBatchMeta
from verl.utils.tensordict_utils import list_of_dict_to_tensordict

from dagrpo_verl import reward
from dagrpo_verl.fields import GRADE_ERROR, GRADE_TIMEOUT, JUDGE_SCORE, REWARD_ERROR
from dagrpo_verl.integration.trainer import dagrpo_trainer_cls
from dagrpo_verl.main import compose_config
from dagrpo_verl.reward import (
    DEFAULT_MAX_ERROR_FRAC,
    RewardErrorsExceeded,
    check_error_budget,
    fault_metrics,
    max_error_frac_from,
)

UIDS = ["a"] * 4 + ["b"] * 4
REWARDS = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]


@ray.remote(num_cpus=0)
class RewardProcess:
    """A Ray actor that runs the reward function, as verl's ``RewardLoopWorker`` does."""

    def score(self, ground_truth, index):
        settings = {"judge": {"backend": "none"}, "grading": {"timeout_s": 5.0, "workers": 1}}
        extra_info = {"index": index}
        return asyncio.run(reward.compute_score("math", "\\boxed{1}", ground_truth, extra_info, **settings))


def _put_batch(partition: str, faults: dict[str, list[float]], padding: list[bool] | None = None):
    """Samples in the layout of verl's v1 agent loop, the reward keys in ``extra_fields``."""
    keys, samples = [], []
    for i, uid in enumerate(UIDS):
        rm_scores = torch.zeros(3)
        rm_scores[-1] = REWARDS[i]
        info = {"acc": REWARDS[i], JUDGE_SCORE: 5.0, **{key: values[i] for key, values in faults.items()}}
        samples.append(
            {
                "uid": uid,
                "response_mask": torch.ones(3, dtype=torch.int64),
                "rm_scores": rm_scores,
                "old_log_probs": -torch.ones(3),
                "extra_fields": {"reward_extra_info": info},
            }
        )
        keys.append(f"{uid}{partition}_{i}_0")
    tags = [{"is_padding": bool(p)} for p in (padding or [False] * len(UIDS))]
    tq.kv_batch_put(keys=keys, partition_id=partition, fields=list_of_dict_to_tensordict(samples), tags=tags)
    return KVBatchMeta(keys=keys, tags=tags, partition_id=partition)


def _trainer(*overrides, workers=()):
    config = compose_config(["actor_rollout_ref.rollout.n=4", "data.train_batch_size=2", *overrides])
    trainer = dagrpo_trainer_cls(config.trainer.v1.trainer_mode)(config=config)
    trainer.reward_loop_manager = type("RewardWorkers", (), {"reward_loop_workers": list(workers)})()
    trainer.global_steps = 3
    return trainer


ZEROS = [0.0] * len(UIDS)


@pytest.mark.parametrize("estimator", ["dagrpo", "grpo"])
def test_every_step_logs_the_fault_sums(transfer_queue, estimator):
    """Batch sums of grade_timeout / grade_error / reward_error, for the dagrpo estimator and verl's own."""
    faults = {GRADE_TIMEOUT: [1.0, 0, 0, 0, 0, 1.0, 0, 0], GRADE_ERROR: [0, 0, 1.0, 0, 0, 0, 0, 0], REWARD_ERROR: ZEROS}
    meta = _put_batch(f"sum-{estimator}", faults)
    metrics: dict = {}
    _trainer(f"algorithm.adv_estimator={estimator}", "algorithm.dagrpo.anchor.enable=false")._compute_advantage(
        meta, metrics
    )
    assert metrics["reward/grade_timeouts"] == 2.0
    assert metrics["reward/grade_errors"] == 1.0
    assert metrics["reward/errors"] == 0.0


def test_padding_rows_are_not_counted(transfer_queue):
    faults = {REWARD_ERROR: [1.0] + [0.0] * 7, GRADE_TIMEOUT: [0.0] * 6 + [1.0, 1.0]}
    meta = _put_batch("pad", faults, padding=[False] * 6 + [True, True])
    metrics: dict = {}
    budget = "+reward.custom_reward_function.reward_kwargs.max_error_frac=0.5"  # 1 of 6 is over the default
    _trainer("algorithm.dagrpo.anchor.enable=false", budget)._compute_advantage(meta, metrics)
    assert metrics["reward/errors"] == 1.0 and metrics["reward/grade_timeouts"] == 0.0


def test_a_reward_without_fault_keys_logs_none(transfer_queue):
    meta = _put_batch("none", {})
    metrics: dict = {}
    _trainer("algorithm.dagrpo.anchor.enable=false")._compute_advantage(meta, metrics)
    assert not any(name.startswith("reward/") for name in metrics)


def test_too_many_reward_errors_stop_the_run_naming_the_rows(transfer_queue):
    """3 of 8 samples raised (37.5% > 10%): RewardErrorsExceeded, with the errors the reward process kept."""
    worker = RewardProcess.remote()
    results = ray.get([worker.score.remote(None, 11), worker.score.remote(float("inf"), 12)])
    assert [r[REWARD_ERROR] for r in results] == [1.0, 1.0] and all(math.isnan(r[JUDGE_SCORE]) for r in results)
    meta = _put_batch("over", {REWARD_ERROR: [1.0, 1.0, 1.0, 0, 0, 0, 0, 0]})
    trainer = _trainer("algorithm.dagrpo.anchor.enable=false", workers=[worker])
    with pytest.raises(RewardErrorsExceeded) as raised:
        trainer._compute_advantage(meta, {})
    message = str(raised.value)
    assert "3 of 8 samples of training step 3 (38%)" in message
    assert "reward_kwargs.max_error_frac=0.1" in message
    assert "extra_info.index='11'" in message and "extra_info.index='12'" in message  # from the worker's process
    assert "GroundTruthError" in message


def test_the_budget_is_a_setting(transfer_queue):
    """max_error_frac=0.5 lets 3 of 8 through (counted); 0 stops at the first error."""
    meta = _put_batch("setting", {REWARD_ERROR: [1.0, 1.0, 1.0, 0, 0, 0, 0, 0]})
    metrics: dict = {}
    trainer = _trainer(
        "algorithm.dagrpo.anchor.enable=false", "+reward.custom_reward_function.reward_kwargs.max_error_frac=0.5"
    )
    trainer._compute_advantage(meta, metrics)
    assert metrics["reward/errors"] == 3.0
    strict = OmegaConf.create({"reward": {"custom_reward_function": {"reward_kwargs": {"max_error_frac": 0.0}}}})
    with pytest.raises(RewardErrorsExceeded, match="1 of 8 samples"):
        check_error_budget({REWARD_ERROR: [1.0] + [0.0] * 7}, strict)


def test_budget_boundaries_and_legacy_columns():
    """Legacy batches hold the keys as numpy columns in non_tensor_batch; None and NaN count 0."""
    columns = {REWARD_ERROR: np.array([1.0, 0.0, None, math.nan] + [0.0] * 6, dtype=object)}
    assert fault_metrics(columns) == {"reward/errors": 1.0}
    check_error_budget(columns, OmegaConf.create({}))  # 1 of 10 = the default 0.1: allowed
    columns[REWARD_ERROR][1] = 1.0
    with pytest.raises(RewardErrorsExceeded, match="2 of 10 samples"):
        check_error_budget(columns, OmegaConf.create({}))
    check_error_budget({GRADE_ERROR: [1.0] * 10}, OmegaConf.create({}))  # grade errors are counted, not budgeted
    assert DEFAULT_MAX_ERROR_FRAC == max_error_frac_from(0.1)


@pytest.mark.parametrize("value", [-0.1, 1.5, math.nan, True, "0.1", None])
def test_bad_budget_values_name_the_key(value):
    with pytest.raises(ValueError, match=r"reward\.custom_reward_function\.reward_kwargs\.max_error_frac"):
        max_error_frac_from(value)


def test_a_bug_in_scoring_is_counted_and_cancellation_still_propagates(monkeypatch):
    """Any exception of the sample path becomes reward_error = 1; asyncio cancellation is not swallowed."""

    class BrokenPool:
        async def agrade(self, *args):
            raise ZeroDivisionError("a bug")

    class SlowPool:
        async def agrade(self, *args):
            await asyncio.sleep(60)

    settings = {"judge": {"backend": "none"}}
    monkeypatch.setattr(reward, "get_grading_pool", lambda config: BrokenPool())
    result = asyncio.run(reward.compute_score("math", "\\boxed{1}", "1", {"index": 4}, **settings))
    assert result[REWARD_ERROR] == 1.0 and result["score"] == 0.0
    assert any("ZeroDivisionError: a bug" in example for example in reward.pop_error_examples())

    monkeypatch.setattr(reward, "get_grading_pool", lambda config: SlowPool())

    async def cancelled():
        task = asyncio.ensure_future(reward.compute_score("math", "x", "1", None, **settings))
        await asyncio.sleep(0.05)
        task.cancel()
        return await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled())


@pytest.mark.parametrize(
    "override, key",
    [
        ("+reward.custom_reward_function.reward_kwargs.max_error_frac=2", "max_error_frac=2"),
        ("+reward.custom_reward_function.reward_kwargs.require_boxd=true", "require_boxd"),
        ("+reward.custom_reward_function.reward_kwargs.grading.workers=0", "grading.workers=0"),
    ],
)
@pytest.mark.parametrize("estimator", ["dagrpo", "grpo"])
def test_bad_reward_settings_stop_the_run_before_ray_starts(override, key, estimator):
    """A settings error would fail every prompt group inside verl's v1 trainer: it is refused at start-up."""
    from dagrpo_verl.integration.validation import DaGRPOConfigError, validate_dagrpo_config

    config = compose_config([override, f"algorithm.adv_estimator={estimator}", "algorithm.dagrpo.anchor.enable=false"])
    with pytest.raises(DaGRPOConfigError, match=re.escape(f"reward.custom_reward_function.reward_kwargs.{key}")):
        validate_dagrpo_config(config)
