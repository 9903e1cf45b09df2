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
"""``dagrpo_ppo_loss`` (the actor loss the trainers send with ``set_loss_fn``) against verl's ``ppo_loss``.

Real: verl's ``ppo_loss``, ``ActorConfig`` built from the composed ``dagrpo_trainer`` config
(with ``DaGRPOPolicyLossConfig``), micro-batches in the no-padding (nested) layout verl's
engines hand to the loss function.
"""

from __future__ import annotations

import copy

import pytest
import torch
from tensordict import TensorDict
from verl.trainer.ppo import core_algos
from verl.utils import tensordict_utils as tu
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.utils.losses import ppo_loss

from dagrpo_verl.algo import core
from dagrpo_verl.fields import IS_ANCHOR
from dagrpo_verl.integration.losses import dagrpo_ppo_loss
from dagrpo_verl.main import compose_config

PROMPT_LENGTHS = [3, 2, 4, 2]
RESPONSE_LENGTHS = [4, 6, 3, 5]
ANCHOR = [False, True, False, False]
ADVANTAGE = [0.5, 1.0, -0.75, -0.25]


def _actor_config(*overrides: str):
    config = compose_config(["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2", *overrides])
    return omega_conf_to_dataclass(config.actor_rollout_ref.actor)


def _micro_batch(with_anchor: bool = True, seed: int = 0):
    """A micro-batch as verl's engine passes it, plus the model's log-probs over whole sequences."""
    generator = torch.Generator().manual_seed(seed)
    nested = lambda rows: torch.nested.as_nested_tensor(rows, layout=torch.jagged)
    old = [-torch.rand(n, generator=generator) - 0.05 for n in RESPONSE_LENGTHS]
    fields = {
        "prompts": nested([torch.ones(n, dtype=torch.long) for n in PROMPT_LENGTHS]),
        "responses": nested([torch.ones(n, dtype=torch.long) for n in RESPONSE_LENGTHS]),
        "response_mask": nested([torch.ones(n, dtype=torch.long) for n in RESPONSE_LENGTHS]),
        "old_log_probs": nested(old),
        "advantages": nested([torch.full((n,), a) for n, a in zip(RESPONSE_LENGTHS, ADVANTAGE, strict=True)]),
    }
    if with_anchor:
        fields[IS_ANCHOR] = torch.tensor(ANCHOR)
    data = TensorDict(fields, batch_size=len(PROMPT_LENGTHS))
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=sum(RESPONSE_LENGTHS), global_batch_size=len(ANCHOR))
    # log-probs of every sequence position (prompt + response), shifted as verl's engine returns them
    total = [p + r for p, r in zip(PROMPT_LENGTHS, RESPONSE_LENGTHS, strict=True)]
    flat = (-torch.rand(sum(total), generator=generator) - 0.05).requires_grad_(True)
    log_probs = torch.nested.nested_tensor_from_jagged(flat, offsets=torch.tensor([0, *torch.tensor(total).cumsum(0)]))
    return data, log_probs, flat


def _padded(rows):
    width = max(len(r) for r in rows)
    return torch.stack([torch.cat([r, torch.zeros(width - len(r), dtype=r.dtype)]) for r in rows])


def _response_log_probs(flat):
    """Response log-probs (bs, T) as verl's no_padding_2_padding cuts them (left-shifted by one)."""
    rows, offset = [], 0
    for p, r in zip(PROMPT_LENGTHS, RESPONSE_LENGTHS, strict=True):
        rows.append(flat[offset + p - 1 : offset + p - 1 + r])
        offset += p + r
    return _padded(rows)


def _values(metrics):
    return {k: (v.aggregate() if hasattr(v, "aggregate") else v) for k, v in metrics.items()}


@pytest.mark.parametrize("overrides", [[], ["actor_rollout_ref.actor.loss_agg_mode=token-mean"]])
def test_equals_verl_ppo_loss_for_verl_loss_modes(overrides):
    """With verl's own loss mode the anchor flag is ignored and the loss is exactly ppo_loss's."""
    config = _actor_config(
        "actor_rollout_ref.actor.policy_loss._target_=verl.workers.config.PolicyLossConfig",
        "~actor_rollout_ref.actor.policy_loss.off_policy_gamma",
        "actor_rollout_ref.actor.policy_loss.loss_mode=vanilla",
        "actor_rollout_ref.actor.entropy_coeff=0.01",
        *overrides,
    )
    data, log_probs, flat = _micro_batch()
    entropy = torch.nested.nested_tensor_from_jagged(flat.detach().abs(), offsets=log_probs.offsets())
    ours, our_metrics = dagrpo_ppo_loss(
        copy.deepcopy(config), {"log_probs": log_probs, "entropy": entropy}, data.clone()
    )
    theirs, their_metrics = ppo_loss(copy.deepcopy(config), {"log_probs": log_probs, "entropy": entropy}, data.clone())
    torch.testing.assert_close(ours, theirs)
    assert _values(our_metrics) == pytest.approx(_values(their_metrics))


def test_dagrpo_loss_without_anchors_equals_vanilla():
    config = _actor_config()
    data, log_probs, _ = _micro_batch(with_anchor=False)
    ours, _ = dagrpo_ppo_loss(copy.deepcopy(config), {"log_probs": log_probs}, data.clone())
    vanilla = _actor_config("actor_rollout_ref.actor.policy_loss.loss_mode=vanilla")
    theirs, _ = ppo_loss(vanilla, {"log_probs": log_probs}, data.clone())
    torch.testing.assert_close(ours, theirs)


def test_anchor_mask_reaches_the_policy_loss_and_its_gradient_is_the_shaping_one():
    config = _actor_config("actor_rollout_ref.actor.loss_agg_mode=token-mean")
    data, log_probs, flat = _micro_batch()
    loss, metrics = dagrpo_ppo_loss(copy.deepcopy(config), {"log_probs": log_probs}, data.clone())

    mask = _padded([torch.ones(n) for n in RESPONSE_LENGTHS])
    expected, _ = core.compute_dagrpo_policy_loss(
        old_log_prob=_padded([t for t in data["old_log_probs"].unbind()]),
        log_prob=_response_log_probs(flat),
        advantages=torch.tensor(ADVANTAGE).unsqueeze(-1) * mask,
        response_mask=mask.bool(),
        anchor_mask=torch.tensor(ANCHOR),
        loss_agg_mode="token-mean",
        off_policy_gamma=0.1,
        global_batch_info={"dp_size": 1, "batch_num_tokens": sum(RESPONSE_LENGTHS), "global_batch_size": len(ANCHOR)},
        agg_loss=core_algos.agg_loss,
    )
    torch.testing.assert_close(loss, expected)
    values = _values(metrics)
    assert values["dagrpo/anchor_tokens"] == RESPONSE_LENGTHS[1]
    assert values["dagrpo/response_tokens"] == sum(RESPONSE_LENGTHS)

    (grad,) = torch.autograd.grad(loss, flat)
    # anchor row 1: d/dlogp [-A p/(p+γ)] / N_tokens = -A γ p / (p+γ)^2 / N
    start = PROMPT_LENGTHS[0] + RESPONSE_LENGTHS[0] + PROMPT_LENGTHS[1] - 1
    anchor_lp = flat.detach()[start : start + RESPONSE_LENGTHS[1]]
    p, gamma, n_tokens = anchor_lp.exp(), 0.1, sum(RESPONSE_LENGTHS)
    torch.testing.assert_close(
        grad[start : start + RESPONSE_LENGTHS[1]], -ADVANTAGE[1] * gamma * p / (p + gamma) ** 2 / n_tokens
    )


def test_without_the_anchor_flag_anchor_tokens_would_be_trained_as_rollouts():
    """The flag changes the loss: the test above can fail if is_anchor does not reach the policy loss."""
    config = _actor_config()
    with_flag, _ = dagrpo_ppo_loss(copy.deepcopy(config), {"log_probs": _micro_batch()[1]}, _micro_batch()[0])
    data, log_probs, _ = _micro_batch(with_anchor=False)
    without_flag, _ = dagrpo_ppo_loss(copy.deepcopy(config), {"log_probs": log_probs}, data)
    assert not torch.allclose(with_flag, without_flag)
