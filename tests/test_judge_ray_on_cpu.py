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
"""Judge metrics gathered from Ray actors, as a trainer hook does with verl's reward workers.

Two real async Ray actors (like verl's ``RewardLoopWorker``) run the reward function with the
rule judge; ``pop_metrics_from`` pops and merges their per-process counters.
"""

import pytest

from dagrpo_verl.judge import pop_metrics_from


def test_pop_metrics_from_reward_actors(ray_local):
    ray = ray_local

    @ray.remote(num_cpus=0)
    class RewardActor:
        async def reward(self, answer: str) -> dict:
            from dagrpo_verl.reward import compute_score

            return await compute_score(
                "math", f"\\boxed{{{answer}}}", "4", {"anchor": "2 + 2 = \\boxed{4}"}, judge={"backend": "rule"}
            )

    actors = [RewardActor.remote(), RewardActor.remote()]
    results = ray.get([actors[0].reward.remote("4"), actors[1].reward.remote("5"), actors[1].reward.remote("5")])
    assert [r["acc"] for r in results] == [1.0, 0.0, 0.0]
    metrics = pop_metrics_from(actors)
    assert metrics["judge/calls"] == 2 and metrics["judge/cache_hits"] == 1  # the repeated item came from cache
    assert metrics["judge/score_mean"] == pytest.approx((results[0]["judge_score"] + 2 * results[1]["judge_score"]) / 3)
    assert pop_metrics_from(actors)["judge/calls"] == 0  # popped: the next step starts from zero
