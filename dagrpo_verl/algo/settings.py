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
"""DaGRPO's settings: the ``algorithm.dagrpo`` block as frozen dataclasses (no verl).

``algorithm.dagrpo`` is read from verl's ``algorithm`` DictConfig, which verl hands
to every advantage estimator. In a plain verl config the block does not exist, so
users add it with ``+algorithm.dagrpo.delta=3`` (or use our trainer config, which
declares it). Unknown keys and bad values raise a ``ValueError`` naming the key.

The settings that live in verl's own config classes (the policy loss's ``off_policy_gamma``,
verl's ``norm_adv_by_std_in_grpo`` default) are read in :mod:`dagrpo_verl.integration.config`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from dagrpo_verl.fields import ALGORITHM_BLOCK

__all__ = [
    "AnchorConfig",
    "DaGRPOConfig",
    "JudgeHealthConfig",
    "dagrpo_config_from",
]

ON_MISSING_SCORE = ("keep", "mask")
ANCHOR_TRIGGERS = ("hard", "always")
ANCHOR_MODES = ("replace", "append")
ON_FAILED_VERIFICATION = ("use", "skip")


@dataclass(frozen=True)
class AnchorConfig:
    """``algorithm.dagrpo.anchor``: off-policy anchor mixing (LUFFY-style)."""

    enable: bool = True
    trigger: str = "hard"  # "hard": only groups with on-policy accuracy <= hard_max_accuracy; "always"
    hard_max_accuracy: float = 0.0
    num_anchors: int = 1
    mode: str = "replace"  # "replace" the lowest-reward rollouts, or "append" to the group
    on_failed_verification: str = "use"  # anchor whose answer fails math-verify: "use" or "skip"
    # An anchor is the judge's reference: it gets max_score without a judge call unless judge_anchors, when it is
    # judged like a rollout (and a judge failure leaves its score missing: it never falls back to max_score).
    judge_anchors: bool = False
    max_score: float = 10.0

    def __post_init__(self):
        _check_choice("algorithm.dagrpo.anchor.trigger", self.trigger, ANCHOR_TRIGGERS)
        _check_choice("algorithm.dagrpo.anchor.mode", self.mode, ANCHOR_MODES)
        _check_choice(
            "algorithm.dagrpo.anchor.on_failed_verification", self.on_failed_verification, ON_FAILED_VERIFICATION
        )
        if not isinstance(self.num_anchors, int) or self.num_anchors < 1:
            raise ValueError(
                f"algorithm.dagrpo.anchor.num_anchors must be an integer >= 1, got {self.num_anchors!r}; "
                "set algorithm.dagrpo.anchor.enable=false to train without anchors."
            )
        if not 0.0 <= float(self.hard_max_accuracy) <= 1.0:
            raise ValueError(
                f"algorithm.dagrpo.anchor.hard_max_accuracy must be in [0, 1], got {self.hard_max_accuracy!r}."
            )
        if not isinstance(self.judge_anchors, bool):
            raise ValueError(
                f"algorithm.dagrpo.anchor.judge_anchors must be true or false, got {self.judge_anchors!r}."
            )
        number = isinstance(self.max_score, (int, float)) and not isinstance(self.max_score, bool)
        if not (number and 1.0 <= float(self.max_score) <= 10.0):
            raise ValueError(
                f"algorithm.dagrpo.anchor.max_score must be a number in [1, 10] (the judge's scale), "
                f"got {self.max_score!r}."
            )


@dataclass(frozen=True)
class JudgeHealthConfig:
    """``algorithm.dagrpo.judge_health``: training steps without judge scores
    (:mod:`dagrpo_verl.integration.judge_health`).

    A step in which more than ``max_missing_frac`` of the responses have no judge score logs a WARNING
    naming the judge endpoint; ``max_bad_steps`` such steps in a row stop the run. Defaults: a judge
    outage of a few steps is survived (those responses keep their plain advantage with
    ``on_missing_score=keep``), a run whose judge stays down does not quietly become GRPO.
    """

    max_missing_frac: float = 0.2
    max_bad_steps: int = 5

    def __post_init__(self):
        if not 0.0 <= float(self.max_missing_frac) <= 1.0:
            raise ValueError(
                f"algorithm.dagrpo.judge_health.max_missing_frac must be in [0, 1], got {self.max_missing_frac!r}."
            )
        if isinstance(self.max_bad_steps, bool) or not isinstance(self.max_bad_steps, int) or self.max_bad_steps < 1:
            raise ValueError(
                f"algorithm.dagrpo.judge_health.max_bad_steps must be an integer >= 1, got {self.max_bad_steps!r}."
            )


@dataclass(frozen=True)
class DaGRPOConfig:
    """``algorithm.dagrpo``: sequence-level gradient rectification (paper eq. 8-9)."""

    delta: float = 3.0  # distinctiveness threshold δ on the 1-10 judge scale
    rectification: bool = True  # False: plain (Dr.)GRPO advantages over the mixed group
    on_missing_score: str = "keep"  # NaN judge score: "keep" the advantage, or "mask" (zero) it
    # Judge only the groups whose advantages can be non-zero after anchor mixing (the others cannot be masked);
    # False: judge every response (scores for analysis, at the cost of the uniform groups' calls).
    lazy_judge: bool = True
    anchor: AnchorConfig = field(default_factory=AnchorConfig)
    judge_health: JudgeHealthConfig = field(default_factory=JudgeHealthConfig)

    def __post_init__(self):
        _check_choice("algorithm.dagrpo.on_missing_score", self.on_missing_score, ON_MISSING_SCORE)
        for key in ("rectification", "lazy_judge"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"algorithm.dagrpo.{key} must be true or false, got {getattr(self, key)!r}.")
        delta = float(self.delta)
        if math.isnan(delta):
            raise ValueError("algorithm.dagrpo.delta is NaN; set a number such as 3.0 (or -inf to disable masks).")


def _check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{key}={value!r} is not one of {list(allowed)}; set {key}=<one of them>.")


def _build(cls, values: Mapping[str, Any], prefix: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"Unknown key(s) {[prefix + '.' + k for k in unknown]}; valid keys under {prefix}: {sorted(known)}."
        )
    kwargs = dict(values)
    if cls is DaGRPOConfig and "anchor" in kwargs:
        kwargs["anchor"] = _build(AnchorConfig, dict(kwargs["anchor"] or {}), prefix + ".anchor")
    if cls is DaGRPOConfig and "judge_health" in kwargs:
        health = dict(kwargs["judge_health"] or {})
        kwargs["judge_health"] = _build(JudgeHealthConfig, health, prefix + ".judge_health")
    return cls(**kwargs)


def dagrpo_config_from(algorithm_config: Any | None) -> DaGRPOConfig:
    """Read ``algorithm.dagrpo`` from verl's algorithm config (DictConfig, AlgoConfig or dict).

    A missing block gives the defaults.
    """
    if algorithm_config is None:
        return DaGRPOConfig()
    if isinstance(algorithm_config, DaGRPOConfig):
        return algorithm_config
    block = algorithm_config.get(ALGORITHM_BLOCK, None) if hasattr(algorithm_config, "get") else None
    if block is None:
        return DaGRPOConfig()
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(block, DictConfig):
            block = OmegaConf.to_container(block, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency of verl
        pass
    return _build(DaGRPOConfig, dict(block), "algorithm.dagrpo")
