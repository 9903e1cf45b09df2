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
"""The package's layers hold, and the public names users type still load what they name.

- The paper's maths (``dagrpo_verl.algo``) imports no verl: not when imported (fresh interpreter), and no
  import statement in its source names verl, not even inside a function.
- ``pkg://dagrpo_verl.reward``, the ``_target_`` ``dagrpo_verl.config.DaGRPOPolicyLossConfig``, the
  ``verl.plugins`` entry point and 0.1.0's ``dagrpo_verl.agent_loop.<manager>`` resolve, through verl's own
  loaders (``load_module``, hydra's ``_locate``, ``load_class_from_fqn``), to the classes of today's homes.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import dagrpo_verl

PACKAGE = Path(dagrpo_verl.__file__).resolve().parent
#: Imports allowed to ``dagrpo_verl.algo`` besides the standard library and its own package.
ALGO_THIRD_PARTY = {"numpy", "torch", "omegaconf"}


def _imported_names(path: Path) -> list[tuple[int, str]]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append((node.lineno, node.module))
    return names


def test_no_import_statement_of_the_maths_names_verl_or_another_layer():
    files = sorted((PACKAGE / "algo").glob("*.py"))
    assert {p.name for p in files} >= {"__init__.py", "core.py", "anchors.py", "settings.py"}
    offending = []
    for path in files:
        for line, name in _imported_names(path):
            top = name.split(".")[0]
            ours = name.startswith(("dagrpo_verl.algo", "dagrpo_verl.fields"))
            if top == "dagrpo_verl" and not ours or top != "dagrpo_verl" and top in {"verl", "ray", "transfer_queue"}:
                offending.append(f"algo/{path.name}:{line}: {name}")
            elif top not in sys.stdlib_module_names and top != "dagrpo_verl" and top not in ALGO_THIRD_PARTY:
                offending.append(f"algo/{path.name}:{line}: {name} (third-party)")
    assert not offending, "the maths layer imports outside itself:\n" + "\n".join(offending)


def test_the_check_sees_a_verl_import(tmp_path):
    (tmp_path / "mod.py").write_text("def f():\n    from verl.trainer.ppo import core_algos\n")
    assert [name for _, name in _imported_names(tmp_path / "mod.py")] == ["verl.trainer.ppo"]


def test_importing_the_maths_and_the_config_package_loads_no_verl():
    code = (
        "import json, sys\n"
        "import dagrpo_verl.algo.core, dagrpo_verl.algo.anchors, dagrpo_verl.algo.settings, dagrpo_verl.config\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('verl', 'ray', 'transfer_queue'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == []


def test_the_reward_path_loads_through_verls_module_loader():
    from verl.utils.import_utils import load_module

    module = load_module("pkg://dagrpo_verl.reward")
    assert module.__name__ == "dagrpo_verl.reward" and callable(module.compute_score)


def test_the_loss_config_target_resolves_to_the_integration_class():
    from hydra._internal.utils import _locate

    from dagrpo_verl.integration.config import DaGRPOPolicyLossConfig

    assert _locate("dagrpo_verl.config.DaGRPOPolicyLossConfig") is DaGRPOPolicyLossConfig
    from dagrpo_verl.config import DaGRPOPolicyLossConfig as public

    assert public is DaGRPOPolicyLossConfig
    with pytest.raises(AttributeError, match="NoSuchConfig"):
        _ = dagrpo_verl.config.NoSuchConfig


def test_the_settings_of_0_1_0_load_from_the_config_package_with_a_warning():
    import dagrpo_verl.config
    from dagrpo_verl.algo.settings import DaGRPOConfig
    from dagrpo_verl.integration.config import advantage_settings

    with pytest.warns(FutureWarning, match="moved to dagrpo_verl.algo.settings.DaGRPOConfig"):
        from dagrpo_verl.config import DaGRPOConfig as old_settings
    with pytest.warns(FutureWarning, match="moved to dagrpo_verl.integration.config.advantage_settings"):
        from dagrpo_verl.config import advantage_settings as old_reader
    assert old_settings is DaGRPOConfig and old_reader is advantage_settings
    for name, home in dagrpo_verl.config.MOVED_NAMES.items():
        with pytest.warns(FutureWarning):
            assert getattr(dagrpo_verl.config, name) is getattr(__import__(home, fromlist=[name]), name)


def test_the_plugin_entry_point_is_the_registration_module():
    (entry,) = [e for e in entry_points(group="verl.plugins") if e.name == "dagrpo"]
    from dagrpo_verl.integration import registration

    assert entry.load() is registration


def test_the_old_agent_loop_path_is_the_same_module_and_says_where_it_moved():
    code = (
        "import warnings\n"
        "warnings.simplefilter('error', FutureWarning)\n"
        "from verl.utils.import_utils import load_class_from_fqn\n"
        "from dagrpo_verl.integration.agent_loop import DaGRPOAgentLoopManagerTQ\n"
        "try:\n"
        "    load_class_from_fqn('dagrpo_verl.agent_loop.DaGRPOAgentLoopManagerTQ')\n"
        "except FutureWarning as warning:\n"
        "    print('WARNED', warning)\n"
        "warnings.simplefilter('ignore', FutureWarning)\n"
        "import sys; sys.modules.pop('dagrpo_verl.agent_loop', None)\n"
        "cls = load_class_from_fqn('dagrpo_verl.agent_loop.DaGRPOAgentLoopManagerTQ')\n"
        "print('SAME', cls is DaGRPOAgentLoopManagerTQ)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "WARNED dagrpo_verl.agent_loop moved to dagrpo_verl.integration.agent_loop" in result.stdout
    assert "SAME True" in result.stdout


def test_start_up_compares_an_old_agent_loop_path_as_todays():
    from omegaconf import OmegaConf

    from dagrpo_verl.integration.validation import _agent_loop_manager

    key = "actor_rollout_ref.rollout.agent.agent_loop_manager_class"
    old = OmegaConf.create({})
    OmegaConf.update(old, key, "dagrpo_verl.agent_loop.DaGRPOAgentLoopManager", force_add=True)
    assert _agent_loop_manager(old) == "dagrpo_verl.integration.agent_loop.DaGRPOAgentLoopManager"
    other = OmegaConf.create({})
    OmegaConf.update(other, key, "my_pkg.agent_loop.Manager", force_add=True)
    assert _agent_loop_manager(other) == "my_pkg.agent_loop.Manager"


def test_every_test_module_has_verls_cpu_test_name():
    tests = Path(__file__).resolve().parent
    assert sorted(p.name for p in tests.glob("test_*.py") if not p.name.endswith("_on_cpu.py")) == []
