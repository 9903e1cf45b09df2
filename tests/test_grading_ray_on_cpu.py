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
"""The reward function's grading is bounded inside a real async Ray actor (local Ray), as in
verl's ``RewardLoopWorker``: a response that hangs math-verify (``\\boxed{10^{10^{10}}}``) ends
at ``reward_kwargs.grading.timeout_s`` with R = 0 and ``grade_timeout`` = 1, and the actor's
event loop answers other calls meanwhile. The judge is off (``backend: none``)."""

import time

TIMEOUT_S = 2.0


def test_hanging_grade_is_cut_in_a_ray_actor_and_the_loop_stays_free(ray_local):
    ray = ray_local

    @ray.remote(num_cpus=0)
    class RewardActor:
        async def reward(self, response: str, truth: str) -> dict:
            from dagrpo_verl.reward import compute_score

            return await compute_score(
                "math", response, truth, {}, judge={"backend": "none"}, grading={"timeout_s": TIMEOUT_S, "workers": 1}
            )

        async def ping(self) -> float:
            return time.time()

    actor = RewardActor.remote()
    warm = ray.get(actor.reward.remote("\\boxed{4}", "4"), timeout=120)  # starts the actor and its grading process
    assert (warm["score"], warm["grade_timeout"], warm["grade_error"]) == (1.0, 0.0, 0.0)

    start = time.time()
    hanging = actor.reward.remote("\\boxed{10^{10^{10}}}", "1")
    time.sleep(0.3)
    pinged_at = ray.get(actor.ping.remote(), timeout=30)
    result = ray.get(hanging, timeout=60)
    elapsed = time.time() - start
    assert pinged_at - start < TIMEOUT_S  # answered while the grade was still running
    assert result["score"] == 0.0 and result["grade_timeout"] == 1.0 and result["grade_error"] == 0.0
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + 30  # cut at the bound (generous allowance for a busy machine)
    after = ray.get(actor.reward.remote("\\boxed{\\frac{1}{2}}", "0.5"), timeout=120)
    assert after["score"] == 1.0 and after["grade_timeout"] == 0.0
