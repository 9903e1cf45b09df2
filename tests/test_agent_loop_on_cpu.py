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
"""The anchor mixers of ``dagrpo_verl.integration.agent_loop``, end to end on CPU: the v1 worker
(TransferQueue) and the legacy manager (``RayPPOTrainer``, DataProto).

Real: verl's ``RLHFDataset`` + ``collate_fn`` on a parquet written by
``dagrpo_verl.data.prepare``, verl's config (hydra ``ppo_trainer``), a real
``DaGRPOAgentLoopWorkerTQ`` instance (verl's ``AgentLoopWorkerTQ.__init__``, its
``generate_sequences`` entry, the ``single_turn_agent`` loop, the tiny Qwen2 tokenizer
of ``dagrpo_verl.cpu.models``), a real ``RewardLoopWorker`` Ray actor running a reward
function file through ``reward.custom_reward_function``, a real TransferQueue
(``tq.init()`` under local Ray), read back with ``tq.kv_batch_get``.

Stood in for: only the GPU generation server - ``ScriptedLLM`` below replaces verl's
``LLMServerClient`` and returns fixed response texts per prompt (with log-probs -0.5).
The v1 worker runs in the test process instead of a Ray actor (same class, same
methods); the legacy manager is created with verl's ``create`` and runs one real
``DaGRPOAgentLoopWorker`` Ray actor.
"""

from __future__ import annotations

import asyncio
import math
import textwrap
import uuid

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")
tq = pytest.importorskip("transfer_queue")

from dagrpo_verl.fields import ANCHOR_FAILED, ANCHOR_TEXT, IS_ANCHOR, JUDGE_SCORE  # noqa: E402

N = 4
RESPONSE_LENGTH = 40
EASY_Q, HARD_Q, BAD_ANCHOR_Q = "What is 7 + 5?", "What is 123 * 45?", "What is 9 - 4?"
ANSWERS = {EASY_Q: "12", HARD_Q: "5535", BAD_ANCHOR_Q: "5"}
ANCHORS = {
    EASY_Q: "We add. The answer is \\boxed{12}.",
    HARD_Q: "We compute 123 * 45 = 5535. The answer is \\boxed{5535}.",
    BAD_ANCHOR_Q: "The answer is \\boxed{6}.",  # fails verification
}
# per prompt, the n scripted rollouts (session order is not guaranteed, the multiset is)
SCRIPTS = {
    EASY_Q: ["The answer is \\boxed{12}.", "It is \\boxed{13}.", "\\boxed{12}", "no idea"],
    HARD_Q: ["\\boxed{5000}", "The answer is \\boxed{5534}.", "\\boxed{1}", "maybe 7"],
    BAD_ANCHOR_Q: ["\\boxed{3}", "\\boxed{2}", "\\boxed{1}", "\\boxed{0}"],
}

REWARD_FN = textwrap.dedent(
    """
    import math

    def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
        correct = f"\\\\boxed{{{ground_truth}}}" in solution_str
        anchor = bool((extra_info or {}).get("is_anchor", False))
        return {
            "score": 1.0 if correct else 0.0,
            "acc": 1.0 if correct else 0.0,
            # the anchor gets no judge score from this reward function: the mixer must fill max_score
            "judge_score": math.nan if anchor else (9.0 if correct else 2.0),
            "saw_anchor_flag": 1.0 if anchor else 0.0,
            "saw_validation_flag": 1.0 if (extra_info or {}).get("is_validation") else 0.0,
        }
    """
)


class ScriptedLLM:
    """Stand-in for verl's LLMServerClient (the GPU generation server): scripted responses + eos."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.calls: dict[str, int] = {}

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        text = self.tokenizer.decode(prompt_ids)
        question = next(q for q in SCRIPTS if q in text)
        i = self.calls.get(question, 0)
        self.calls[question] = i + 1
        ids = self.tokenizer.encode(SCRIPTS[question][i % N], add_special_tokens=False) + [self.tokenizer.eos_token_id]
        return TokenOutput(token_ids=ids, log_probs=[-0.5] * len(ids), stop_reason="completed")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from dagrpo_verl.cpu.models import build_tiny_qwen2
    from dagrpo_verl.data.prepare import prepare

    tmp = tmp_path_factory.mktemp("agent_loop_tq")
    model = build_tiny_qwen2(tmp / "tiny")
    reward_file = tmp / "reward_fn.py"
    reward_file.write_text(REWARD_FN)
    raw = tmp / "openr1.jsonl"
    import json

    raw.write_text(
        "".join(
            json.dumps(
                {
                    "data_source": "toy",
                    "prompt": [{"role": "user", "content": q}],
                    "target": [{"role": "assistant", "content": ANCHORS[q]}],
                    "ability": "math",
                    "reward_model": {"ground_truth": ANSWERS[q], "style": "rule"},
                    "extra_info": {"index": i, "split": "train"},
                }
            )
            + "\n"
            for i, q in enumerate(SCRIPTS)
        )
    )
    data = tmp / "train.parquet"
    prepare(str(raw), data)

    import pathlib

    import verl
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(pathlib.Path(verl.__file__).parent / "trainer/config"), version_base=None):
        base = compose(
            "ppo_trainer",
            overrides=[
                f"actor_rollout_ref.model.path={model}",
                "actor_rollout_ref.rollout.name=vllm",  # the server is stood in for; any name will do
                f"actor_rollout_ref.rollout.n={N}",
                "actor_rollout_ref.rollout.prompt_length=64",
                f"actor_rollout_ref.rollout.response_length={RESPONSE_LENGTH}",
                "actor_rollout_ref.rollout.calculate_log_probs=true",
                f"reward.custom_reward_function.path={reward_file}",
                "reward.custom_reward_function.name=compute_score",
                f"data.train_files=[{data}]",
                "data.max_prompt_length=64",
                "data.filter_overlong_prompts=false",
            ],
        )

    from omegaconf import OmegaConf

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # TQ 0.1.11 controller and every storage unit hold 1 CPU each (num_cpus=1): only one unit fits on 2 CPUs
    simple = {"total_storage_size": 2000, "num_data_storage_units": 1}
    tq.init(OmegaConf.create({"backend": {"storage_backend": "SimpleStorage", "SimpleStorage": simple}}))
    from verl.experimental.reward_loop import RewardLoopWorker

    reward_worker = ray.remote(RewardLoopWorker).remote(base)
    yield {"config": base, "data": data, "reward_worker": reward_worker}
    tq.close()
    ray.shutdown()


def _config(base, **anchor):
    from omegaconf import OmegaConf, open_dict

    config = OmegaConf.create(OmegaConf.to_container(base))
    with open_dict(config):
        config.algorithm.dagrpo = {"anchor": anchor}
    return config


def _batch(config, tokenizer):
    """A train batch exactly as verl's v1 trainer builds it (_fetch_one_gen_batch / _next_train_batch)."""
    from verl.utils import tensordict_utils as tu
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    dataset = RLHFDataset(data_files=[str(config.data.train_files[0])], tokenizer=tokenizer, config=config.data)
    batch_dict = collate_fn([dataset[i] for i in range(len(dataset))])
    batch_dict["uid"] = np.array([str(uuid.uuid4()) for _ in range(len(dataset))], dtype=object)
    batch = tu.get_tensordict(batch_dict)
    tu.assign_non_tensor_data(batch, "global_steps", 1)
    return batch


def _run(setup, validate=False, **anchor):
    """Run the worker on the 3-prompt batch; return {question: {session_key: sample dict}} read back from TQ."""
    from verl.utils import tensordict_utils as tu

    from dagrpo_verl.integration.agent_loop import DaGRPOAgentLoopWorkerTQ

    config = _config(setup["config"], **anchor)

    async def go():
        worker = DaGRPOAgentLoopWorkerTQ(config, None, None, [setup["reward_worker"]])
        worker.llm_client = ScriptedLLM(worker.tokenizer)
        batch = _batch(config, worker.tokenizer)
        if validate:
            tu.assign_non_tensor_data(batch, "validate", True)
        await worker.generate_sequences(batch)
        await asyncio.gather(*list(worker.background_tasks))
        return worker, batch

    worker, batch = asyncio.run(go())
    partition = "val" if validate else "train"
    listing = tq.kv_list(partition_id=partition)[partition]
    groups = {}
    for uid, raw_prompt in zip(batch["uid"], batch["raw_prompt"], strict=True):
        question = raw_prompt[-1]["content"]
        assert listing[uid]["status"] == "finished"
        keys = sorted(k for k in listing if k.startswith(f"{uid}_"))
        data = tq.kv_batch_get(keys=keys, partition_id=partition)
        groups[question] = {key[len(uid) + 1 :]: data[i] for i, key in enumerate(keys)}
        tq.kv_clear(keys=keys + [uid], partition_id=partition)
    return worker, groups


def _anchors(group):
    return {k: s for k, s in group.items() if bool(s[IS_ANCHOR])}


def _check_anchor_sample(worker, group, key, question):
    """An anchor sample has the rollouts' prompt, the expert text + eos as response, masks and reward right."""
    sample = group[key]
    rollout = next(s for s in group.values() if not bool(s[IS_ANCHOR]))
    expected = worker.tokenizer.encode(ANCHORS[question], add_special_tokens=False) + [worker.tokenizer.eos_token_id]
    assert len(expected) <= RESPONSE_LENGTH
    assert torch.equal(sample["prompts"], rollout["prompts"])
    assert sample["responses"].tolist() == expected
    length = len(expected)
    assert sample["response_mask"].tolist() == [1] * length
    assert sample["loss_mask"].tolist() == [1] * length
    assert torch.equal(sample["input_ids"], torch.cat([sample["prompts"], sample["responses"]]))
    assert sample["position_ids"].tolist() == list(range(sample["input_ids"].numel()))
    assert sample["rollout_log_probs"].tolist() == [0.0] * length
    assert sample["extra_fields"]["reward_extra_info"]["saw_anchor_flag"] == 1.0
    assert sample["extra_info"][IS_ANCHOR] is True
    assert sample["uid"] == rollout["uid"]
    return sample


def test_hard_group_gets_anchor_easy_group_does_not(setup):
    worker, groups = _run(setup, enable=True, trigger="hard", hard_max_accuracy=0.0, mode="replace")

    easy, hard = groups[EASY_Q], groups[HARD_Q]
    assert sorted(easy) == sorted(hard) == [f"{i}_0" for i in range(N)]  # group size unchanged
    assert not _anchors(easy)
    assert sorted(float(s[JUDGE_SCORE]) for s in easy.values()) == [2.0, 2.0, 9.0, 9.0]
    assert [float(s["rm_scores"].sum()) for s in easy.values()].count(1.0) == 2

    # all four hard rollouts score 0: the tie is broken by the smaller session id
    assert list(_anchors(hard)) == ["0_0"]
    anchor = _check_anchor_sample(worker, hard, "0_0", HARD_Q)
    assert anchor["rm_scores"].tolist() == [0.0] * (anchor["responses"].numel() - 1) + [1.0]
    assert float(anchor[JUDGE_SCORE]) == 10.0  # reward gave none: max_score
    for key in ("1_0", "2_0", "3_0"):
        rollout = hard[key]
        assert float(rollout["rm_scores"].sum()) == 0.0
        assert float(rollout[JUDGE_SCORE]) == 2.0
        assert rollout["rollout_log_probs"].tolist() == [-0.5] * rollout["responses"].numel()
        assert rollout["extra_fields"]["reward_extra_info"]["saw_anchor_flag"] == 0.0
    assert all(int(s[ANCHOR_FAILED]) == 0 for s in {**easy, **hard}.values())

    # the anchor that fails verification is counted on its group, and used (policy "use")
    bad = groups[BAD_ANCHOR_Q]
    assert list(_anchors(bad)) == ["0_0"]
    assert float(bad["0_0"]["rm_scores"].sum()) == 0.0
    assert all(int(s[ANCHOR_FAILED]) == 1 for s in bad.values())


def test_skip_failed_anchor_and_always_append(setup):
    worker, groups = _run(
        setup, enable=True, trigger="always", mode="append", num_anchors=2, on_failed_verification="skip"
    )
    # "always": the easy group gets anchors too; append: sessions n, n+1 hold them
    for question in (EASY_Q, HARD_Q):
        group = groups[question]
        assert sorted(group) == [f"{i}_0" for i in range(N + 2)]
        assert sorted(_anchors(group)) == [f"{N}_0", f"{N + 1}_0"]
        _check_anchor_sample(worker, group, f"{N}_0", question)
    # skipped: no anchor, rollouts untouched, failure counted on every sample of the group
    bad = groups[BAD_ANCHOR_Q]
    assert sorted(bad) == [f"{i}_0" for i in range(N)] and not _anchors(bad)
    assert all(int(s[ANCHOR_FAILED]) == 2 for s in bad.values())


def test_anchors_disabled_and_validation_add_only_the_two_fields(setup):
    _, groups = _run(setup, enable=False)
    for group in groups.values():
        assert sorted(group) == [f"{i}_0" for i in range(N)] and not _anchors(group)
        assert all(ANCHOR_FAILED not in s.keys() for s in group.values())
        assert all(not math.isnan(float(s[JUDGE_SCORE])) for s in group.values())

    _, groups = _run(setup, validate=True, enable=True, trigger="always")
    for group in groups.values():
        assert len(group) == setup["config"].actor_rollout_ref.rollout.val_kwargs.n
        assert not _anchors(group)


def test_validation_samples_are_flagged_for_the_reward_function(setup):
    """The reward function sees extra_info.is_validation: True for validation prompts, False for training ones."""
    for validate in (True, False):
        _, groups = _run(setup, validate=validate, enable=False)
        flags = [
            s["extra_fields"]["reward_extra_info"]["saw_validation_flag"] for g in groups.values() for s in g.values()
        ]
        assert flags and set(flags) == {float(validate)}


def test_validation_makes_no_judge_call(setup):
    """End to end with the DaGRPO reward function in a real RewardLoopWorker and an OpenAI-compatible judge on
    127.0.0.1: validation responses are graded but not judged (unless reward_kwargs.judge_validation=true)."""
    from omegaconf import OmegaConf, open_dict
    from verl.experimental.reward_loop import RewardLoopWorker

    from dagrpo_verl.judge.testing import LocalJudgeServer, fixed_score

    with LocalJudgeServer(fixed_score(6)) as server:
        counts = {}
        for judge_validation in (False, True):
            config = OmegaConf.create(OmegaConf.to_container(setup["config"]))
            with open_dict(config):
                config.reward.custom_reward_function.path = "pkg://dagrpo_verl.reward"
                config.reward.custom_reward_function.reward_kwargs = {
                    "judge": {"backend": "openai", "base_url": server.url, "model": "stand-in"},
                    "judge_validation": judge_validation,
                }
            worker = ray.remote(RewardLoopWorker).remote(config)
            judged = {**setup, "reward_worker": worker}
            before = server.count
            _, groups = _run(judged, validate=True, enable=False)
            counts[judge_validation] = server.count - before
            infos = [s["extra_fields"]["reward_extra_info"] for g in groups.values() for s in g.values()]
            assert [i["acc"] for i in infos] and all(i["acc"] in (0.0, 1.0) for i in infos)  # still graded
            if not judge_validation:
                assert all(math.isnan(i[JUDGE_SCORE]) for i in infos)
                before = server.count
                _run(judged, validate=False, enable=False)  # training responses are judged
                assert server.count - before == N * len(SCRIPTS)
            ray.kill(worker)
    assert counts == {False: 0, True: len(SCRIPTS)}


def test_anchor_text_reaches_the_worker_through_extra_info(setup):
    """The prepared parquet's extra_info.anchor is what the worker sees (RLHFDataset keeps extra_info)."""
    from transformers import AutoTokenizer

    from dagrpo_verl.integration.agent_loop import anchor_text_of

    config = setup["config"]
    batch = _batch(config, AutoTokenizer.from_pretrained(config.actor_rollout_ref.model.path))
    texts = {
        p[-1]["content"]: anchor_text_of(info) for p, info in zip(batch["raw_prompt"], batch["extra_info"], strict=True)
    }
    assert texts == ANCHORS
    assert all(ANCHOR_TEXT in info for info in batch["extra_info"])


# ------------------------------------------------------------------------------------------------ legacy trainer


@pytest.fixture(scope="module")
def legacy_manager(setup):
    """verl's ``AgentLoopManager.create`` path with our class, one worker actor, the scripted server."""
    import sys

    import cloudpickle
    from omegaconf import open_dict
    from transformers import AutoTokenizer

    from dagrpo_verl.integration.agent_loop import DaGRPOAgentLoopManager

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # ScriptedLLM travels to the worker actor
    config = _config(setup["config"], enable=True, trigger="hard", on_failed_verification="skip")
    with open_dict(config):
        config.trainer.use_v1 = False
        config.actor_rollout_ref.rollout.agent.num_workers = 1
    tokenizer = AutoTokenizer.from_pretrained(config.actor_rollout_ref.model.path)
    manager = DaGRPOAgentLoopManager.create(
        config=config,
        llm_client=ScriptedLLM(tokenizer),
        teacher_client=None,
        reward_loop_worker_handles=[setup["reward_worker"]],
    )
    return manager, config, tokenizer


def _legacy_step(config, tokenizer, manager, validate=False):
    """The generation part of verl's RayPPOTrainer.fit (verl 0.9.1 ray_trainer.py), with our manager."""
    from verl.protocol import DataProto
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    dataset = RLHFDataset(data_files=[str(config.data.train_files[0])], tokenizer=tokenizer, config=config.data)
    batch = DataProto.from_single_dict(collate_fn([dataset[i] for i in range(len(dataset))]))
    batch.non_tensor_batch["uid"] = np.array([str(uuid.uuid4()) for _ in range(len(batch))], dtype=object)
    gen_batch = RayPPOTrainer._get_gen_batch(None, batch)  # does not use self
    gen_batch.meta_info["global_steps"] = 1
    if validate:
        gen_batch.meta_info["validate"] = True
    output = manager.generate_sequences(gen_batch.repeat(repeat_times=N, interleave=True))
    return batch.repeat(repeat_times=N, interleave=True).union(output)


def test_legacy_manager_replaces_by_uid_and_union_still_works(legacy_manager):
    manager, config, tokenizer = legacy_manager
    batch = _legacy_step(config, tokenizer, manager)
    questions = np.array([p[-1]["content"] for p in batch.non_tensor_batch["raw_prompt"]])
    is_anchor = batch.non_tensor_batch[IS_ANCHOR]
    judge = batch.non_tensor_batch[JUDGE_SCORE]
    assert is_anchor.dtype == bool and judge.dtype == np.float32 and len(batch) == 3 * N

    hard = np.flatnonzero(questions == HARD_Q)
    assert is_anchor[hard].tolist() == [True, False, False, False]  # all tied at 0: first row replaced
    assert not is_anchor[questions != HARD_Q].any()  # easy group: accuracy 0.5; bad anchor: skipped
    assert batch.non_tensor_batch[ANCHOR_FAILED][questions == BAD_ANCHOR_Q].tolist() == [1] * N
    assert batch.non_tensor_batch[ANCHOR_FAILED][questions != BAD_ANCHOR_Q].tolist() == [0] * (2 * N)

    row, rollout = hard[0], hard[1]
    prompt_width = batch.batch["prompts"].size(1)
    assert torch.equal(batch.batch["prompts"][row], batch.batch["prompts"][rollout])
    attention = batch.batch["attention_mask"]
    assert torch.equal(attention[row, :prompt_width], attention[rollout, :prompt_width])
    expected = tokenizer.encode(ANCHORS[HARD_Q], add_special_tokens=False) + [tokenizer.eos_token_id]
    length = len(expected)
    assert batch.batch["responses"][row, :length].tolist() == expected
    assert batch.batch["response_mask"][row].tolist() == [1] * length + [0] * (RESPONSE_LENGTH - length)
    assert batch.batch["attention_mask"][row, prompt_width:].tolist() == batch.batch["response_mask"][row].tolist()
    sequence = torch.cat([batch.batch["prompts"][row], batch.batch["responses"][row]])
    assert torch.equal(batch.batch["input_ids"][row], sequence)
    assert batch.batch["rm_scores"][row].nonzero().flatten().tolist() == [length - 1]
    assert float(batch.batch["rm_scores"][row].sum()) == 1.0
    assert batch.batch["rollout_log_probs"][row].abs().sum() == 0
    assert float(batch.batch["rollout_log_probs"][rollout, 0]) == -0.5
    assert judge[row] == 10.0 and judge[rollout] == 2.0
    assert batch.non_tensor_batch["saw_anchor_flag"][hard].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_legacy_manager_skips_validation(legacy_manager):
    manager, config, tokenizer = legacy_manager
    batch = _legacy_step(config, tokenizer, manager, validate=True)
    assert not batch.non_tensor_batch[IS_ANCHOR].any()
    assert batch.non_tensor_batch["saw_validation_flag"].tolist() == [1.0] * len(batch)
    train = _legacy_step(config, tokenizer, manager)
    assert train.non_tensor_batch["saw_validation_flag"].tolist() == [0.0] * len(train)


def test_setup_errors_name_the_key(setup):
    from omegaconf import open_dict

    from dagrpo_verl.integration.agent_loop import check_anchor_setup

    config = _config(setup["config"], mode="append")
    with open_dict(config):
        config.trainer.use_v1 = False
    with pytest.raises(ValueError, match="mode=append is not possible with the legacy trainer.*ray_trainer.py"):
        check_anchor_setup(config, legacy=True, reward_loop_worker_handles=[object()])
    with pytest.raises(ValueError, match="DaGRPOAgentLoopManager is for trainer.use_v1=false"):
        check_anchor_setup(_config(setup["config"]), legacy=True, reward_loop_worker_handles=[object()])
    with pytest.raises(ValueError, match="needs rewards inside the agent loop"):
        check_anchor_setup(_config(setup["config"]), legacy=False, reward_loop_worker_handles=None)
    with pytest.raises(ValueError, match="num_anchors=4 with mode=replace must be <"):
        check_anchor_setup(_config(setup["config"], num_anchors=N), legacy=False, reward_loop_worker_handles=[1])
    # rectification-only runs need no reward workers
    disabled = _config(setup["config"], enable=False)
    assert not check_anchor_setup(disabled, legacy=False, reward_loop_worker_handles=None).enable


def test_anchor_response_is_cut_to_the_response_length(setup):
    from transformers import AutoTokenizer

    from dagrpo_verl.integration.agent_loop import anchor_response_ids

    tokenizer = AutoTokenizer.from_pretrained(setup["config"].actor_rollout_ref.model.path)
    text = "We add the numbers one by one. " * 20
    full = tokenizer.encode(text, add_special_tokens=False)
    assert len(full) > RESPONSE_LENGTH
    assert anchor_response_ids(tokenizer, text, RESPONSE_LENGTH) == full[:RESPONSE_LENGTH]  # cut: no eos
    assert anchor_response_ids(tokenizer, "Yes.", RESPONSE_LENGTH)[-1] == tokenizer.eos_token_id


def test_v1_manager_create_runs_the_worker_as_a_ray_actor(setup):
    """The install path: verl's ``AgentLoopManagerTQ.create`` with our manager spawns our worker actor,
    which fires the groups in the background and marks each prompt finished once its group is put."""
    import sys
    import time

    import cloudpickle
    from omegaconf import open_dict
    from transformers import AutoTokenizer

    from dagrpo_verl.integration.agent_loop import DaGRPOAgentLoopManagerTQ

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    config = _config(setup["config"], enable=True, trigger="hard")
    with open_dict(config):
        config.actor_rollout_ref.rollout.agent.num_workers = 1
    tokenizer = AutoTokenizer.from_pretrained(config.actor_rollout_ref.model.path)
    manager = DaGRPOAgentLoopManagerTQ.create(
        config=config,
        llm_client=ScriptedLLM(tokenizer),
        teacher_client=None,
        reward_loop_worker_handles=[setup["reward_worker"]],
    )
    batch = _batch(config, tokenizer)
    manager.generate_sequences(batch)
    uids = list(batch["uid"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        listing = tq.kv_list(partition_id="train").get("train", {})
        if all(listing.get(uid, {}).get("status") == "finished" for uid in uids):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"groups not finished: { {uid: listing.get(uid) for uid in uids} }")
    hard_uid = next(u for u, p in zip(uids, batch["raw_prompt"], strict=True) if p[-1]["content"] == HARD_Q)
    keys = sorted(k for k in listing if k.startswith(f"{hard_uid}_"))
    data = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=[IS_ANCHOR, JUDGE_SCORE, "uid"])
    assert data[IS_ANCHOR].tolist() == [True, False, False, False]
    assert data[JUDGE_SCORE].dtype == torch.float32 and data[JUDGE_SCORE].tolist() == [10.0, 2.0, 2.0, 2.0]
    all_keys = [k for k in listing if k.split("_")[0] in uids]
    tq.kv_clear(keys=all_keys, partition_id="train")
