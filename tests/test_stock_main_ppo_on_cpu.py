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
"""DaGRPO under verl's own ``python -m verl.trainer.main_ppo``: refused on verl 0.9.1, carried by a verl with upstream/.

Real: verl's entry and trainer (stock on the installed verl 0.9.1; stock on a scratch copy of it with the
patches of ``upstream/`` applied, ``PYTHONPATH`` pointing at the copy), TransferQueue on local Ray, the
reward loop with ``dagrpo_verl.reward`` and the rule judge, the CPU platform of ``dagrpo_verl.cpu`` with the
``hf_cpu`` rollout backend standing in for vLLM/SGLang generation (``+platform=cpu``, docs/cpu.md).
Times on 2 cores: the fast tests take seconds, the refusal on verl 0.9.1 about 20 s (no Ray: it stops in the
driver), the advantage comparison about 45 s, the 2-step run on the patched verl about 95 s.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dagrpo_verl.algo.settings import dagrpo_config_from
from dagrpo_verl.integration.capabilities import VerlCapabilities, verl_capabilities
from dagrpo_verl.integration.judge_health import JudgeHealth, JudgeUnavailableError, judge_endpoint
from dagrpo_verl.integration.stock import check_stock_verl, dagrpo_trainer_hooks, start_up_check
from dagrpo_verl.integration.validation import DaGRPOConfigError
from dagrpo_verl.main import CONFIG_DIR, compose_config

UPSTREAM = Path(__file__).resolve().parent.parent / "upstream"
NONE = VerlCapabilities(*([False] * 6))
ALL = VerlCapabilities(*([True] * 6))
MANAGER = (
    "++actor_rollout_ref.rollout.agent.agent_loop_manager_class="
    "dagrpo_verl.integration.agent_loop.DaGRPOAgentLoopManagerTQ"
)

#: The DaGRPO flags a verl user adds to a stock main_ppo command (the README's existing-setup keys).
DAGRPO_FLAGS = [
    "algorithm.adv_estimator=dagrpo",
    "actor_rollout_ref.actor.policy_loss.loss_mode=dagrpo",
    "reward.custom_reward_function.path=pkg://dagrpo_verl.reward",
    "reward.custom_reward_function.name=compute_score",
    MANAGER,
    "++algorithm.dagrpo.anchor.trigger=always",
]


def _config(*overrides):
    return compose_config(list(overrides))


# ----------------------------------------------------------------------------- what each verl can carry


def test_installed_verl_0_9_1_has_none_of_the_hooks():
    import verl

    if verl.__version__ != "0.9.1":
        pytest.skip(f"installed verl is {verl.__version__}")
    assert verl_capabilities().missing() == [
        "estimator_batch",
        "estimator_fields",
        "estimator_metrics",
        "loss_fields",
        "config_validators",
        "group_transform",
    ]


def test_stock_verl_without_hooks_refuses_the_estimator_naming_both_fixes():
    with pytest.raises(DaGRPOConfigError, match="judge scores and anchor flags") as error:
        check_stock_verl(_config(), NONE)
    message = str(error.value)
    assert "python -m dagrpo_verl.main" in message and "upstream/" in message and "plain (Dr.)GRPO" in message


def test_stock_verl_refuses_anchors_when_only_the_loss_hook_is_missing():
    caps = VerlCapabilities(True, True, True, False, True, True)
    with pytest.raises(DaGRPOConfigError, match="anchor flag to the dagrpo policy loss"):
        check_stock_verl(_config(), caps)


def test_stock_verl_refuses_the_legacy_estimator_without_the_batch():
    caps = VerlCapabilities(False, True, True, True, True, True)
    with pytest.raises(DaGRPOConfigError, match="#7473"):
        check_stock_verl(_config("trainer.use_v1=false"), caps)


def test_plain_dr_grpo_needs_no_hook():
    """No masks and no anchors: the estimator needs nothing per sample, so stock verl 0.9.1 runs it as it is."""
    check_stock_verl(_config("algorithm.dagrpo.rectification=false", "algorithm.dagrpo.anchor.enable=false"), NONE)


def test_with_every_hook_only_rollout_correction_of_anchors_is_refused():
    check_stock_verl(_config(), ALL)
    config = _config("algorithm.rollout_correction.rollout_is=token")
    with pytest.raises(DaGRPOConfigError, match="rollout_is=null"):
        check_stock_verl(config, ALL)


def test_start_up_check_leaves_other_configs_and_the_dagrpo_entry_alone():
    plain = _config(
        "algorithm.adv_estimator=grpo",
        "actor_rollout_ref.actor.policy_loss.loss_mode=vanilla",
        "actor_rollout_ref.rollout.agent.agent_loop_manager_class=null",
    )
    start_up_check(plain)  # not DaGRPO: nothing to check
    with dagrpo_trainer_hooks():
        start_up_check(_config())  # python -m dagrpo_verl.main validated and carries the hooks
    with pytest.raises(DaGRPOConfigError):
        start_up_check(_config())


def test_verl_validate_config_runs_the_check():
    """``import verl`` loads the plugin, which makes verl's validate_config run the start-up check."""
    from verl.utils import config as verl_config

    assert getattr(verl_config.validate_config, "__dagrpo_start_up_check__", False) or hasattr(
        verl_config, "register_config_validator"
    )


def test_a_rectification_run_scored_by_the_rule_heuristic_warns_once(caplog):
    from dagrpo_verl.integration.validation import validate_dagrpo_config

    with caplog.at_level(logging.WARNING, logger="dagrpo_verl.integration.validation"):
        validate_dagrpo_config(_config("reward.custom_reward_function.reward_kwargs.judge.backend=rule"))
    rule = [r for r in caplog.records if "judge.backend=rule" in r.getMessage()]
    assert len(rule) == 1 and "not an LLM" in rule[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dagrpo_verl.integration.validation"):
        validate_dagrpo_config(_config("algorithm.dagrpo.rectification=false"))
    assert not [r for r in caplog.records if "judge.backend=rule" in r.getMessage()]


# ----------------------------------------------------------------------------- a judge that gives no scores


def test_judge_health_warns_per_bad_step_and_stops_after_max_bad_steps(caplog):
    settings = dagrpo_config_from({"dagrpo": {"judge_health": {"max_missing_frac": 0.25, "max_bad_steps": 3}}})
    health = JudgeHealth()
    endpoint = "the judge (backend=openai base_url=http://judge:8000/v1)"
    with caplog.at_level(logging.WARNING, logger="dagrpo_verl.integration.judge_health"):
        health.record(missing=8, needed=8, settings=settings, endpoint=endpoint)
        health.record(missing=2, needed=8, settings=settings, endpoint=endpoint)  # 25%: not over, resets
        health.record(missing=8, needed=8, settings=settings, endpoint=endpoint)
        health.record(missing=3, needed=8, settings=settings, endpoint=endpoint)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3 and all("http://judge:8000/v1" in w for w in warnings)
    with pytest.raises(JudgeUnavailableError, match="max_bad_steps=3"):
        health.record(missing=5, needed=8, settings=settings, endpoint=endpoint)
    no_masks = dagrpo_config_from({"dagrpo": {"rectification": False}})
    JudgeHealth().record(missing=8, needed=8, settings=no_masks, endpoint=endpoint)  # no scores needed
    # a step in which no response needed a score (every group uniform) says nothing about the judge
    health = JudgeHealth()
    health.record(missing=8, needed=8, settings=settings, endpoint=endpoint)
    health.record(missing=0, needed=0, settings=settings, endpoint=endpoint)
    assert health.bad_steps == 1


def test_judge_endpoint_is_read_from_the_run_config():
    config = _config(
        "reward.custom_reward_function.reward_kwargs.judge.backend=openai",
        "++reward.custom_reward_function.reward_kwargs.judge.base_url=http://judge-host:8000/v1",
        "++reward.custom_reward_function.reward_kwargs.judge.model=gpt-4o",
    )
    assert "base_url=http://judge-host:8000/v1 model=gpt-4o" in judge_endpoint(config.algorithm)
    assert "reward_kwargs.judge" in judge_endpoint(OmegaConf.to_container(config.algorithm))


# ----------------------------------------------------------------------------- the real entry


@pytest.fixture(scope="module")
def cpu_run_files(tmp_path_factory):
    pytest.importorskip("dagrpo_verl.cpu")
    from dagrpo_verl.cpu.models import build_tiny_qwen2
    from dagrpo_verl.data.synthetic import write_synthetic_task

    root = tmp_path_factory.mktemp("stock")
    model = build_tiny_qwen2(root / "model")
    train, _ = write_synthetic_task(root / "data", train=8, val=2, max_operand=99, anchor_style="answer")
    return root, model, train


def _main_ppo(root, model, train, steps):
    return [
        sys.executable, "-m", "verl.trainer.main_ppo", f"--config-dir={CONFIG_DIR}", "+platform=cpu",
        f"data.train_files={train}", f"data.val_files={train}",
        "data.train_batch_size=2", "data.max_prompt_length=64", "data.max_response_length=24",
        f"actor_rollout_ref.model.path={model}",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
        "actor_rollout_ref.rollout.n=4", "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
        "actor_rollout_ref.actor.use_kl_loss=false", "algorithm.use_kl_in_reward=false",
        *DAGRPO_FLAGS,
        f"trainer.total_training_steps={steps}", "trainer.val_before_train=false", "trainer.test_freq=-1",
        "trainer.save_freq=-1", "trainer.logger=[console]", f"trainer.default_local_dir={root / 'ckpt'}",
    ]  # fmt: skip


def test_stock_main_ppo_on_verl_0_9_1_stops_before_ray_with_the_named_error(cpu_run_files):
    from dagrpo_verl.cpu.smoke import cpu_env

    if verl_capabilities().estimator_fields:
        pytest.skip("the installed verl has the hooks")
    root, model, train = cpu_run_files
    proc = subprocess.run(
        _main_ppo(root, model, train, steps=2), capture_output=True, text=True, timeout=600, env=cpu_env(), cwd=root
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "DaGRPOConfigError" in output and "python -m dagrpo_verl.main" in output and "upstream/" in output
    # verl prints "ray init kwargs" right before ray.init: the run stopped in the driver, before any rollout
    assert "ray init kwargs" not in output and "Started a local Ray instance" not in output


@pytest.fixture(scope="module")
def patched_verl(tmp_path_factory):
    """A scratch copy of the installed verl with upstream/ applied (never site-packages)."""
    spec = importlib.util.spec_from_file_location("apply_series", UPSTREAM / "apply_series.py")
    series = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(series)
    dest = tmp_path_factory.mktemp("verl-upstream") / "verl"
    assert series.apply_series(dest, log=lambda *_: None)
    return dest


ADVANTAGE_SCRIPT = r'''
import json
import sys

import ray
import torch
import transfer_queue as tq
from omegaconf import OmegaConf
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.v1 import get_trainer_cls
from verl.utils.tensordict_utils import list_of_dict_to_tensordict

from dagrpo_verl.integration.capabilities import verl_capabilities
from dagrpo_verl.main import compose_config
from dagrpo_verl.integration.trainer import dagrpo_trainer_cls

UIDS = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
REWARDS = [1, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1]
SCORES = [9, 2, 7, float("nan"), 3, 1, 2, 10, 8, 9, 7, 6]
ANCHOR = [False] * 7 + [True] + [False] * 4
LENGTHS = [3, 5, 2, 4, 6, 3, 2, 5, 7, 1, 4, 2]


def put(partition):
    """One batch in the v1 agent loop's layout, with the fields the anchor mixer writes."""
    generator = torch.Generator().manual_seed(0)
    keys, samples = [], []
    for i, (uid, length) in enumerate(zip(UIDS, LENGTHS)):
        rm_scores = torch.zeros(length)
        rm_scores[-1] = REWARDS[i]
        samples.append({
            "uid": uid, "response_mask": torch.ones(length, dtype=torch.int64), "rm_scores": rm_scores,
            "old_log_probs": -torch.rand(length, generator=generator) - 0.1,
            "is_anchor": torch.tensor(ANCHOR[i]), "judge_score": torch.tensor(SCORES[i], dtype=torch.float32),
            "extra_fields": {"reward_extra_info": {"judge_score": SCORES[i], "acc": float(REWARDS[i])}},
        })
        keys.append(f"{uid}{partition}_{i % 4}_0")
    tags = [{"seq_len": 10 + n} for n in LENGTHS]
    tq.kv_batch_put(keys=keys, partition_id=partition, fields=list_of_dict_to_tensordict(samples), tags=tags)
    return KVBatchMeta(keys=keys, tags=tags, partition_id=partition)


def advantages(meta):
    data = tq.kv_batch_get(keys=meta.keys, partition_id=meta.partition_id, select_fields=["advantages"])
    return data.to_padded_tensor()["advantages"]


assert not verl_capabilities().missing(), verl_capabilities()
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
storage = {"total_storage_size": 500, "num_data_storage_units": 1}
tq.init(OmegaConf.create({"backend": {"storage_backend": "SimpleStorage", "SimpleStorage": storage}}))
config = compose_config(["actor_rollout_ref.rollout.n=4", "data.train_batch_size=3"])
stock = get_trainer_cls("sync")(config=config)  # verl's own trainer: no DaGRPO code but the registered estimator
ours = dagrpo_trainer_cls("sync")(config=config)  # python -m dagrpo_verl.main's trainer hook
ours.reward_loop_manager = type("NoRewardWorkers", (), {"reward_loop_workers": []})()
stock_batch, our_batch = put("stock"), put("ours")
stock_metrics, our_metrics = {}, {}
stock._compute_advantage(stock_batch, stock_metrics)
ours._compute_advantage(our_batch, our_metrics)
a, b = advantages(stock_batch), advantages(our_batch)
print("RESULT " + json.dumps({
    "max_abs_diff": float((a - b).abs().max()),
    "nonzero": int((a != 0).sum()),
    "stock_metrics": {k: v for k, v in stock_metrics.items() if k.startswith("dagrpo/")},
    "our_metrics": {k: v for k, v in our_metrics.items() if k.startswith("dagrpo/")},
}))
tq.close()
ray.shutdown()
'''


@pytest.mark.slow
def test_stock_trainer_on_patched_verl_gives_the_advantages_of_the_dagrpo_entry(patched_verl, tmp_path):
    """The same TransferQueue batch: verl's own ``_compute_advantage`` (registered estimator, declared fields)
    and ``python -m dagrpo_verl.main``'s hook give bit-identical advantages and the same dagrpo/* metrics."""
    script = tmp_path / "advantages.py"
    script.write_text(ADVANTAGE_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(patched_verl)}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    result = json.loads(output.split("RESULT ", 1)[1].splitlines()[0])
    assert result["max_abs_diff"] == 0.0 and result["nonzero"] > 0
    stock, ours = result["stock_metrics"], result["our_metrics"]
    assert stock["dagrpo/pos_masked_frac"] > 0 and stock["dagrpo/neg_masked_frac"] > 0  # the masks acted
    # the estimator's metrics (dagrpo_verl.main also logs dagrpo/onpolicy/* diagnostics of its own)
    assert {"dagrpo/missing_scores", "dagrpo/anchor_groups_frac", "dagrpo/anchor_retained_frac"} <= set(stock)
    for name, value in stock.items():
        assert value == pytest.approx(ours[name], nan_ok=True), name


@pytest.mark.slow
def test_stock_main_ppo_on_patched_verl_runs_full_dagrpo_with_flags_only(cpu_run_files, patched_verl):
    """``python -m verl.trainer.main_ppo`` (no dagrpo_verl.main) for 2 steps with the DaGRPO flags: the masks,
    the anchors and the anchor shaping took effect (dagrpo/* from the estimator, actor/dagrpo/* from the loss)."""
    from dagrpo_verl.cpu.smoke import cpu_env, parse_console_metrics

    root, model, train = cpu_run_files
    env = cpu_env({**os.environ, "PYTHONPATH": str(patched_verl)})
    proc = subprocess.run(
        _main_ppo(root, model, train, steps=2), capture_output=True, text=True, timeout=1200, env=env, cwd=root
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    assert "TaskRunnerV1" in output and "DaGRPOTaskRunner" not in output  # verl's own task runner and trainer
    steps = parse_console_metrics(output)
    assert sorted(steps) == [1, 2], output[-5000:]
    for metrics in steps.values():
        for name in ("pos_masked_frac", "neg_masked_frac", "anchor_retained_frac", "missing_scores"):
            assert f"dagrpo/{name}" in metrics, name
        assert metrics["dagrpo/anchor_groups_frac"] == 1.0  # trigger=always, every row has an anchor
        assert metrics["dagrpo/anchor_reward_mean"] == 1.0 and metrics["dagrpo/missing_scores"] == 0.0
        # the loss received the anchor flags through verl's ppo_loss and shaped the anchor tokens
        assert metrics["actor/dagrpo/anchor_tokens"] > 0 and metrics["actor/dagrpo/anchor_shaped_ratio_sum"] > 0
        assert metrics["actor/grad_norm"] > 0
