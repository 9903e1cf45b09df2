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
"""``dagrpo_verl.reward.compute_score`` as verl 0.9.1 loads and calls it.

The judge LLM is stood in for by ``dagrpo_verl.judge.testing.LocalJudgeServer`` (a local
OpenAI-compatible server on 127.0.0.1 whose answers the test controls). Grading is the real
math-verify; verl's own loader (``get_custom_reward_fn``) and reward manager
(``NaiveRewardManager.run_single``) are used unchanged.
"""

import asyncio
import inspect
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from dagrpo_verl.fields import ACC, GRADE_ERROR, GRADE_TIMEOUT, JUDGE_SCORE, REWARD_ERROR
from dagrpo_verl.judge import aclose_judges, pop_metrics
from dagrpo_verl.judge.testing import LocalJudgeServer, fixed_score
from dagrpo_verl.reward import compute_score

KEYS = {"score", ACC, JUDGE_SCORE, GRADE_TIMEOUT, GRADE_ERROR, REWARD_ERROR}
GRADED = {GRADE_TIMEOUT: 0.0, GRADE_ERROR: 0.0, REWARD_ERROR: 0.0}  # graded in time, without failing


def verl_reward_fn(judge_settings: dict):
    """The reward function exactly as verl's ``get_custom_reward_fn`` builds it from a config."""
    from verl.trainer.ppo.reward import get_custom_reward_fn

    config = OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {
                    "path": "pkg://dagrpo_verl.reward",
                    "name": "compute_score",
                    "reward_kwargs": {"judge": judge_settings},
                }
            }
        }
    )
    return get_custom_reward_fn(config)


def score(fn, **kwargs) -> dict:
    """Call the reward function on a short-lived event loop, closing the judges' sessions after."""

    async def call():
        try:
            return await fn(**kwargs)
        finally:
            await aclose_judges()

    return asyncio.run(call())


def test_is_an_async_function_verl_awaits():
    assert inspect.iscoroutinefunction(compute_score)


def test_loaded_through_verl_config_with_the_openai_judge():
    with LocalJudgeServer(fixed_score(8)) as server:
        fn = verl_reward_fn({"backend": "openai", "base_url": server.url, "model": "stand-in"})
        right = score(
            fn,
            data_source="math",
            solution_str="So $x = \\frac{1}{2}$, i.e. \\boxed{0.5}",
            ground_truth="\\frac{1}{2}",
            extra_info={"question": "Solve 2x = 1.", "anchor": "x = 1/2. \\boxed{\\frac12}"},
        )
        wrong = score(
            fn,
            data_source="math",
            solution_str="\\boxed{2}",
            ground_truth="\\frac{1}{2}",
            extra_info={"question": "Solve 2x = 1."},
        )
    assert right == {"score": 1.0, ACC: 1.0, JUDGE_SCORE: 8.0, **GRADED}
    assert wrong == {"score": 0.0, ACC: 0.0, JUDGE_SCORE: 8.0, **GRADED}
    with_anchor, without_anchor = (r.user for r in server.requests)
    assert "Solve 2x = 1." in with_anchor
    assert "REFERENCE SOLUTION (trusted)" in with_anchor and "x = 1/2. \\boxed{\\frac12}" in with_anchor
    assert "REFERENCE FINAL ANSWER" in without_anchor and "\\frac{1}{2}" in without_anchor  # ground truth as reference


def test_deferred_samples_are_graded_but_not_judged():
    """extra_info.judge_deferred (set by the DaGRPO agent loop, which judges the group itself after grading):
    graded, no judge call, S = NaN. The reward function no longer decides anchor scores (one home: the mixer)."""
    with LocalJudgeServer(fixed_score(4)) as server:
        fn = verl_reward_fn({"backend": "openai", "base_url": server.url, "model": "stand-in"})
        info = {"question": "q", "anchor": "\\boxed{7}"}
        deferred = score(
            fn,
            data_source="math",
            solution_str="\\boxed{7}",
            ground_truth="7",
            extra_info={**info, "judge_deferred": np.True_, "is_anchor": True},
        )
        assert server.count == 0
        pop_metrics()
        eager = score(fn, data_source="math", solution_str="\\boxed{7}", ground_truth="7", extra_info=info)
        assert server.count == 1
        metrics = pop_metrics()
    assert deferred[ACC] == 1.0 and math.isnan(deferred[JUDGE_SCORE]) and set(deferred) == KEYS
    assert eager[JUDGE_SCORE] == 4.0
    # the eager call marks the sample graded, then judged: the judge's wall time after grading is measured
    assert metrics["judge/requests"] == 1 and metrics["judge/wall_exposed_s"] >= 0.0


def test_dead_judge_gives_nan_with_the_same_keys():
    fn = verl_reward_fn(
        {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m", "max_retries": 1, "deadline_s": 2.0}
    )
    result = score(fn, data_source="math", solution_str="\\boxed{3}", ground_truth="3", extra_info={})
    assert set(result) == KEYS
    assert result[ACC] == 1.0 and math.isnan(result[JUDGE_SCORE])


def test_backend_none_and_rule():
    none = score(
        verl_reward_fn({"backend": "none"}),
        data_source="math",
        solution_str="\\boxed{3}",
        ground_truth="3",
        extra_info=None,
    )
    assert set(none) == KEYS and math.isnan(none[JUDGE_SCORE])
    pop_metrics()
    rule = score(
        verl_reward_fn({"backend": "rule"}),
        data_source="math",
        solution_str="3 + 4 = 7, \\boxed{7}",
        ground_truth="7",
        extra_info={"anchor": "3 + 4 = 7 so \\boxed{7}"},
    )
    assert rule == {"score": 1.0, ACC: 1.0, JUDGE_SCORE: 10.0, **GRADED}
    assert pop_metrics()["judge/calls"] == 1


def test_bad_reward_kwargs_name_the_key():
    with pytest.raises(ValueError, match=r"reward\.custom_reward_function\.reward_kwargs\.judg\b"):
        score(compute_score, data_source="math", solution_str="x", ground_truth="1", judg={"backend": "rule"})
    with pytest.raises(ValueError, match=r"reward_kwargs\.judge\.backend"):
        score(verl_reward_fn({"backend": "gpt4"}), data_source="math", solution_str="x", ground_truth="1")
    with pytest.raises(ValueError, match=r"reward_kwargs\.max_error_frac=2"):
        score(compute_score, data_source="math", solution_str="x", ground_truth="1", max_error_frac=2)


def test_bad_rows_are_counted_failures_not_exceptions(caplog, monkeypatch):
    """A row the reward cannot read scores 0 with a missing judge score and reward_error = 1; the WARNING
    and the kept example name the error and the row (docs/reliability.md)."""
    from dagrpo_verl import reward

    monkeypatch.setattr(reward, "_SAMPLE_ERRORS", reward._SampleErrors())  # this process's record, fresh
    failed = {"score": 0.0, ACC: 0.0, GRADE_TIMEOUT: 0.0, GRADE_ERROR: 0.0, REWARD_ERROR: 1.0}
    with caplog.at_level("WARNING", logger="dagrpo_verl.reward"):
        for truth, extra_info in [(["1", "2"], {"index": 7}), ("1", {"anchor": 3, "index": 8}), ("1", ["q"])]:
            result = score(
                compute_score, data_source="math", solution_str="\\boxed{1}", ground_truth=truth, extra_info=extra_info
            )
            assert math.isnan(result.pop(JUDGE_SCORE)) and result == failed
    examples = reward.pop_error_examples()
    assert len(examples) == 3
    assert "reward_model.ground_truth" in examples[0] and "extra_info.index='7'" in examples[0]
    assert "extra_info['anchor']" in examples[1] and "extra_info must be a dict" in examples[2]
    assert "1 sample(s) raised" in caplog.text  # one WARNING per 30 s, not one per sample


def test_bad_grading_settings_name_the_key():
    """``reward_kwargs.grading`` as verl passes it (a DictConfig through get_custom_reward_fn) or a dict."""
    from verl.trainer.ppo.reward import get_custom_reward_fn

    from dagrpo_verl.grading.pool import GradingConfigError

    def loaded(grading):
        config = OmegaConf.create(
            {
                "reward": {
                    "custom_reward_function": {
                        "path": "pkg://dagrpo_verl.reward",
                        "name": "compute_score",
                        "reward_kwargs": {"judge": {"backend": "none"}, "grading": grading},
                    }
                }
            }
        )
        return get_custom_reward_fn(config)

    good = score(
        loaded({"timeout_s": 5, "workers": 1}), data_source="math", solution_str="\\boxed{2}", ground_truth="2"
    )
    assert good == {"score": 1.0, ACC: 1.0, JUDGE_SCORE: good[JUDGE_SCORE], **GRADED}
    with pytest.raises(GradingConfigError, match=r"reward_kwargs\.grading\.timeot_s"):
        score(loaded({"timeot_s": 5}), data_source="math", solution_str="x", ground_truth="1")
    with pytest.raises(GradingConfigError, match=r"reward_kwargs\.grading\.workers=0"):
        score(compute_score, data_source="math", solution_str="x", ground_truth="1", grading={"workers": 0})
    with pytest.raises(GradingConfigError, match=r"reward_kwargs\.grading must be a mapping"):
        score(compute_score, data_source="math", solution_str="x", ground_truth="1", grading=5)


def test_anchor_given_as_chat_messages():
    """LUFFY-style ``target`` messages are accepted as the anchor text."""
    with LocalJudgeServer(fixed_score(9)) as server:
        fn = verl_reward_fn({"backend": "openai", "base_url": server.url, "model": "m"})
        anchor = np.array([{"role": "assistant", "content": "Since 2 + 2 = 4, \\boxed{4}"}], dtype=object)
        result = score(
            fn, data_source="math", solution_str="\\boxed{4}", ground_truth="4", extra_info={"anchor": anchor}
        )
    assert result == {"score": 1.0, ACC: 1.0, JUDGE_SCORE: 9.0, **GRADED}
    assert "REFERENCE SOLUTION" in server.requests[0].user and "Since 2 + 2 = 4" in server.requests[0].user


def test_reward_router_address_serves_as_base_url():
    with LocalJudgeServer(fixed_score(6)) as server:
        result = score(
            compute_score,
            data_source="math",
            solution_str="\\boxed{1}",
            ground_truth="1",
            judge={"backend": "openai", "model": "rm"},
            reward_router_address=f"127.0.0.1:{server.port}",
            reward_model_tokenizer=None,
        )
    assert result[JUDGE_SCORE] == 6.0 and server.count == 1


def test_verl_reward_manager_runs_judge_calls_concurrently(tmp_path):
    """verl's NaiveRewardManager awaits the function per sample; the reward loop gathers the
    samples, so judge requests overlap (bounded by judge.max_concurrency)."""
    from transformers import AutoTokenizer
    from verl import DataProto
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager

    from dagrpo_verl.cpu.models import build_tiny_qwen2

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_qwen2(tmp_path / "tiny"))
    answers = ["\\boxed{5}", "\\boxed{6}"] * 4
    responses = [tokenizer(a)["input_ids"] for a in answers]
    width = max(map(len, responses))
    response_ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in responses])
    prompt_ids = torch.ones((len(answers), 3), dtype=torch.long)
    mask = torch.cat(
        [torch.ones_like(prompt_ids), torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in responses])], dim=1
    )
    data = DataProto.from_dict(
        tensors={"prompts": prompt_ids, "responses": response_ids, "attention_mask": mask},
        non_tensors={
            "data_source": np.array(["math"] * len(answers), dtype=object),
            "reward_model": np.array([{"ground_truth": "5", "style": "rule"}] * len(answers), dtype=object),
            "extra_info": np.array([{"question": f"q{i}", "index": i} for i in range(len(answers))], dtype=object),
        },
    )
    with LocalJudgeServer(fixed_score(7, delay_s=0.3)) as server:
        fn = verl_reward_fn({"backend": "openai", "base_url": server.url, "model": "m", "max_concurrency": 3})

        async def run_all():  # as in verl's RewardLoopWorker: the manager lives on the running loop
            manager = NaiveRewardManager(OmegaConf.create({}), tokenizer, fn)
            outputs = await asyncio.gather(*(manager.run_single(data[i : i + 1]) for i in range(len(data))))
            await aclose_judges()
            return outputs

        outputs = asyncio.run(run_all())
    assert [o["reward_score"] for o in outputs] == [1.0, 0.0] * 4
    assert all(o["reward_extra_info"][JUDGE_SCORE] == 7.0 for o in outputs)
    assert server.count == 8 and server.max_in_flight == 3


def test_off_main_thread_grading_matches():
    """Off the main thread (verl's Ray actors) grading runs in a worker thread next to the
    judge request; the results must be the same as in the main thread."""
    import threading

    results = []
    with LocalJudgeServer(fixed_score(5)) as server:
        fn = verl_reward_fn({"backend": "openai", "base_url": server.url, "model": "m"})
        for answer in ("\\boxed{\\frac{3}{4}}", "\\boxed{0.8}"):
            kwargs = {"data_source": "math", "solution_str": answer, "ground_truth": "0.75", "extra_info": {}}
            thread = threading.Thread(target=lambda kw=kwargs: results.append(score(fn, **kw)))
            thread.start()
            thread.join(60)
            results.append(score(fn, **kwargs))
    right = {"score": 1.0, ACC: 1.0, JUDGE_SCORE: 5.0, **GRADED}
    wrong = {"score": 0.0, ACC: 0.0, JUDGE_SCORE: 5.0, **GRADED}
    assert results == [right, right, wrong, wrong]


def test_lone_surrogates_reach_the_judge_as_replacement_characters():
    """A response (policy output) or question/anchor (data) with lone surrogates: graded and judged,
    never an UnicodeEncodeError (the judge's HTTP body and cache key need UTF-8)."""
    with LocalJudgeServer(fixed_score(6)) as server:
        fn = verl_reward_fn({"backend": "openai", "base_url": server.url, "model": "m"})
        result = score(
            fn,
            data_source="math",
            solution_str="\ud800 so \\boxed{4}",
            ground_truth="4",
            extra_info={"question": "What is 2+2?\udfff", "anchor": "\ud83d 2 + 2 = \\boxed{4}"},
        )
    assert result == {"score": 1.0, ACC: 1.0, JUDGE_SCORE: 6.0, **GRADED}
    assert "\ufffd so \\boxed{4}" in server.requests[0].user and "What is 2+2?\ufffd" in server.requests[0].user


def test_require_boxed_must_be_a_bool():
    with pytest.raises(ValueError, match=r"reward_kwargs\.require_boxed='false' must be true or false"):
        score(compute_score, data_source="math", solution_str="x", ground_truth="1", require_boxed="false")
