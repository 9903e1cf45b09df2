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
"""The upstream patch series (``upstream/*.patch``) against a scratch copy of the installed verl.

Real: the installed verl 0.9.1 files (copied, RECORD-checked, never modified), ``git apply``,
verl's own pytest layout and each patch's tests, ruff with verl's rules. Nothing is stood in for.
The full run (every patch applied in order, its tests run on the tree patched up to it) takes about
2.5 minutes on 2 cores; the other tests take seconds.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

UPSTREAM = Path(__file__).resolve().parent.parent / "upstream"
LICENSE = "#     http://www.apache.org/licenses/LICENSE-2.0"


def _series_module():
    spec = importlib.util.spec_from_file_location("apply_series", UPSTREAM / "apply_series.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def series():
    return _series_module()


def test_every_patch_is_a_reviewable_pr(series):
    patches = series.patches()
    assert [p.name[:4] for p in patches] == [f"{i:04d}" for i in range(1, len(patches) + 1)] and patches
    for patch in patches:
        text = patch.read_text()
        message = text.split("\n---\n", 1)[0]
        for section in ("## Motivation", "## Change", "## Tests"):
            assert section in message, f"{patch.name}: no {section!r} in the PR description"
        assert series.added_tests(patch), f"{patch.name} adds no tests/**/test_*_on_cpu.py"
        # every new Python file carries verl's Apache-2.0 header
        for new_file in re.findall(r"^diff --git a/(\S+\.py) b/\S+\nnew file mode", text, flags=re.M):
            body = text.split(f"+++ b/{new_file}\n", 1)[1]
            header = [line[1:] for line in body.splitlines()[1:16] if line.startswith("+")]
            assert "# Copyright 2026 Bytedance Ltd. and/or its affiliates" in header[0], new_file
            assert LICENSE in header, new_file


def test_lint_catches_a_new_finding(series, tmp_path):
    """The lint step of the series check can fail: an unused import added on top of the series is reported."""
    dest = tmp_path / "verl"
    assert series.apply_series(dest, log=lambda *_: None)
    assert series.lint_series(dest) == []
    target = dest / "verl" / "utils" / "config.py"
    target.write_text("import os  # unused\n" + target.read_text())
    series._git(dest, "commit", "-q", "-am", "lint probe")
    problems = series.lint_series(dest)
    assert any("verl/utils/config.py" in p and "F401" in p for p in problems), problems


@pytest.mark.slow
def test_series_applies_in_order_and_each_patch_passes_its_tests(tmp_path):
    """``git apply --check`` of each patch on the pristine tree patched up to it, then its own tests, then lint."""
    command = [sys.executable, str(UPSTREAM / "apply_series.py"), str(tmp_path / "verl"), "--test", "--lint"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1500, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    applied = re.findall(r"^applied (\S+)$", output, flags=re.M)
    assert applied == [p.name for p in _series_module().patches()], output[-3000:]
    assert len(re.findall(r"^  tests .*: \d+ passed", output, flags=re.M)) == len(applied), output[-3000:]
    assert "lint: clean" in output
