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
"""A resumed run checks that it trains with the settings its checkpoint was written with.

verl 0.9.1 saves, per checkpoint ``global_step_N/``, the actor (weights, optimizer, LR scheduler and
RNG states under ``actor/``) and the dataloader position (``data.pt``), but not the config: a
restart (``trainer.resume_mode=auto``) takes every setting from its own command line, so a restart
with a different recipe silently continues a run under other settings. The DaGRPO trainers of
:mod:`dagrpo_verl.integration.trainer` therefore write :data:`SETTINGS_FILE` next to verl's files
(:func:`save_settings`) and compare it on resume (:func:`check_settings`): every key of
:data:`SETTING_KEYS` that changed is named in one WARNING with its old and new value (a WARNING, not
an error: changing a setting on resume can be deliberate; it is never silent). Credentials in a judge
``base_url`` are redacted before anything is written.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dagrpo_verl.judge.config import redact_url

__all__ = [
    "SETTINGS_FILE",
    "SETTING_KEYS",
    "CheckpointSettingsMixin",
    "check_settings",
    "checkpoint_folder",
    "run_settings",
    "save_settings",
]

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

#: Written into every ``global_step_N/`` checkpoint folder.
SETTINGS_FILE = "dagrpo_settings.json"

#: Config entries that decide what a training step does (a mapping stands for all keys under it).
SETTING_KEYS = (
    "algorithm.adv_estimator",
    "algorithm.norm_adv_by_std_in_grpo",
    "algorithm.dagrpo",
    "actor_rollout_ref.actor.policy_loss.loss_mode",
    "actor_rollout_ref.actor.policy_loss.off_policy_gamma",
    "actor_rollout_ref.actor.loss_agg_mode",
    "actor_rollout_ref.rollout.n",
    "data.train_files",
    "data.train_batch_size",
    "data.shuffle",
    "data.seed",
    "reward.custom_reward_function.path",
    "reward.custom_reward_function.name",
    "reward.custom_reward_function.reward_kwargs",
)


def run_settings(config: DictConfig) -> dict[str, Any]:
    """The :data:`SETTING_KEYS` of ``config`` as flat ``{dotted key: JSON value}`` (absent keys left out,
    URLs redacted)."""
    settings: dict[str, Any] = {}
    for key in SETTING_KEYS:
        value = OmegaConf.select(config, key, default=None)
        if value is None:
            continue
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        _flatten(key, value, settings)
    return settings


def _flatten(key: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for name, item in value.items():
            _flatten(f"{key}.{name}", item, out)
    elif key.endswith("base_url") and isinstance(value, str):
        out[key] = redact_url(value)
    else:
        out[key] = json.loads(json.dumps(value, default=str))  # what a JSON file gives back


def checkpoint_folder(trainer_config: Any, step: int) -> str:
    """The ``global_step_N`` folder verl saves step ``step`` into, or resumed it from."""
    # mirrors verl 0.9.1 verl.trainer.ppo.v1.trainer_base:PPOTrainer._load_checkpoint (folder choice)
    if trainer_config.get("resume_mode", "auto") == "resume_path" and trainer_config.get("resume_from_path"):
        return os.path.abspath(str(trainer_config.resume_from_path))
    return os.path.join(os.path.abspath(str(trainer_config.default_local_dir)), f"global_step_{step}")


def save_settings(config: DictConfig, step: int) -> str:
    """Write :func:`run_settings` into the checkpoint folder of ``step`` (after verl saved it); returns the path."""
    folder = os.path.join(os.path.abspath(str(config.trainer.default_local_dir)), f"global_step_{step}")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, SETTINGS_FILE)
    temporary = f"{path}.tmp"
    with open(temporary, "w") as f:
        json.dump(run_settings(config), f, indent=1, sort_keys=True)
    os.replace(temporary, path)  # a crash never leaves half a file
    return path


def check_settings(config: DictConfig, step: int) -> dict[str, tuple[Any, Any]]:
    """Compare the settings of a run resumed at ``step`` with those saved in its checkpoint.

    Logs one WARNING naming every changed key (``old -> new``), or an INFO line when nothing changed.
    Nothing happens for a fresh start (``step`` 0).

    Returns:
        ``{key: (saved value, current value)}`` for every key that differs (a missing one is None).
    """
    if step <= 0:
        return {}
    path = os.path.join(checkpoint_folder(config.trainer, step), SETTINGS_FILE)
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as error:
        logger.warning(
            f"resuming at step {step}: cannot read {path} ({type(error).__name__}); this run's DaGRPO settings "
            "are not compared with the checkpoint's (a checkpoint written without dagrpo_verl.main?)."
        )
        return {}
    current = run_settings(config)
    changed = {
        key: (saved.get(key), current.get(key))
        for key in sorted(set(saved) | set(current))
        if saved.get(key) != current.get(key)
    }
    if changed:
        lines = "; ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changed.items())
        logger.warning(
            f"resuming at step {step} with settings that differ from the checkpoint's ({path}): {lines}. "
            "The steps after the checkpoint train with the new values; restart with the old ones to continue "
            "the same run."
        )
    else:
        logger.info(f"resuming at step {step}: the {len(current)} run settings equal the checkpoint's ({path})")
    return changed


class CheckpointSettingsMixin:
    """Put before a verl trainer class (v1 ``PPOTrainer`` or the legacy ``RayPPOTrainer``): its checkpoints also
    hold the run's settings (:func:`save_settings`), and a resumed run compares its settings with them
    (:func:`check_settings`, a WARNING naming each change)."""

    def _save_checkpoint(self):
        super()._save_checkpoint()
        save_settings(self.config, self.global_steps)

    def _load_checkpoint(self):
        loaded = super()._load_checkpoint()
        check_settings(self.config, self.global_steps)
        return loaded
