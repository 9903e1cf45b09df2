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
"""DaGRPO policy loss against verl 0.9.1's `vanilla` loss and the analytic policy-shaping gradient."""

import pytest
import torch
import verl  # noqa: F401  (loads the dagrpo plugin through verl's entry points)
from verl.trainer.ppo import core_algos
from verl.workers.config.actor import FSDPActorConfig

from dagrpo_verl.integration.config import DaGRPOPolicyLossConfig

LOSS_AGG_MODES = ["token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-sum-norm", "seq-mean-token-mean"]


def actor_config(gamma=0.1, clip_low=0.2, clip_high=0.28, clip_c=3.0, global_batch_info=None, policy_loss=None):
    config = FSDPActorConfig(
        strategy="fsdp",
        ppo_mini_batch_size=4,
        ppo_micro_batch_size_per_gpu=2,
        rollout_n=1,
        clip_ratio=0.2,
        clip_ratio_low=clip_low,
        clip_ratio_high=clip_high,
        clip_ratio_c=clip_c,
        policy_loss=policy_loss or DaGRPOPolicyLossConfig(off_policy_gamma=gamma),
    )
    config.global_batch_info.update(global_batch_info or {})
    return config


def batch(seed, bs=8, length=16):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(bs, length, generator=g) * 3
    # log-ratios up to +-1.5 so that clipping and the dual clip (ratio > 3) both fire
    log_prob = (old + (torch.rand(bs, length, generator=g) - 0.5) * 3).clamp(max=0).requires_grad_()
    adv = torch.randn(bs, 1, generator=g).expand(bs, length).contiguous()
    lengths = torch.randint(1, length + 1, (bs,), generator=g)
    mask = torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)
    return old, log_prob, adv, mask


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
@pytest.mark.parametrize("with_is_weights", [False, True])
@pytest.mark.parametrize("global_info", [{}, {"dp_size": 2, "batch_num_tokens": 300, "global_batch_size": 16}])
def test_without_anchors_equals_vanilla(mode, with_is_weights, global_info):
    old, log_prob, adv, mask = batch(1)
    is_weights = torch.rand_like(old) + 0.5 if with_is_weights else None
    config = actor_config(global_batch_info=global_info)
    vanilla = core_algos.get_policy_loss_fn("vanilla")
    ours = core_algos.get_policy_loss_fn("dagrpo")
    kwargs = dict(
        old_log_prob=old,
        log_prob=log_prob,
        advantages=adv,
        response_mask=mask,
        loss_agg_mode=mode,
        config=config,
        rollout_is_weights=is_weights,
    )
    loss_v, metrics_v = vanilla(**kwargs)
    (grad_v,) = torch.autograd.grad(loss_v, log_prob)
    loss_d, metrics_d = ours(**kwargs)
    (grad_d,) = torch.autograd.grad(loss_d, log_prob)
    torch.testing.assert_close(loss_d, loss_v, rtol=0, atol=0)
    torch.testing.assert_close(grad_d, grad_v, rtol=0, atol=0)
    for key, value in metrics_v.items():
        assert metrics_d[key] == pytest.approx(value)
    assert metrics_v["actor/pg_clipfrac"] > 0 and metrics_v["actor/pg_clipfrac_lower"] > 0  # both clips fired


@pytest.mark.parametrize("gamma", [0.1, 0.5])
def test_anchor_gradient_is_the_analytic_policy_shaping_gradient(gamma):
    """Loss on anchor tokens is -A·p/(p+γ): d/dlogp = -A·γ·p/(p+γ)^2 (token-sum aggregation)."""
    old, log_prob, adv, mask = batch(2)
    anchor_rows = torch.tensor([True, False, False, True, False, False, False, False])
    config = actor_config(gamma=gamma)
    loss, metrics = core_algos.get_policy_loss_fn("dagrpo")(
        old_log_prob=old,
        log_prob=log_prob,
        advantages=adv,
        response_mask=mask,
        loss_agg_mode="token-sum",
        config=config,
        anchor_mask=anchor_rows,
    )
    (grad,) = torch.autograd.grad(loss, log_prob)
    p = log_prob.detach().exp()
    analytic = -adv * gamma * p / (p + gamma) ** 2 * mask
    torch.testing.assert_close(grad[anchor_rows], analytic[anchor_rows])

    # on-policy rows: exactly vanilla's gradient on those rows
    loss_v, _ = core_algos.get_policy_loss_fn("vanilla")(
        old_log_prob=old,
        log_prob=log_prob,
        advantages=adv,
        response_mask=mask & ~anchor_rows.unsqueeze(-1),
        loss_agg_mode="token-sum",
        config=config,
    )
    (grad_v,) = torch.autograd.grad(loss_v, log_prob)
    torch.testing.assert_close(grad[~anchor_rows], grad_v[~anchor_rows])
    shaped = (p / (p + gamma))[anchor_rows][mask[anchor_rows]]
    assert metrics["dagrpo/anchor_shaped_ratio_sum"] == pytest.approx(shaped.sum().item(), rel=1e-5)
    assert metrics["dagrpo/anchor_tokens"] == mask[anchor_rows].sum().item()
    assert metrics["dagrpo/response_tokens"] == mask.sum().item()


def test_anchor_tokens_ignore_clipping_and_is_weights():
    """A huge ratio on anchor tokens is not clipped, and IS weights do not touch anchor tokens."""
    old, log_prob, adv, mask = batch(3)
    anchor_rows = torch.zeros(8, dtype=torch.bool)
    anchor_rows[0] = True
    kwargs = dict(
        old_log_prob=old - 10,
        log_prob=log_prob,
        advantages=adv,
        response_mask=mask,
        loss_agg_mode="token-sum",
        config=actor_config(),
        anchor_mask=anchor_rows,
    )
    fn = core_algos.get_policy_loss_fn("dagrpo")
    (g1,) = torch.autograd.grad(fn(**kwargs)[0], log_prob)
    (g2,) = torch.autograd.grad(fn(**kwargs, rollout_is_weights=torch.full_like(old, 7.0))[0], log_prob)
    torch.testing.assert_close(g1[0], g2[0])
    assert torch.all(g1[0][mask[0]] != 0)  # no clipping on anchors: every valid token gets gradient


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_per_sample_and_per_token_anchor_masks_agree(mode):
    old, log_prob, adv, mask = batch(4)
    rows = torch.tensor([False, True, False, False, True, False, False, False])
    fn = core_algos.get_policy_loss_fn("dagrpo")
    common = dict(
        old_log_prob=old,
        log_prob=log_prob,
        advantages=adv,
        response_mask=mask,
        loss_agg_mode=mode,
        config=actor_config(),
    )
    loss_rows, _ = fn(**common, anchor_mask=rows)
    loss_tokens, _ = fn(**common, anchor_mask=rows.unsqueeze(-1).expand_as(mask))
    torch.testing.assert_close(loss_rows, loss_tokens)
    loss_none, _ = fn(**common, anchor_mask=torch.zeros(8, dtype=torch.bool))
    loss_vanilla, _ = core_algos.get_policy_loss_fn("vanilla")(**common)
    torch.testing.assert_close(loss_none, loss_vanilla)
    assert not torch.allclose(loss_rows, loss_vanilla)


def test_gamma_defaults_to_0_1_with_verl_policy_loss_config():
    """With verl's own PolicyLossConfig (no off_policy_gamma) γ = 0.1."""
    from verl.workers.config.actor import PolicyLossConfig

    old, log_prob, adv, mask = batch(5)
    config = actor_config(gamma=0.1)
    plain = actor_config(policy_loss=PolicyLossConfig(loss_mode="dagrpo"))
    rows = torch.tensor([True] + [False] * 7)
    fn = core_algos.get_policy_loss_fn("dagrpo")
    common = dict(old_log_prob=old, log_prob=log_prob, advantages=adv, response_mask=mask, anchor_mask=rows)
    torch.testing.assert_close(fn(**common, config=plain)[0], fn(**common, config=config)[0])


def test_bad_anchor_mask_shape_is_named():
    old, log_prob, adv, mask = batch(6)
    with pytest.raises(ValueError, match="anchor_mask"):
        core_algos.get_policy_loss_fn("dagrpo")(
            old_log_prob=old,
            log_prob=log_prob,
            advantages=adv,
            response_mask=mask,
            config=actor_config(),
            anchor_mask=torch.ones(3, dtype=torch.bool),
        )
    with pytest.raises(ValueError, match="off_policy_gamma"):
        DaGRPOPolicyLossConfig(off_policy_gamma=0.0)


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
@pytest.mark.parametrize("per_token", [False, True])
def test_all_false_anchor_flags_equal_vanilla_bit_for_bit(mode, per_token):
    """The trainer passes the is_anchor flags with every micro-batch; one without anchors is exactly vanilla."""
    old, log_prob, adv, mask = batch(7)
    flags = torch.zeros_like(mask) if per_token else torch.zeros(8, dtype=torch.bool)
    common = dict(
        old_log_prob=old,
        log_prob=log_prob,
        advantages=adv,
        response_mask=mask,
        loss_agg_mode=mode,
        config=actor_config(),
    )
    loss_v, metrics_v = core_algos.get_policy_loss_fn("vanilla")(**common)
    (grad_v,) = torch.autograd.grad(loss_v, log_prob)
    loss_d, metrics_d = core_algos.get_policy_loss_fn("dagrpo")(**common, anchor_mask=flags)
    (grad_d,) = torch.autograd.grad(loss_d, log_prob)
    torch.testing.assert_close(loss_d, loss_v, rtol=0, atol=0)
    torch.testing.assert_close(grad_d, grad_v, rtol=0, atol=0)
    assert {k: metrics_d[k] for k in metrics_v} == pytest.approx(metrics_v)
    assert metrics_d["dagrpo/anchor_tokens"] == 0.0 and metrics_d["dagrpo/response_tokens"] == mask.sum().item()


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_a_row_mixing_anchor_and_rollout_tokens(mode):
    """Per-token flags: anchor tokens get the shaping gradient, rollout tokens of the same row vanilla's.

    Row 0 is anchor on its first half only; row 3 is anchor on its valid tokens and not on its
    padding, which must give the same loss as flagging the whole row (padding carries no loss).
    """
    old, log_prob, adv, mask = batch(8)
    gamma = 0.1
    flags = torch.zeros_like(mask)
    flags[0, : mask.shape[1] // 2] = True
    flags[3] = mask[3]
    fn = core_algos.get_policy_loss_fn("dagrpo")
    common = dict(old_log_prob=old, log_prob=log_prob, advantages=adv, response_mask=mask, config=actor_config())
    loss, metrics = fn(**common, loss_agg_mode="token-sum", anchor_mask=flags)
    (grad,) = torch.autograd.grad(loss, log_prob)
    p = log_prob.detach().exp()
    analytic = -adv * gamma * p / (p + gamma) ** 2 * mask
    torch.testing.assert_close(grad[flags], analytic[flags])
    loss_v, _ = core_algos.get_policy_loss_fn("vanilla")(**common, loss_agg_mode="token-sum")
    (grad_v,) = torch.autograd.grad(loss_v, log_prob)
    torch.testing.assert_close(grad[~flags], grad_v[~flags])
    assert grad[0, mask.shape[1] // 2 :][mask[0, mask.shape[1] // 2 :]].abs().sum() > 0  # the rollout half is trained
    assert metrics["dagrpo/anchor_tokens"] == (flags & mask).sum().item()

    only_row_3 = torch.zeros_like(mask)
    only_row_3[3] = mask[3]
    whole_row_3 = torch.zeros(8, dtype=torch.bool)
    whole_row_3[3] = True
    loss_tokens, _ = fn(**common, loss_agg_mode=mode, anchor_mask=only_row_3)
    loss_rows, _ = fn(**common, loss_agg_mode=mode, anchor_mask=whole_row_3)
    torch.testing.assert_close(loss_tokens, loss_rows)
