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
"""First-run diagnostics on the on-policy rows only (``dagrpo/onpolicy/*``).

verl's own ``training/rollout_probs_diff_*``, ``actor/entropy``, ``response_length/*`` and
``critic/score/*`` count every row of the batch, anchors included: an anchor's rollout log-probs
are placeholders (0), its text is the expert's, its length is the expert's. A mixed batch
therefore shows a large rollout/actor log-prob difference and an expert-shaped length
distribution whatever the rollout engine does. :func:`onpolicy_diagnostics` computes the same
quantities, with verl's functions, on the rows that the policy generated:

* ``dagrpo/onpolicy/rollout_probs_diff_{mean,max,std}``, ``dagrpo/onpolicy/rollout_actor_probs_pearson_corr``:
  verl's ``calculate_debug_metrics`` (|p_rollout - p_actor| per token), when the rollout returned log-probs;
* ``dagrpo/onpolicy/entropy``: ``agg_loss`` of the actor's token entropy with the actor's
  ``loss_agg_mode`` / ``loss_scale_factor``, as verl's ``actor/entropy``;
* ``dagrpo/onpolicy/response_length/{mean,max}`` and ``dagrpo/onpolicy/response_length/clip_ratio``:
  the share of rollouts that reached the generation budget (``rollout.response_length``).

The on-policy score mean is ``dagrpo/rollout_reward_mean``
(:func:`dagrpo_verl.algo.core.compute_dagrpo_outcome_advantage`).

:func:`first_run_report` (``python -m dagrpo_verl.integration.diagnostics METRICS_FILE``, run by
``recipes/gpu_smoke.sh``) prints the metrics to check after the first steps on a new cluster
next to their healthy values (:data:`FIRST_RUN_CHECKS`), and exits 1 when one is off.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from tensordict import TensorDict
from verl.protocol import DataProto
from verl.trainer.ppo.core_algos import agg_loss
from verl.utils.debug.metrics import calculate_debug_metrics

from dagrpo_verl.fields import METRIC_PREFIX

__all__ = ["FIRST_RUN_CHECKS", "ONPOLICY_PREFIX", "Check", "first_run_report", "onpolicy_diagnostics"]

#: Prefix of every on-policy diagnostic.
ONPOLICY_PREFIX = METRIC_PREFIX + "onpolicy/"


def onpolicy_diagnostics(
    response_mask: torch.Tensor,
    response_lengths: torch.Tensor,
    on_policy: torch.Tensor,
    response_budget: int,
    old_log_probs: torch.Tensor | None = None,
    rollout_log_probs: torch.Tensor | None = None,
    entropy: torch.Tensor | None = None,
    loss_agg_mode: str = "token-mean",
    loss_scale_factor: int | None = None,
) -> dict[str, float]:
    """verl's first-run diagnostics restricted to the on-policy rows.

    Args:
        response_mask: ``(bs, T)`` valid response tokens (padded layout).
        response_lengths: ``(bs,)`` response lengths in tokens (tool tokens included, as verl counts them).
        on_policy: ``(bs,)`` bool, True for rows the policy generated (not anchors, not padding rows).
        response_budget: ``rollout.response_length``; a response this long was cut by the budget.
        old_log_probs: ``(bs, T)`` the actor's log-probs of the batch (``old_log_probs``), or None.
        rollout_log_probs: ``(bs, T)`` the rollout engine's log-probs, or None when it returned none.
        entropy: ``(bs, T)`` the actor's token entropy, or None.
        loss_agg_mode, loss_scale_factor: the actor's, for the entropy as verl aggregates it.

    Returns:
        ``{metric name: float}``; empty without on-policy rows.
    """
    rows = on_policy.to(torch.bool).nonzero(as_tuple=True)[0]
    if rows.numel() == 0:
        return {}
    mask = response_mask.index_select(0, rows)
    lengths = response_lengths.index_select(0, rows).to(torch.float32)
    prefix = ONPOLICY_PREFIX
    metrics = {
        f"{prefix}response_length/mean": lengths.mean().item(),
        f"{prefix}response_length/max": lengths.max().item(),
        f"{prefix}response_length/clip_ratio": (lengths >= response_budget).float().mean().item(),
    }
    if entropy is not None:
        metrics[f"{prefix}entropy"] = agg_loss(
            loss_mat=entropy.index_select(0, rows),
            loss_mask=mask,
            loss_agg_mode=loss_agg_mode,
            loss_scale_factor=loss_scale_factor,
        ).item()
    if old_log_probs is not None and rollout_log_probs is not None:
        subset = TensorDict(
            {
                "old_log_probs": old_log_probs.index_select(0, rows),
                "rollout_log_probs": rollout_log_probs.index_select(0, rows),
                "response_mask": mask,
                "responses": mask,  # calculate_debug_metrics reads only its width
            },
            batch_size=rows.numel(),
        )
        for key, value in calculate_debug_metrics(DataProto(batch=subset)).items():
            if key != "training/rollout_probs_diff_valid":
                metrics[prefix + key.removeprefix("training/")] = float(value)
    return metrics


@dataclass(frozen=True)
class Check:
    """One metric to look at after the first steps: what healthy looks like, and the test of a value."""

    key: str
    healthy: str
    is_healthy: Callable[[float], bool]


#: The first-run checks, in reading order. Rollout/actor log-prob differences of a bf16 vLLM rollout
#: against the FSDP actor are reported around 0.004-0.006 (mean absolute probability difference,
#: verl's ``training/rollout_probs_diff_mean``) on healthy runs.
FIRST_RUN_CHECKS = (
    Check("judge/failures", "0: a failure is a response without judge score", lambda v: v == 0),
    Check(
        METRIC_PREFIX + "missing_scores",
        "0: responses without judge score keep an unrectified advantage (on_missing_score=keep)",
        lambda v: v == 0,
    ),
    Check("judge/calls", "> 0: the judge was asked (rectification on)", lambda v: v > 0),
    Check(
        f"{ONPOLICY_PREFIX}response_length/clip_ratio",
        "< 0.2 at the start; near 1 = rollouts cut by the budget or the rollout's max_model_len",
        lambda v: v < 0.2,
    ),
    Check(
        f"{ONPOLICY_PREFIX}rollout_probs_diff_mean",
        "< 0.02 (bf16 runs: ~0.005); larger = the rollout does not sample from the trained weights",
        lambda v: v < 0.02,
    ),
    Check(f"{ONPOLICY_PREFIX}rollout_actor_probs_pearson_corr", ">= 0.99", lambda v: v >= 0.99),
    Check("actor/dagrpo/anchor_token_frac", "> 0 with anchors on: anchor tokens reach the loss", lambda v: v > 0),
    Check(
        "actor/dagrpo/anchor_shaped_ratio_mean",
        "in (0, 1): mean f(p) = p/(p+0.1) on anchor tokens, low while the expert's text is unlikely",
        lambda v: 0 < v < 1,
    ),
    Check("actor/grad_norm", "finite and > 0", lambda v: math.isfinite(v) and v > 0),
)


def first_run_report(
    rows: Mapping[int, Mapping[str, float]], checks: Sequence[Check] = FIRST_RUN_CHECKS
) -> tuple[str, bool]:
    """A text table of ``checks`` over the logged steps, and whether every logged value is healthy.

    Args:
        rows: ``{step: {metric: value}}`` (e.g. from :func:`dagrpo_verl.eval.plot.load_metrics`).

    Returns:
        ``(table, healthy)``. A metric missing in every step is listed as missing and counts as not
        healthy (e.g. no rollout log-probs without ``actor_rollout_ref.rollout.calculate_log_probs=true``).
    """
    steps = sorted(rows)
    width = max(len(c.key) for c in checks)
    lines = [f"{'metric':<{width}}  " + "".join(f"{'step ' + str(s):>12}" for s in steps) + "  status   healthy"]
    healthy = True
    for check in checks:
        values = [rows[s].get(check.key) for s in steps]
        present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        if not present:
            status = "MISSING"
        else:
            status = "ok" if all(check.is_healthy(float(v)) for v in present) else "CHECK"
        healthy = healthy and status == "ok"
        cells = "".join(f"{'-' if v is None else f'{float(v):.4g}':>12}" for v in values)
        lines.append(f"{check.key:<{width}}  {cells}  {status:<7}  {check.healthy}")
    return "\n".join(lines), healthy


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The first-run checks of a training run's metrics file.")
    parser.add_argument("metrics", help="verl's file-logger output (VERL_FILE_LOGGER_PATH) or a run directory")
    args = parser.parse_args(argv)
    from dagrpo_verl.eval.plot import load_metrics

    frame = load_metrics(args.metrics)
    rows = {int(step): row.dropna().to_dict() for step, row in frame.iterrows()}
    table, healthy = first_run_report(rows)
    print(table)
    print("all first-run checks healthy" if healthy else "some first-run checks are off or missing: see CHECK/MISSING")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
