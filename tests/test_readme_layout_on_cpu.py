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
"""The README's layout table matches the tree: every path it names exists, and every top-level entry of the
repository and of the package, and every module of the maths and verl-glue layers, is named in it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dagrpo_verl"
#: Top-level entries the table need not name: the README itself and git's own file.
UNLISTED = {"README.md", ".gitignore", "LICENSE"}


def _layout_rows(readme: str) -> list[list[str]]:
    """The backticked names of the first column of each row of the ``## Layout`` table."""
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| path ")]
    return [re.findall(r"`([^`]+)`", row.split(" | ")[0]) for row in rows]


def _resolve(names: list[str]) -> tuple[list[Path], list[str]]:
    """Each name from the repository root, the package, or the folder of the name before it in its cell."""
    found, missing, base = [], [], None
    for name in names:
        candidates = [ROOT / name, PACKAGE / name] + ([base / name] if base is not None else [])
        path = next((c for c in candidates if c.exists()), None)
        if path is None:
            missing.append(name)
            continue
        found.append(path.resolve())
        base = path if path.is_dir() else path.parent
    return found, missing


def _tracked() -> set[Path]:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return {(ROOT / line).resolve() for line in files.splitlines()}


@pytest.fixture(scope="module")
def named() -> list[Path]:
    found, missing = [], []
    for names in _layout_rows((ROOT / "README.md").read_text(encoding="utf-8")):
        paths, absent = _resolve(names)
        found += paths
        missing += absent
    assert not missing, f"the README layout table names paths that do not exist: {missing}"
    return found


def _is_named(path: Path, named: list[Path]) -> bool:
    """``path`` is named, lies in a named folder, or is a folder holding a named path."""
    return any(path == p or p in path.parents or path in p.parents for p in named)


def test_every_top_level_entry_is_in_the_table(named):
    tracked = _tracked()
    top = {ROOT / p.relative_to(ROOT).parts[0] for p in tracked} - {ROOT / name for name in UNLISTED}
    assert sorted(p.name for p in top if not _is_named(p, named)) == []


def test_every_entry_of_the_package_and_module_of_its_layers_is_in_the_table(named):
    tracked = {p for p in _tracked() if PACKAGE in p.parents}
    entries = {PACKAGE / p.relative_to(PACKAGE).parts[0] for p in tracked} - {PACKAGE / "__init__.py"}
    modules = {
        p for p in tracked if p.parent in (PACKAGE / "algo", PACKAGE / "integration") and p.name != "__init__.py"
    }
    unnamed = sorted(str(p.relative_to(PACKAGE)) for p in entries | modules if p not in named and p.parent != PACKAGE)
    unnamed += sorted(p.name for p in entries if not _is_named(p, named))
    assert unnamed == [], f"not in the README layout table: {unnamed}"


def test_the_check_sees_a_path_that_does_not_exist():
    assert _resolve(["dagrpo_verl/algo/", "core.py", "no_such_module.py"])[1] == ["no_such_module.py"]
