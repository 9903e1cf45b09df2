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
"""Bounded grading (``dagrpo_verl.grading.pool``): real grading processes, real math-verify.

The hostile inputs are the ones that hang math-verify where verl runs reward functions (worker
threads, Ray actors' event loops, where its signal timeouts are off): NeMo-RL's
``(2+\\sqrt{3})^{1000}`` response (from its ``test_math_timeout_handling``) and
``\\boxed{10^{10^{10}}}`` (one big-integer power in C, which no signal interrupts). The time
checks are generous multiples of the bound, not micro-benchmarks (``benchmarks/bench_grading.py``
measures the overhead).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from dagrpo_verl.grading.pool import (
    GradeStatus,
    GradingConfig,
    GradingConfigError,
    GradingPool,
    grading_config_from,
)

TIMEOUT_S = 2.0
#: A generous allowance for starting a replacement grading process (about 2 s measured on 2 busy cores).
START_ALLOWANCE_S = 45.0

NEMO_RL_TIMEOUT_RESPONSE = (
    "We are given that \\(x = (2 + \\sqrt{3})^{1000}\\), so \\(n = \\lfloor x \\rfloor\\), and \\(f = x - n\\).\n"
    "\\[\nx = \\sum_{k=0}^{1000} \\binom{1000}{k} (2)^{1000-k} (\\sqrt{3})^k\n\\]\n"
    "Now, let's consider \\(f = x - n = (2 + \\sqrt{3})^{1000} - \\lfloor (2 + \\sqrt{3})^{10"
)
HANGS = {"nemo_rl_2_plus_sqrt3_pow_1000": (NEMO_RL_TIMEOUT_RESPONSE, "13"), "tower": ("\\boxed{10^{10^{10}}}", "1")}


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.fixture(scope="module")
def pool():
    pool = GradingPool(GradingConfig(timeout_s=TIMEOUT_S, workers=1))
    yield pool
    pool.close()


@pytest.mark.parametrize("name", sorted(HANGS))
def test_hang_cases_end_within_the_bound_in_a_worker_thread(pool, name):
    response, truth = HANGS[name]
    outcome = {}

    def grade_off_main_thread():
        start = time.monotonic()
        outcome["result"] = pool.grade(response, truth, "math")
        outcome["seconds"] = time.monotonic() - start

    before = pool.stats()["grade/timeouts"]
    worker = threading.Thread(target=grade_off_main_thread)
    worker.start()
    worker.join(TIMEOUT_S + START_ALLOWANCE_S)
    assert not worker.is_alive(), "grading did not end within the bound"
    result = outcome["result"]
    assert (result.correct, result.status) == (False, GradeStatus.TIMEOUT)
    assert TIMEOUT_S * 0.5 <= result.seconds <= TIMEOUT_S + 1.0  # the grade itself: cut at the bound
    assert pool.stats()["grade/timeouts"] == before + 1
    # the pool goes on with a fresh grading process
    after = pool.grade("so \\boxed{\\frac{3}{4}}", "0.75", "math")
    assert (after.correct, after.status) == (True, GradeStatus.OK)


def test_event_loop_stays_free_while_grading_hangs(pool):
    """``agrade`` awaits the grading thread: other coroutines (judge requests, verl's other
    samples) keep running on the loop meanwhile."""

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        task = asyncio.create_task(ticker())
        result = await pool.agrade(*HANGS["tower"], "math")
        task.cancel()
        return result, ticks

    result, ticks = asyncio.run(main())
    assert result.status is GradeStatus.TIMEOUT
    assert ticks >= int(TIMEOUT_S / 0.05) // 2  # the loop ticked through the whole grade


def test_a_killed_grading_process_is_replaced(pool):
    assert pool.grade("\\boxed{5}", "5").correct
    (pid,) = pool.process_ids()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    results = [pool.grade("\\boxed{5}", "5") for _ in range(2)]
    # the first grade may find the dead process mid-request (a counted error); then a new one serves
    assert results[-1].correct and results[-1].status is GradeStatus.OK
    assert all(r.status in (GradeStatus.OK, GradeStatus.ERROR) for r in results)
    assert pool.process_ids() and pid not in pool.process_ids()


def test_grade_many_keeps_order_and_close_leaves_no_process():
    pool = GradingPool(GradingConfig(timeout_s=TIMEOUT_S, workers=2))
    items = [(f"\\boxed{{{i}}}", "3", "math") for i in range(6)] + [("ANSWER: B", "B", "gpqa")]
    results = pool.grade_many(items)
    assert [r.correct for r in results] == [False, False, False, True, False, False, True]
    pids = pool.process_ids()
    assert 1 <= len(pids) <= 2
    pool.close()
    assert not any(_alive(pid) for pid in pids)
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit("\\boxed{1}", "1")


def _run_script(body: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)], capture_output=True, text=True, timeout=timeout, cwd=os.getcwd()
    )


def test_grading_processes_die_with_their_parent():
    """A parent killed without clean-up (SIGKILL, as Ray does to actors) leaves no grading process."""
    out = _run_script(
        """
        import os, signal
        from dagrpo_verl.grading.pool import GradingConfig, GradingPool
        pool = GradingPool(GradingConfig(workers=1))
        assert pool.grade("\\\\boxed{2}", "2").correct
        print(pool.process_ids()[0], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)


def test_a_user_script_needs_no_main_guard(tmp_path):
    """A plain script (no ``if __name__ == "__main__"``) grades through the pool and exits; with a
    ``multiprocessing`` spawn pool, each worker would re-run the script."""
    script = tmp_path / "score.py"
    script.write_text(
        "from dagrpo_verl.grading.pool import get_grading_pool\n"
        "pool = get_grading_pool()\n"
        "print('RESULTS', [pool.grade(r, '7').correct for r in ('\\\\boxed{7}', '\\\\boxed{8}')])\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("RESULTS") == 1 and "RESULTS [True, False]" in out.stdout


@pytest.mark.parametrize(
    "settings, key",
    [
        ({"timeout": 5}, "grading.timeout'"),
        ({"timeout_s": 0}, "grading.timeout_s=0"),
        ({"timeout_s": "5"}, "grading.timeout_s='5'"),
        ({"workers": 0}, "grading.workers=0"),
        ({"workers": True}, "grading.workers=True"),
        ({"memory_mb": 100}, "grading.memory_mb=100"),
    ],
)
def test_bad_settings_name_the_key(settings, key):
    with pytest.raises(
        GradingConfigError, match=f"reward.custom_reward_function.reward_kwargs.{key}".replace(".", r"\.")
    ):
        grading_config_from(settings)


def test_settings_from_a_dict_config():
    from omegaconf import OmegaConf

    config = grading_config_from(OmegaConf.create({"timeout_s": 3, "workers": 4, "memory_mb": 0}))
    assert config == GradingConfig(timeout_s=3.0, workers=4, memory_mb=0)
    assert grading_config_from(None) == GradingConfig()
