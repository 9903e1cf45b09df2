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
"""The verl plugin entry point: registrations appear on `import verl` alone, in the driver and in Ray workers."""

import subprocess
import sys
import textwrap

RAY_SCRIPT = textwrap.dedent(
    """
    import json, os, ray

    @ray.remote
    def probe():
        import sys
        preloaded = "dagrpo_verl.integration.registration" in sys.modules
        import verl  # the only import: the plugin must come through verl's entry points
        from verl.trainer.ppo import core_algos
        return {
            "pid": os.getpid(),
            "preloaded": preloaded,
            "estimator": core_algos.get_adv_estimator_fn("dagrpo").__module__,
            "loss": core_algos.get_policy_loss_fn("dagrpo").__module__,
        }

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        result = ray.get(probe.remote())
    finally:
        ray.shutdown()
    result["driver_pid"] = os.getpid()
    print("RESULT" + json.dumps(result))
    """
)


def run_python(code, **kwargs):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, **kwargs)


def test_fresh_interpreter_sees_both_registrations_after_import_verl():
    proc = run_python(
        "import verl; from verl.trainer.ppo import core_algos as c; "
        "print(c.get_adv_estimator_fn('dagrpo').__module__, c.get_policy_loss_fn('dagrpo').__module__)"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["dagrpo_verl.integration.registration", "dagrpo_verl.integration.registration"]


def test_fresh_ray_worker_sees_both_registrations_after_import_verl():
    import json

    proc = run_python(RAY_SCRIPT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    result = json.loads(line[len("RESULT") :])
    assert result["pid"] != result["driver_pid"]
    assert result["preloaded"] is False
    assert result["estimator"] == result["loss"] == "dagrpo_verl.integration.registration"


def test_broken_install_is_loud():
    """verl swallows plugin errors at DEBUG level; ours logs an ERROR with the traceback."""
    proc = run_python(
        "import sys; sys.modules['dagrpo_verl.algo.core'] = None\n"  # makes `from dagrpo_verl import core` fail
        "import verl\n"
        "from verl.trainer.ppo import core_algos\n"
        "print('registered' if 'dagrpo' in core_algos.ADV_ESTIMATOR_REGISTRY else 'missing')"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "missing"
    assert "failed to register the DaGRPO estimator" in proc.stderr
    assert "Traceback" in proc.stderr and "ModuleNotFoundError: import of dagrpo_verl.algo.core" in proc.stderr
