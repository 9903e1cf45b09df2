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
"""scripts/check_license_headers.py (run by `make lint` before the tests and by the pre-commit hook)."""

import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "check_license_headers.py"


def _check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_a_file_without_the_header_is_named_and_fixed(tmp_path):
    plain, script, other = tmp_path / "plain.py", tmp_path / "tool.py", tmp_path / "adapted.py"
    plain.write_text('"""Docstring."""\nx = 1\n')
    script.write_text("#!/usr/bin/env python3\nprint(1)\n")
    other.write_text(SCRIPT.read_text().replace("The dagrpo-verl Authors", "Bytedance Ltd. and/or its affiliates"))
    checked = _check(str(plain), str(script), str(other))
    assert checked.returncode == 1
    assert f"no Apache-2.0 header: {plain}" in checked.stdout and f"no Apache-2.0 header: {script}" in checked.stdout
    assert str(other) not in checked.stdout  # another holder's Apache-2.0 header is kept as it is

    assert _check("--fix", str(plain), str(script)).returncode == 0
    assert _check(str(plain), str(script)).returncode == 0
    assert script.read_text().startswith("#!/usr/bin/env python3\n# Copyright 2026 The dagrpo-verl Authors\n")
    assert plain.read_text().endswith('"""Docstring."""\nx = 1\n')
    compile(plain.read_text(), str(plain), "exec")
