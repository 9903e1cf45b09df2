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
"""Validation responses are graded but not judged unless ``reward_kwargs.judge_validation=true``.

Real: ``dagrpo_verl.reward.compute_score`` as verl's ``get_custom_reward_fn`` loads it from the composed
``dagrpo_trainer`` config, an OpenAI-compatible judge on 127.0.0.1 (``LocalJudgeServer``), math-verify
grading, the start-up checks. The agent loops that set ``extra_info.is_validation`` are tested in
``tests/test_agent_loop_on_cpu.py`` (``test_validation_makes_no_judge_call`` runs the whole path).
"""

from __future__ import annotations

import asyncio
import logging
import math

import pytest
from omegaconf import OmegaConf

from dagrpo_verl.fields import IS_VALIDATION, JUDGE_SCORE
from dagrpo_verl.integration.validation import validate_dagrpo_config
from dagrpo_verl.judge import aclose_judges
from dagrpo_verl.judge.testing import LocalJudgeServer, fixed_score
from dagrpo_verl.main import compose_config

R = "reward.custom_reward_function"


def _reward_fn(server_url: str, *overrides: str):
    from verl.trainer.ppo.reward import get_custom_reward_fn

    judge = f"{R}.reward_kwargs.judge"
    config = compose_config(
        [f"{judge}.backend=openai", f"+{judge}.base_url={server_url}", f"+{judge}.model=stand-in", *overrides]
    )
    return get_custom_reward_fn(config)


def _score(fn, validation: bool, response: str = "\\boxed{2}") -> dict:
    async def call():
        try:
            extra_info = {"question": "1 + 1?", "anchor": "\\boxed{2}", IS_VALIDATION: validation}
            return await fn(data_source="math", solution_str=response, ground_truth="2", extra_info=extra_info)
        finally:
            await aclose_judges()

    return asyncio.run(call())


def test_validation_is_graded_without_a_judge_call():
    with LocalJudgeServer(fixed_score(7)) as server:
        fn = _reward_fn(server.url)
        validation = _score(fn, validation=True)
        assert server.count == 0
        training = _score(fn, validation=False)
        assert server.count == 1
        # another response: the judge's cache would answer the same one without a request
        opted_in = _score(_reward_fn(server.url, f"{R}.reward_kwargs.judge_validation=true"), True, "So \\boxed{2}.")
        assert server.count == 2
    assert validation["acc"] == 1.0 and math.isnan(validation[JUDGE_SCORE])
    assert set(validation) == set(training)  # verl needs the same keys for every sample
    assert training[JUDGE_SCORE] == opted_in[JUDGE_SCORE] == 7.0


def test_a_non_bool_setting_is_named():
    fn = _reward_fn("http://127.0.0.1:9/v1", f"{R}.reward_kwargs.judge_validation=maybe")
    with pytest.raises(ValueError, match="judge_validation"):
        _score(fn, validation=True)


def test_start_up_warns_when_no_manager_marks_validation(caplog):
    judge = f"{R}.reward_kwargs.judge"
    common = [f"{judge}.backend=openai", f"+{judge}.base_url=http://judge:8000/v1", f"+{judge}.model=m"]
    plain = ["algorithm.dagrpo.anchor.enable=false", "actor_rollout_ref.rollout.agent.agent_loop_manager_class=null"]
    for overrides, warned in [(common, False), (common + plain, True)]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dagrpo_verl.integration.validation"):
            validate_dagrpo_config(compose_config(overrides))
        assert ("and every validation response (scores nothing uses)" in caplog.text) is warned, overrides
    assert OmegaConf.select(compose_config(), f"{R}.reward_kwargs.judge_validation") is False
