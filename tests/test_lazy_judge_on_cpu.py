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
"""Lazy judging: the same advantages as judging every response, bit for bit, with fewer judge calls.

Each scenario replays one batch three ways through the real code: lazy group judging (the default), group
judging of every response (``algorithm.dagrpo.lazy_judge=false``), and judging in the reward function (the
eager path verl's own agent loop takes). Compared: the advantages of verl's v1 trainer hook
(``DaGRPOTrainerMixin._compute_advantage`` on the TransferQueue batch) and of the legacy hook
(``compute_batch_advantage`` on the legacy manager's ``DataProto``), row for row with ``torch.equal``.

Real: verl's ``RLHFDataset``/``collate_fn`` on a parquet from ``dagrpo_verl.data.prepare``, the composed
``dagrpo_trainer`` config, ``DaGRPOAgentLoopWorkerTQ`` (verl's ``AgentLoopWorkerTQ.__init__``,
``generate_sequences``, the ``single_turn_agent`` loop, the tiny Qwen2 tokenizer), real ``RewardLoopWorker``
Ray actors running ``pkg://dagrpo_verl.reward`` (math-verify in the grading pool), TransferQueue under local
Ray, the legacy ``DaGRPOAgentLoopManager`` with a real ``DaGRPOAgentLoopWorker`` actor, and the judge over
HTTP: ``LocalJudgeServer`` on 127.0.0.1, whose rule (a score from a hash of the candidate, a reply without
verdict for candidates containing FAIL) stands in for the judge LLM.
Stood in for: only the GPU generation server (``ScriptedLLM`` returns fixed texts; vLLM/SGLang cannot run on
CPU). The v1 worker runs in the test process instead of a Ray actor (same class and methods). About 90 s on
2 cores, most of it Ray, TransferQueue and the actors starting.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import sys
import threading
import time
import uuid

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")
tq = pytest.importorskip("transfer_queue")

from omegaconf import OmegaConf, open_dict  # noqa: E402

from dagrpo_verl.fields import IS_ANCHOR, JUDGE_SCORE, JUDGE_STATS  # noqa: E402
from dagrpo_verl.judge.testing import ChatRequest, LocalJudgeServer, Reply, verdict_line  # noqa: E402

N = 4
MIXED, EASY, HARD, BAD_ANCHOR, FAILING, SLOW = (
    "What is 7 + 5?",
    "What is 2 + 2?",
    "What is 123 * 45?",
    "What is 9 - 4?",
    "What is 8 + 1?",
    "What is 3 + 3?",
)
#: question -> (ground truth, expert solution, the N scripted rollouts). Rollouts of a group that an anchor
#: may replace are identical texts, so which session the mixer replaces cannot change the group.
PROMPTS = {
    MIXED: ("12", "7 + 5 = 12, so \\boxed{12}.", ["So \\boxed{12}.", "It is \\boxed{13}.", "\\boxed{12}", "no idea"]),
    EASY: ("4", "2 + 2 = 4. \\boxed{4}", ["\\boxed{4}", "Four: \\boxed{4}.", "so \\boxed{4}", "\\boxed{4}!"]),
    HARD: ("5535", "123 * 45 = 5535. \\boxed{5535}", ["\\boxed{5000}"] * N),
    BAD_ANCHOR: ("5", "The answer is \\boxed{6}.", ["\\boxed{3}"] * N),  # the anchor fails verification
    FAILING: ("9", "8 + 1 = 9. \\boxed{9}", ["\\boxed{9} FAIL", "\\boxed{8}", "then \\boxed{9}", "\\boxed{7}"]),
}
SLOW_PROMPT = {SLOW: ("6", "3 + 3 = 6. \\boxed{6}", ["\\boxed{6}"] * N)}  # all correct: needs no judge
SLOW_GATE_S = 120.0  # the slow group waits for the first judge request at most this long


def judge_rule(request: ChatRequest) -> Reply:
    """The stand-in judge: a score from the candidate's text alone (the same whichever code path asks), no
    verdict for a candidate containing FAIL (a parse error, asked once more, then a missing score)."""
    candidate = request.candidate
    if "FAIL" in candidate:
        return Reply(content="I cannot grade this.")
    digest = int(hashlib.sha256(candidate.encode()).hexdigest(), 16)
    return Reply(content=f"Graded.\n{verdict_line(float(1 + digest % 10))}")


class ScriptedLLM:
    """Stand-in for verl's LLMServerClient (the GPU generation server): scripted responses + eos."""

    def __init__(self, tokenizer, prompts, judged=None):
        self.tokenizer, self.prompts, self.calls = tokenizer, prompts, {}
        self.judged = judged  # threading.Event set by the judge server's first request
        self.slow_released_by_judge: bool | None = None

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        text = self.tokenizer.decode(prompt_ids)
        question = next(q for q in self.prompts if q in text)
        i = self.calls.get(question, 0)
        self.calls[question] = i + 1
        if question == SLOW:  # generation of this group ends only once another group has reached the judge
            deadline = time.monotonic() + SLOW_GATE_S
            while not self.judged.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            self.slow_released_by_judge = self.judged.is_set()
        script = self.prompts[question][2][i % N]
        ids = self.tokenizer.encode(script, add_special_tokens=False) + [self.tokenizer.eos_token_id]
        return TokenOutput(token_ids=ids, log_probs=[-0.5] * len(ids), stop_reason="completed")


class JudgeServer:
    """The stand-in judge on 127.0.0.1, recording the arrival time and candidate of every request."""

    def __init__(self):
        self.arrivals: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.first_request = threading.Event()
        self.server = LocalJudgeServer(self.rule, record=False)

    def rule(self, request: ChatRequest) -> Reply:
        with self.lock:
            self.arrivals.append((time.monotonic(), request.candidate))
        self.first_request.set()
        return judge_rule(request)


def _write_data(path, prompts):
    from dagrpo_verl.data.prepare import prepare

    raw = path.with_suffix(".jsonl")
    raw.write_text(
        "".join(
            json.dumps(
                {
                    "data_source": "toy",
                    "prompt": [{"role": "user", "content": q}],
                    "target": [{"role": "assistant", "content": anchor}],
                    "ability": "math",
                    "reward_model": {"ground_truth": truth, "style": "rule"},
                    "extra_info": {"index": i, "split": "train"},
                }
            )
            + "\n"
            for i, (q, (truth, anchor, _)) in enumerate(prompts.items())
        )
    )
    prepare(str(raw), path)
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory, transfer_queue):
    from dagrpo_verl.cpu.models import build_tiny_qwen2
    from dagrpo_verl.main import compose_config

    tmp = tmp_path_factory.mktemp("lazy_judge")
    model = build_tiny_qwen2(tmp / "tiny")
    data = _write_data(tmp / "train.parquet", PROMPTS)
    slow_data = _write_data(tmp / "slow.parquet", {**SLOW_PROMPT, MIXED: PROMPTS[MIXED]})
    judge = JudgeServer()
    judge.server.start()
    judge_key = "reward.custom_reward_function.reward_kwargs.judge"
    base = compose_config(
        [
            f"actor_rollout_ref.model.path={model}",
            "actor_rollout_ref.rollout.name=vllm",  # the server is stood in for; any name will do
            f"actor_rollout_ref.rollout.n={N}",
            "actor_rollout_ref.rollout.prompt_length=64",
            "actor_rollout_ref.rollout.response_length=40",
            f"data.train_files=[{data}]",
            "data.max_prompt_length=64",
            "data.max_response_length=40",
            "data.filter_overlong_prompts=false",
            f"{judge_key}.backend=openai",
            f"+{judge_key}.base_url={judge.server.url}",
            f"+{judge_key}.model=stand-in",
            f"+{judge_key}.deadline_s=60",
        ]
    )
    grader = _reward_worker(base)  # lazy and "all" only grade in the reward function
    yield {"config": base, "data": data, "slow_data": slow_data, "judge": judge, "grader": grader}
    judge.server.stop()


def _reward_worker(config):
    """A real RewardLoopWorker actor running ``pkg://dagrpo_verl.reward`` with ``config``'s judge settings."""
    from verl.experimental.reward_loop import RewardLoopWorker

    return ray.remote(RewardLoopWorker).remote(config)


def _with(config, **values):
    config = OmegaConf.create(OmegaConf.to_container(config))
    with open_dict(config):
        for key, value in values.items():
            OmegaConf.update(config, key, value, force_add=True)
    return config


#: scenario name -> config values (the three batches replayed)
SCENARIOS = {
    "hard-replace": {"algorithm.dagrpo.anchor.trigger": "hard", "algorithm.dagrpo.anchor.mode": "replace"},
    "always-append-judged-anchors-mask": {
        "algorithm.dagrpo.anchor.trigger": "always",
        "algorithm.dagrpo.anchor.mode": "append",
        "algorithm.dagrpo.anchor.judge_anchors": True,
        "algorithm.dagrpo.on_missing_score": "mask",
        "algorithm.dagrpo.delta": 2.0,
    },
    "no-anchors-std": {"algorithm.dagrpo.anchor.enable": False, "algorithm.norm_adv_by_std_in_grpo": True},
}
MODES = ("lazy", "all", "eager")
#: scenario -> (lazy judge requests, of them skipped as not needed, judge requests when judging everything,
#: requests the eager reward function makes). Groups after mixing: MIXED and FAILING mixed; EASY all correct;
#: HARD all wrong, mixed by its anchor when it gets one; BAD_ANCHOR all wrong, with a wrong anchor when it
#: gets one (on_failed_verification=use). Anchors are judged only in the judge_anchors scenario.
EXPECTED = {
    "hard-replace": (4 + 3 + 4, 4 + 3, 4 + 4 + 3 + 3 + 4, 5 * N),  # eager also judges the 2 replaced rollouts
    "always-append-judged-anchors-mask": (3 * (N + 1), 2 * (N + 1), 5 * (N + 1), 5 * (N + 1)),
    "no-anchors-std": (4 + 4, 3 * N, 5 * N, 5 * N),
}


def _mode_config(env, scenario, mode, tag="v1"):
    # a judge (and a judge cache) of its own per run: no request is answered from an earlier run's cache
    judge_model = f"stand-in-{tag}-{scenario}-{mode}"
    return _with(
        env["config"],
        **SCENARIOS[scenario],
        **{
            "algorithm.dagrpo.lazy_judge": mode != "all",
            "reward.custom_reward_function.reward_kwargs.judge.model": judge_model,
        },
    )


def _batch(config, tokenizer, data):
    """A train batch exactly as verl's v1 trainer builds it (_fetch_one_gen_batch / _next_train_batch)."""
    from verl.utils import tensordict_utils as tu
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    dataset = RLHFDataset(data_files=[str(data)], tokenizer=tokenizer, config=config.data)
    batch_dict = collate_fn([dataset[i] for i in range(len(dataset))])
    batch_dict["uid"] = np.array([str(uuid.uuid4()) for _ in range(len(dataset))], dtype=object)
    batch = tu.get_tensordict(batch_dict)
    tu.assign_non_tensor_data(batch, "global_steps", 1)
    return batch


def _run_v1(env, config, mode, data=None, prompts=PROMPTS):
    """One batch through the v1 worker; returns the worker, the batch and the TransferQueue keys in a canonical
    order (question, anchor flag, response tokens), the same in every mode."""
    from dagrpo_verl.integration.agent_loop import DaGRPOAgentLoopWorkerTQ

    reward_worker = _reward_worker(config) if mode == "eager" else env["grader"]

    async def go():
        worker = DaGRPOAgentLoopWorkerTQ(config, None, None, [reward_worker])
        if mode == "eager":
            worker.group_judging = None  # the reward function judges every response (verl's own agent loop)
        worker.llm_client = ScriptedLLM(worker.tokenizer, prompts, judged=env["judge"].first_request)
        batch = _batch(config, worker.tokenizer, data or env["data"])
        await worker.generate_sequences(batch)
        await asyncio.gather(*list(worker.background_tasks))
        return worker, batch

    worker, batch = asyncio.run(go())
    listing = tq.kv_list(partition_id="train")["train"]
    rows = []
    for uid, raw_prompt in zip(batch["uid"], batch["raw_prompt"], strict=True):
        assert listing[uid]["status"] == "finished"
        keys = sorted(k for k in listing if k.startswith(f"{uid}_"))
        data = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["responses", IS_ANCHOR])
        question = raw_prompt[-1]["content"]
        for i, key in enumerate(keys):
            rows.append(((list(prompts).index(question), bool(data[IS_ANCHOR][i]), data["responses"][i].tolist()), key))
    rows.sort(key=lambda row: row[0])
    all_keys = [key for key in listing if key.split("_")[0] in batch["uid"]]
    return worker, reward_worker, [key for _, key in rows], all_keys


def _advantages(config, keys, reward_workers):
    """verl's v1 trainer class with the DaGRPO hook, on the batch in TransferQueue: (advantages, scores, metrics)."""
    from transfer_queue import KVBatchMeta

    from dagrpo_verl.integration.trainer import dagrpo_trainer_cls

    # bypass mode: verl's step would have written old_log_probs (an actor forward) before this hook; without one,
    # bypass reads rollout_log_probs as verl's _compute_old_log_prob does. Rollout correction is off either way
    # (rollout_is/rollout_rs None), so the advantages are what the default config gives.
    config = _with(config, **{"algorithm.rollout_correction.bypass_mode": True})
    trainer = dagrpo_trainer_cls("sync")(config=config)
    trainer.reward_loop_manager = type("RewardWorkers", (), {"reward_loop_workers": reward_workers})()
    lengths = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["response_mask"])["response_mask"]
    tags = [{"seq_len": 64 + int(mask.numel())} for mask in lengths]
    meta = KVBatchMeta(keys=keys, tags=tags, partition_id="train")
    metrics = {}
    trainer._compute_advantage(meta, metrics)
    data = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["advantages", JUDGE_SCORE])
    return data.to_padded_tensor()["advantages"], data[JUDGE_SCORE], metrics


def _requests(env, since):
    return [candidate for t, candidate in env["judge"].arrivals if t >= since]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_v1_lazy_judging_gives_the_advantages_of_judging_everything(env, scenario):
    results = {}
    for mode in MODES:
        config = _mode_config(env, scenario, mode)
        started = time.monotonic()
        _, reward_worker, keys, all_keys = _run_v1(env, config, mode)
        advantages, scores, metrics = _advantages(config, keys, [reward_worker])
        results[mode] = (advantages, scores, metrics, _requests(env, started))
        tq.kv_clear(keys=all_keys, partition_id="train")
        if mode == "eager":
            ray.kill(reward_worker)

    lazy, everything, eager = (results[m] for m in MODES)
    needed = lazy[0].abs().sum(-1) > 0
    for other in (everything, eager):
        assert torch.equal(lazy[0], other[0])  # bit for bit
        np.testing.assert_array_equal(lazy[1][needed].numpy(), other[1][needed].numpy())  # the scores eq. 8-9 read
    assert needed.any()
    masked = lazy[2]["dagrpo/pos_masked_frac"] + lazy[2]["dagrpo/neg_masked_frac"]
    assert masked > 0, "the masks did not act: the comparison would not see the scores"

    lazy_requests, skipped, all_requests, eager_requests = EXPECTED[scenario]
    assert lazy[2]["judge/requests"] == lazy_requests and lazy[2]["judge/skipped_not_needed"] == skipped
    assert everything[2]["judge/requests"] == all_requests and everything[2]["judge/skipped_not_needed"] == 0
    assert eager[2]["judge/requests"] == eager_requests and eager[2]["judge/skipped_not_needed"] == 0
    # the server saw each request the cache could not answer (identical candidates of a group are asked once),
    # plus the re-ask of the FAIL candidate's verdict
    for result in (lazy, everything, eager):
        assert len(result[3]) == result[2]["judge/requests"] - result[2]["judge/cache_hits"] + 1
    assert len(lazy[3]) < len(everything[3])
    # not needed is not missing: the FAIL response is the one needed score without a value, in every mode
    for metrics in (lazy[2], everything[2], eager[2]):
        assert metrics["dagrpo/missing_scores"] == 1.0 and metrics["judge/parse_errors"] == 2
        assert metrics["dagrpo/needed_scores"] == lazy[2]["dagrpo/needed_scores"] > 0
    assert lazy[2]["judge/wall_exposed_s"] >= 0.0


def test_a_group_is_judged_while_others_are_still_generating(env):
    """The mixed group is judged while the slow group is still generating (no batch barrier): the slow group's
    generation waits for the judge's first request, so with a barrier it would wait out SLOW_GATE_S and the test
    fails. The slow group (all correct) makes no request."""
    config = _mode_config(env, "hard-replace", "lazy", tag="overlap")  # a judge cache of its own
    prompts = {**SLOW_PROMPT, MIXED: PROMPTS[MIXED]}
    env["judge"].first_request.clear()
    started = time.monotonic()
    worker, _, _, all_keys = _run_v1(env, config, "lazy", data=env["slow_data"], prompts=prompts)
    arrivals = [t for t, _ in env["judge"].arrivals if t >= started]
    tq.kv_clear(keys=all_keys, partition_id="train")
    assert len(arrivals) == N
    assert worker.llm_client.slow_released_by_judge is True


# ------------------------------------------------------------------------------------------------ legacy trainer


def _legacy_batch(env, config, mode):
    """The generation part of verl's RayPPOTrainer.fit (verl 0.9.1 ray_trainer.py) with the DaGRPO manager."""
    from transformers import AutoTokenizer
    from verl.protocol import DataProto
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    from dagrpo_verl.integration.agent_loop import DaGRPOAgentLoopManager

    tokenizer = AutoTokenizer.from_pretrained(config.actor_rollout_ref.model.path)
    reward_worker = _reward_worker(config) if mode == "eager" else env["grader"]
    manager = DaGRPOAgentLoopManager.create(
        config=config, llm_client=ScriptedLLM(tokenizer, PROMPTS), teacher_client=None,
        reward_loop_worker_handles=[reward_worker],
    )  # fmt: skip
    if mode == "eager":
        manager.group_judging = None
    dataset = RLHFDataset(data_files=[str(env["data"])], tokenizer=tokenizer, config=config.data)
    batch = DataProto.from_single_dict(collate_fn([dataset[i] for i in range(len(dataset))]))
    batch.non_tensor_batch["uid"] = np.array([str(uuid.uuid4()) for _ in range(len(batch))], dtype=object)
    gen_batch = RayPPOTrainer._get_gen_batch(None, batch)  # does not use self
    gen_batch.meta_info["global_steps"] = 1
    output = manager.generate_sequences(gen_batch.repeat(repeat_times=N, interleave=True))
    for worker in manager.agent_loop_workers:
        ray.kill(worker)
    if mode == "eager":
        ray.kill(reward_worker)
    return batch.repeat(repeat_times=N, interleave=True).union(output)


def test_legacy_lazy_judging_gives_the_advantages_of_judging_everything(env):
    import cloudpickle

    from dagrpo_verl.integration.trainer import compute_batch_advantage
    from dagrpo_verl.judge.metrics import stats_from_records

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # ScriptedLLM travels to the worker actor
    results = {}
    for mode in MODES:
        config = _with(_mode_config(env, "hard-replace", mode, tag="legacy"), **{"trainer.use_v1": False})
        with open_dict(config):
            config.actor_rollout_ref.rollout.agent.num_workers = 1
            config.actor_rollout_ref.rollout.agent.agent_loop_manager_class = (
                "dagrpo_verl.integration.agent_loop.DaGRPOAgentLoopManager"
            )
        started = time.monotonic()
        batch = _legacy_batch(env, config, mode)
        questions = [p[-1]["content"] for p in batch.non_tensor_batch["raw_prompt"]]
        order = sorted(
            range(len(batch)),
            key=lambda r: (list(PROMPTS).index(questions[r]), bool(batch.non_tensor_batch[IS_ANCHOR][r]),
                           batch.batch["responses"][r].tolist()),
        )  # fmt: skip
        batch = batch.select_idxs(order)
        advantages, stats = compute_batch_advantage(
            token_level_rewards=batch.batch["rm_scores"],
            response_mask=batch.batch["response_mask"],
            index=batch.non_tensor_batch["uid"],
            judge_scores=torch.as_tensor(batch.non_tensor_batch[JUDGE_SCORE]),
            anchor_mask=torch.as_tensor(batch.non_tensor_batch[IS_ANCHOR]),
            algorithm_config=config.algorithm,
        )
        judged = stats_from_records(batch.non_tensor_batch.get(JUDGE_STATS, ()))
        results[mode] = (advantages, stats, judged, _requests(env, started))

    lazy, everything, eager = (results[m] for m in MODES)
    assert torch.equal(lazy[0], everything[0]) and torch.equal(lazy[0], eager[0])  # bit for bit
    assert (lazy[0] != 0).any() and lazy[1]["dagrpo/missing_scores"] == 1.0
    assert lazy[1]["dagrpo/pos_masked_frac"] + lazy[1]["dagrpo/neg_masked_frac"] > 0
    lazy_requests, skipped, all_requests, eager_requests = EXPECTED["hard-replace"]
    assert lazy[2].requests == lazy_requests and lazy[2].skipped_not_needed == skipped
    assert everything[2].requests == all_requests and everything[2].skipped_not_needed == 0
    assert eager[2] is None  # the reward function judged: no group records
    for result in (lazy, everything):  # as in the v1 test: cache misses plus the FAIL candidate's re-ask
        assert len(result[3]) == result[2].requests - result[2].cache_hits + 1
    assert len(lazy[3]) < len(everything[3]) <= len(eager[3])


def test_metrics_merge_counts_a_copied_record_once():
    """verl's padding rows copy sample 0 (its judge-stats record too): the step counts it once."""
    from dagrpo_verl.judge.metrics import JudgeStats, stats_from_records

    one = JudgeStats(requests=3, skipped_not_needed=1, last_ready_time=10.0, last_judged_time=12.5)
    two = JudgeStats(requests=2, latency_bins={5: 2}, last_ready_time=11.0)
    records = [one.to_record("a"), None, two.to_record("b"), one.to_record("a"), {"id": "c", "requests": -1}]
    merged = stats_from_records(records)
    assert merged.requests == 5 and merged.skipped_not_needed == 1
    assert merged.to_metrics()["judge/wall_exposed_s"] == pytest.approx(1.5)  # 12.5 - max(10, 11)
    assert stats_from_records([None, None]) is None
    assert math.isnan(JudgeStats().to_metrics()["judge/wall_exposed_s"])
    assert json.loads(json.dumps(one.to_record("a"))) == one.to_record("a")  # plain data: travels anywhere
