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
"""Which of the extension points of ``upstream/`` (docs/upstream.md) the installed verl has.

Each is detected by the API or behaviour the patch adds, never by verl's version string, so
a verl that merged the patches (or an equivalent change, e.g. verl PR #7473 for the first one)
is recognised whatever its version:

===========================  ==========================================================  ===========
capability                   detected by                                                 patch
===========================  ==========================================================  ===========
``estimator_batch``          legacy ``compute_advantage`` hands ``non_tensor_batch`` to   0001
                             an estimator that accepts it (a probe call)
``estimator_fields``         ``register_adv_est(..., batch_fields=...)``                 0002
``estimator_metrics``        ``verl.trainer.ppo.ray_trainer.ADVANTAGE_METRICS_KEY``      0003
``loss_fields``              ``register_policy_loss(..., batch_fields=...)``             0004
``config_validators``        ``verl.utils.config.register_config_validator``             0005
``group_transform``          ``AgentLoopConfig.group_transform_class``                   0006
===========================  ==========================================================  ===========

The cheap checks (signatures, attributes) import only what ``import verl`` loads for the plugin
anyway; the probe and the ``ray_trainer`` check import verl's legacy trainer module, so they run
at start-up (:mod:`dagrpo_verl.integration.stock`), not at plugin import.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, fields

__all__ = [
    "VerlCapabilities",
    "estimator_fields_supported",
    "group_transform_supported",
    "loss_fields_supported",
    "verl_capabilities",
]


def _has_parameter(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def estimator_fields_supported() -> bool:
    """verl's v1 trainer fetches the fields an estimator declares (``register_adv_est(..., batch_fields=)``)."""
    from verl.trainer.ppo.core_algos import register_adv_est

    return _has_parameter(register_adv_est, "batch_fields")


def loss_fields_supported() -> bool:
    """verl's ``ppo_loss`` passes the fields a policy loss declares (``register_policy_loss(..., batch_fields=)``)."""
    from verl.trainer.ppo.core_algos import register_policy_loss

    return _has_parameter(register_policy_loss, "batch_fields")


def group_transform_supported() -> bool:
    """verl's v1 agent loop applies ``actor_rollout_ref.rollout.agent.group_transform_class`` to settled groups."""
    from verl.workers.config import AgentLoopConfig

    return "group_transform_class" in {f.name for f in fields(AgentLoopConfig)}


def _estimator_metrics_supported() -> bool:
    from verl.trainer.ppo import ray_trainer

    return hasattr(ray_trainer, "ADVANTAGE_METRICS_KEY")


def _config_validators_supported() -> bool:
    from verl.utils import config

    return hasattr(config, "register_config_validator")


def _estimator_batch_supported() -> bool:
    """Probe: does verl's legacy ``compute_advantage`` pass ``non_tensor_batch`` to an estimator that accepts it?"""
    import numpy as np
    import torch
    from verl.protocol import DataProto
    from verl.trainer.ppo import core_algos, ray_trainer

    name = "_dagrpo_capability_probe"
    received = {}

    def probe(token_level_rewards, response_mask, index=None, config=None, non_tensor_batch=None, batch=None):
        received["non_tensor_batch"] = non_tensor_batch
        return response_mask, response_mask

    data = DataProto.from_dict(
        tensors={"token_level_rewards": torch.zeros(1, 1), "response_mask": torch.ones(1, 1)},
        non_tensors={"uid": np.array(["probe"], dtype=object)},
    )
    core_algos.ADV_ESTIMATOR_REGISTRY[name] = probe
    try:
        ray_trainer.compute_advantage(data, adv_estimator=name, config={})
    finally:
        core_algos.ADV_ESTIMATOR_REGISTRY.pop(name, None)
        getattr(core_algos, "ADV_ESTIMATOR_BATCH_FIELDS", {}).pop(name, None)
    return received.get("non_tensor_batch") is not None


@dataclass(frozen=True)
class VerlCapabilities:
    """The extension points of ``upstream/`` the installed verl has (see the module docstring)."""

    estimator_batch: bool
    estimator_fields: bool
    estimator_metrics: bool
    loss_fields: bool
    config_validators: bool
    group_transform: bool

    def missing(self) -> list[str]:
        """Names of the capabilities this verl lacks."""
        return [f.name for f in fields(self) if not getattr(self, f.name)]


@functools.cache
def verl_capabilities() -> VerlCapabilities:
    """Detect every capability once per process."""
    return VerlCapabilities(
        estimator_batch=_estimator_batch_supported(),
        estimator_fields=estimator_fields_supported(),
        estimator_metrics=_estimator_metrics_supported(),
        loss_fields=loss_fields_supported(),
        config_validators=_config_validators_supported(),
        group_transform=group_transform_supported(),
    )
