"""DaGRPO trainer entry: ``python -m dagrpo_verl.main [hydra overrides]``.

Composes ``dagrpo_verl/config/dagrpo_trainer.yaml`` (verl's ``ppo_trainer`` plus the
DaGRPO defaults), checks it (:func:`dagrpo_verl.validation.validate_dagrpo_config`,
then verl's ``validate_config``) before Ray starts, and runs
verl's ``run_ppo`` with the DaGRPO task runner: the v1 trainer by default, the legacy
``RayPPOTrainer`` with ``trainer.use_v1=false`` (see :mod:`dagrpo_verl.trainer`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import hydra
from omegaconf import DictConfig

__all__ = ["CONFIG_DIR", "CONFIG_NAME", "compose_config", "main", "run"]

#: Directory of the DaGRPO trainer config (package data) and its name.
CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config")
CONFIG_NAME = "dagrpo_trainer"


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``python -m dagrpo_verl.main <overrides>`` would run, composed without running it.

    Uses hydra's compose API (no working-directory change, no logging set-up).
    """
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return compose(config_name=CONFIG_NAME, overrides=list(overrides))


def run(config: DictConfig) -> None:
    """Validate a composed config and train with verl's ``run_ppo`` and the DaGRPO task runner."""
    from verl.trainer.main_ppo import run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    from dagrpo_verl.trainer import DaGRPOLegacyTaskRunner, DaGRPOTaskRunner
    from dagrpo_verl.validation import validate_dagrpo_config

    validate_dagrpo_config(config)
    auto_set_device(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    run_ppo(config, task_runner_class=DaGRPOTaskRunner if config.trainer.use_v1 else DaGRPOLegacyTaskRunner)


@hydra.main(config_path="config", config_name=CONFIG_NAME, version_base=None)
def main(config: DictConfig) -> None:
    """Hydra entry point."""
    run(config)


if __name__ == "__main__":
    main()
