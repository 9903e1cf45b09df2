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
"""DaGRPO trainer entry: ``python -m dagrpo_verl.main [hydra overrides]``.

Composes ``dagrpo_verl/config/dagrpo_trainer.yaml`` (verl's ``ppo_trainer`` plus the
DaGRPO defaults), checks it (:func:`dagrpo_verl.integration.validation.validate_dagrpo_config`,
then verl's ``validate_config``) before Ray starts, and runs
verl's ``run_ppo`` with the DaGRPO task runner: the v1 trainer by default, the legacy
``RayPPOTrainer`` with ``trainer.use_v1=false`` (see :mod:`dagrpo_verl.integration.trainer`; the legacy one,
:mod:`dagrpo_verl.integration.legacy_trainer`, is imported only for that setting).

The same overrides work here and under ``python -m verl.trainer.main_ppo``: a key this config
declares but verl's does not (:data:`DECLARED_HERE`) must be added with ``+`` under verl's entry;
here ``+key=value`` is read as ``++key=value`` (add or override), so a verl user's script switches
entry and keeps every override. ``++key=value`` works with both.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import hydra
from omegaconf import DictConfig

__all__ = ["CONFIG_DIR", "CONFIG_NAME", "DECLARED_HERE", "compose_config", "main", "portable_overrides", "run"]

#: Directory of the DaGRPO trainer config (package data) and its name.
CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config")
CONFIG_NAME = "dagrpo_trainer"

#: Config keys (and key prefixes) that ``dagrpo_trainer.yaml`` declares and verl's ``ppo_trainer`` does not.
#: tests/test_overrides_on_cpu.py checks that they cover the whole difference of the two composed configs.
DECLARED_HERE = (
    "algorithm.dagrpo",
    "actor_rollout_ref.actor.policy_loss.off_policy_gamma",
    "actor_rollout_ref.rollout.agent.agent_loop_manager_class",
    "reward.custom_reward_function.reward_kwargs",
)


def portable_overrides(overrides: Sequence[str]) -> list[str]:
    """``+key=value`` as ``++key=value`` for keys under :data:`DECLARED_HERE`; every other override unchanged.

    Under ``python -m verl.trainer.main_ppo`` those keys do not exist and need ``+``; this config declares
    them, where hydra refuses ``+`` ("Could not append to config. An item is already at ...").
    """
    portable = []
    for override in overrides:
        key = override[1:].split("=", 1)[0]
        declared = any(key == prefix or key.startswith(prefix + ".") for prefix in DECLARED_HERE)
        is_append = override.startswith("+") and not override.startswith("++") and "=" in override
        portable.append("+" + override if is_append and declared else override)
    return portable


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``python -m dagrpo_verl.main <overrides>`` would run, composed without running it.

    Uses hydra's compose API (no working-directory change, no logging set-up). A ``--config-dir=DIR``
    entry adds DIR to the search path, as on the command line (e.g. the presets of the repository's
    ``configs/``: ``--config-dir=configs +experiment=paper``).
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    config_dirs = [o.split("=", 1)[1] for o in overrides if o.startswith("--config-dir=")]
    overrides = portable_overrides([o for o in overrides if not o.startswith("--config-dir=")])
    if config_dirs:
        primary = OmegaConf.load(os.path.join(CONFIG_DIR, f"{CONFIG_NAME}.yaml")).hydra.searchpath
        searchpath = [*primary, *(f"file://{os.path.abspath(d)}" for d in config_dirs)]
        overrides = [f"hydra.searchpath=[{','.join(searchpath)}]", *overrides]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return compose(config_name=CONFIG_NAME, overrides=overrides)


def run(config: DictConfig) -> None:
    """Validate a composed config and train with verl's ``run_ppo`` and the DaGRPO task runner."""
    from verl.trainer.main_ppo import run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    from dagrpo_verl.integration.stock import dagrpo_trainer_hooks
    from dagrpo_verl.integration.validation import validate_dagrpo_config

    validate_dagrpo_config(config)
    auto_set_device(config)
    with dagrpo_trainer_hooks():  # DaGRPO's checks ran above; this entry carries the hooks stock verl lacks
        validate_config(
            config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config)
        )
    if config.trainer.use_v1:
        from dagrpo_verl.integration.trainer import DaGRPOTaskRunner

        task_runner_class = DaGRPOTaskRunner
    else:  # verl's deprecated legacy trainer: loaded only here, never on the v1 path
        from dagrpo_verl.integration.legacy_trainer import DaGRPOLegacyTaskRunner

        task_runner_class = DaGRPOLegacyTaskRunner
    run_ppo(config, task_runner_class=task_runner_class)


@hydra.main(config_path="config", config_name=CONFIG_NAME, version_base=None)
def _hydra_main(config: DictConfig) -> None:
    run(config)


def main() -> None:
    """Hydra entry point (command-line overrides through :func:`portable_overrides`)."""
    sys.argv[1:] = portable_overrides(sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
