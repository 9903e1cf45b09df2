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
"""Package metadata leaves a GPU cluster's torch alone; the CPU set-up pins its own.

Reads ``pyproject.toml`` (the metadata ``pip install -e .`` uses), the installed verl 0.9.1's
metadata (its ``[vllm]`` extra's torch pin) and the ``Makefile``.
"""

from __future__ import annotations

import re
from importlib.metadata import requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[1]


def _torch_requirement() -> Requirement:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (torch,) = [Requirement(r) for r in project["dependencies"] if Requirement(r).name == "torch"]
    return torch


def test_torch_is_not_pinned_and_admits_verls_gpu_torch():
    torch = _torch_requirement()
    assert not any(spec.operator in ("==", "===", "~=") for spec in torch.specifier), str(torch)
    vllm_torch = [Requirement(r) for r in requires("verl") if r.startswith("torch==") and 'extra == "vllm"' in r]
    (pinned,) = [next(iter(r.specifier)).version for r in vllm_torch]
    assert torch.specifier.contains(pinned), (str(torch), pinned)  # pip keeps verl[vllm]'s torch
    assert torch.specifier.contains("2.13.0")  # and the CPU set-up's


def test_cpu_setup_pins_torch_before_installing_the_package():
    makefile = (REPO / "Makefile").read_text()
    pin = re.search(r"pip install -q torch==([\d.]+)", makefile)
    package = makefile.find("pip install -q -e")
    assert pin and pin.group(1) == "2.13.0" and 0 <= pin.start() < package
