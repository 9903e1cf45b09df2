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
"""One override set for both entries: the README's "In an existing verl setup" lines, composed with
``python -m verl.trainer.main_ppo``'s config (verl's ``ppo_trainer``) and with ``python -m dagrpo_verl.main``'s.

Real: hydra's compose API on verl's installed config and on ``dagrpo_trainer.yaml``, the README file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import verl
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dagrpo_verl.main import DECLARED_HERE, compose_config, portable_overrides

README = Path(__file__).resolve().parent.parent / "README.md"
VERL_CONFIG_DIR = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")


def _main_ppo_config(overrides):
    with initialize_config_dir(config_dir=VERL_CONFIG_DIR, version_base=None):
        return compose(config_name="ppo_trainer", overrides=list(overrides))


def _flat(node, prefix=""):
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def _section(name):
    text = README.read_text()
    match = re.search(rf"<!-- {name}:begin -->(.*?)<!-- {name}:end -->", text, flags=re.S)
    assert match, f"README has no {name} section"
    return match.group(1)


def _readme_overrides():
    """The overrides of the README's existing-setup command (without the entry and `<your overrides>`)."""
    block = re.search(r"```bash\n(.*?)```", _section("existing-setup"), flags=re.S).group(1)
    lines = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    words = " ".join(line.rstrip("\\").strip() for line in lines).split()
    assert words[:3] == ["python", "-m", "dagrpo_verl.main"], words[:3]
    return [w for w in words[3:] if w != "<your" and w != "overrides>"]


@pytest.fixture(scope="module")
def configs():
    main_ppo = OmegaConf.to_container(_main_ppo_config([]), resolve=False)
    ours = OmegaConf.to_container(compose_config(), resolve=False)
    return _flat(main_ppo), _flat(ours)


def _key(override):
    return override.lstrip("+").split("=", 1)[0]


@pytest.mark.parametrize("spelling", ["++", "+"])
def test_readme_lines_compose_identically_with_both_entries(spelling):
    """The README's lines (``++``), and the same lines with ``+`` as a main_ppo script has them."""
    overrides = [re.sub(r"^\+\+", spelling, o) for o in _readme_overrides()]
    assert len(overrides) >= 8
    main_ppo = _main_ppo_config(overrides)
    ours = compose_config(overrides)
    for override in overrides:
        key, value = _key(override), override.split("=", 1)[1]
        assert str(OmegaConf.select(main_ppo, key)) == value, key
        assert str(OmegaConf.select(ours, key)) == value, key


def test_declared_here_is_exactly_what_verl_lacks(configs):
    main_ppo, ours = configs
    new_keys = sorted(set(ours) - set(main_ppo))
    assert new_keys, "dagrpo_trainer.yaml declares nothing new?"
    for key in new_keys:
        assert any(key == p or key.startswith(p + ".") for p in DECLARED_HERE), f"{key} not in DECLARED_HERE"
    for prefix in DECLARED_HERE:
        assert not any(k == prefix or k.startswith(prefix + ".") for k in main_ppo), f"verl declares {prefix}"


def test_readme_table_lists_every_default_that_differs(configs):
    main_ppo, ours = configs
    differing = {k for k in set(ours) & set(main_ppo) if ours[k] != main_ppo[k] and not k.startswith("hydra")}
    rows = re.findall(r"^\| `([^`]+)` \| `([^`]*)` \| `([^`]*)`", _section("existing-setup-defaults"), flags=re.M)
    assert {key for key, _, _ in rows} == differing
    for key, theirs, mine in rows:
        assert (_yaml(main_ppo[key]), _yaml(ours[key])) == (theirs, mine), key


def _yaml(value):
    """A config value as the README writes it."""
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_only_declared_appends_become_force_adds():
    overrides = [
        "+algorithm.dagrpo.delta=2",
        "++algorithm.dagrpo.rectification=false",
        "+platform=cpu",
        "+actor_rollout_ref.rollout.agent.agent_loop_manager_class=x.Y",
        "+trainer.some_new_key=1",
        "~algorithm.dagrpo",
        "algorithm.dagrpo.anchor.enable=false",
    ]
    assert portable_overrides(overrides) == [
        "++algorithm.dagrpo.delta=2",
        "++algorithm.dagrpo.rectification=false",
        "+platform=cpu",
        "++actor_rollout_ref.rollout.agent.agent_loop_manager_class=x.Y",
        "+trainer.some_new_key=1",
        "~algorithm.dagrpo",
        "algorithm.dagrpo.anchor.enable=false",
    ]
