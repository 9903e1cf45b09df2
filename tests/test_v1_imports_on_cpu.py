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
"""The v1 path loads nothing of verl's legacy trainer; ``trainer.use_v1=false`` loads it on demand.

Each import runs in a fresh interpreter (real verl, its plugin entry point included) and reports
``sys.modules``. verl's own v1 trainer imports ``verl.trainer.ppo.ray_trainer`` (for
``apply_kl_penalty``), so that module is not checked by presence: no module of ours on the v1 path may
import it (or ``main_ppo_v0``) itself, checked on the source. ``dagrpo_verl.integration.capabilities`` is exempt: it
probes verl's upstream hooks, some of which live in ``ray_trainer``, and only when asked.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

LEGACY_VERL = ("verl.trainer.main_ppo_v0", "verl.trainer.ppo.ray_trainer")

#: What ``python -m dagrpo_verl.main`` with ``trainer.use_v1=true`` imports in the driver and in Ray's task
#: runner (the agent-loop manager, the reward function, the plugin), and the lazy imports of ``main.run``.
V1_PATH = """
import verl
import dagrpo_verl.main, dagrpo_verl.integration.trainer, dagrpo_verl.integration.agent_loop
import dagrpo_verl.integration.registration
import dagrpo_verl.reward, dagrpo_verl.integration.validation, dagrpo_verl.integration.stock
from verl.trainer.main_ppo import run_ppo
from dagrpo_verl.integration.trainer import DaGRPOTaskRunner
"""


def _modules_before_and_after_legacy(code: str) -> tuple[set[str], set[str]]:
    """``sys.modules`` after ``code`` in a fresh interpreter, and after then reading
    ``dagrpo_verl.integration.trainer.DaGRPORayPPOTrainer`` (the legacy names' old home)."""
    report = "print('MODULES=' + json.dumps(sorted(sys.modules)))\n"
    script = (
        f"import json, sys\n{code}\n{report}"
        "import dagrpo_verl.integration.trainer\n"
        f"assert dagrpo_verl.integration.trainer.DaGRPORayPPOTrainer.__name__\n{report}"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    before, after = (
        set(json.loads(line.removeprefix("MODULES=")))
        for line in result.stdout.splitlines()
        if line.startswith("MODULES=")
    )
    return before, after


@pytest.fixture(scope="module")
def modules() -> tuple[set[str], set[str]]:
    return _modules_before_and_after_legacy(V1_PATH)


@pytest.fixture(scope="module")
def v1_modules(modules) -> set[str]:
    return modules[0]


def test_the_v1_path_loads_no_legacy_trainer(v1_modules):
    assert "dagrpo_verl.integration.trainer" in v1_modules and "verl.trainer.ppo.v1.trainer_base" in v1_modules
    assert "verl.trainer.main_ppo_v0" not in v1_modules
    assert "dagrpo_verl.integration.legacy_trainer" not in v1_modules


def _legacy_imports(path: Path) -> list[str]:
    """``line: statement`` of every import in a source file that names a legacy verl trainer module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        if any(name.startswith(legacy) for name in names for legacy in LEGACY_VERL):
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_of_ours_on_the_v1_path_imports_verls_legacy_trainer(v1_modules):
    import dagrpo_verl

    package = Path(dagrpo_verl.__file__).parent
    ours = sorted(name for name in v1_modules if name.startswith("dagrpo_verl"))
    assert len(ours) > 10
    offending = []
    for name in ours:
        if name == "dagrpo_verl.integration.capabilities":
            continue
        relative = Path(*name.split(".")[1:])
        path = package / f"{relative}.py"
        path = path if path.exists() else package / relative / "__init__.py"
        offending += _legacy_imports(path)
    assert not offending, "the v1 path imports verl's legacy trainer:\n" + "\n".join(offending)
    # the check sees such an import: the legacy module has them
    assert _legacy_imports(package / "integration" / "legacy_trainer.py")


def test_the_legacy_names_load_the_legacy_trainer_on_demand(modules):
    assert {"verl.trainer.main_ppo_v0", "dagrpo_verl.integration.legacy_trainer"} <= modules[1]
    import dagrpo_verl.integration.trainer

    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        dagrpo_verl.integration.trainer.NoSuchName  # noqa: B018
