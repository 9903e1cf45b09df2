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
"""Speed of the DaGRPO estimator and loss against verl 0.9.1's own, measured in the same run.

    python benchmarks/bench_core.py            # paper scale: 1024 prompts x 8 responses x 4096 tokens
    python benchmarks/bench_core.py --quick    # small shapes, seconds

Prints a table of best-of-N wall times (runs interleaved) and the ratios the core issue asks
for: estimator <= 1.5x verl `grpo_vectorized` and >= 5x faster than verl `grpo`; loss
(forward + backward) <= 1.2x verl `vanilla`, without anchors, with the trainer's all-False
anchor flags, and with 1/8 anchor rows. Writes the numbers to outputs/bench_core.json.
CPU timings move with the machine's load: run it on a quiet machine, or repeat it.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import verl  # noqa: F401  (loads the dagrpo plugin)
from verl.trainer.ppo import core_algos
from verl.workers.config.actor import FSDPActorConfig

from dagrpo_verl.integration.config import DaGRPOPolicyLossConfig


def best_seconds(candidates: dict, repeats: int) -> dict:
    """Best-of-``repeats`` wall time of each callable, runs interleaved round-robin.

    Interleaving exposes every candidate to the same machine load; the minimum is the
    estimate least disturbed by other processes (as ``timeit`` recommends).
    """
    times = {name: [] for name in candidates}
    for fn in candidates.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(ts) for name, ts in times.items()}


def estimator_inputs(prompts: int, group: int, length: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    bs = prompts * group
    uids = np.array([f"{i // group:08d}-uid" for i in range(bs)], dtype=object)[torch.randperm(bs, generator=g).numpy()]
    lengths = torch.randint(1, length + 1, (bs,), generator=g)
    mask = (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)).float()
    rewards = torch.zeros(bs, length)
    rewards[torch.arange(bs), lengths - 1] = torch.randint(0, 2, (bs,), generator=g).float()
    scores = torch.randint(1, 11, (bs,), generator=g).float()
    anchors = torch.zeros(bs, dtype=torch.bool)
    anchors[::group] = True
    return rewards, mask, uids, scores, anchors


def bench_estimator(prompts, group, length, repeats):
    rewards, mask, uids, scores, anchors = estimator_inputs(prompts, group, length)
    config = {"norm_adv_by_std_in_grpo": False, "dagrpo": {"delta": 3.0}}
    dagrpo = core_algos.get_adv_estimator_fn("dagrpo")
    grpo = core_algos.get_adv_estimator_fn("grpo")
    grpo_vec = core_algos.get_adv_estimator_fn("grpo_vectorized")
    fast = best_seconds(
        {
            "dagrpo": lambda: dagrpo(rewards, mask, uids, config, judge_scores=scores, anchor_mask=anchors),
            "grpo_vectorized": lambda: grpo_vec(rewards, mask, uids, norm_adv_by_std_in_grpo=False),
        },
        repeats,
    )
    slow = best_seconds(
        {"grpo": lambda: grpo(rewards, mask, uids, norm_adv_by_std_in_grpo=False)}, max(1, repeats // 3)
    )
    return {**fast, **slow}


def bench_loss(bs, length, repeats, anchor_every):
    """Best-of-N forward+backward seconds of verl ``vanilla`` and ``dagrpo``, and of each half.

    ``dagrpo`` runs three ways: without ``anchor_mask``; with the ``(bs,)`` flags all False (what
    the trainer passes for a micro-batch without anchors); with every ``anchor_every``-th row an
    anchor. Returns ``(total, forward, backward)`` dicts; the halves are best-of-N on their own.
    """
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(bs, length, generator=g) * 3
    base = (old + (torch.rand(bs, length, generator=g) - 0.5)).clamp(max=0)
    adv = torch.randn(bs, 1, generator=g).expand(bs, length).contiguous()
    mask = torch.arange(length).unsqueeze(0) < torch.randint(1, length + 1, (bs, 1), generator=g)
    anchors = torch.zeros(bs, dtype=torch.bool)
    anchors[::anchor_every] = True
    config = FSDPActorConfig(
        strategy="fsdp",
        ppo_mini_batch_size=4,
        ppo_micro_batch_size_per_gpu=2,
        rollout_n=1,
        clip_ratio=0.2,
        policy_loss=DaGRPOPolicyLossConfig(),
    )
    vanilla = core_algos.get_policy_loss_fn("vanilla")
    dagrpo = core_algos.get_policy_loss_fn("dagrpo")

    halves = {}

    def step(name, fn, **extra):
        log_prob = base.clone().requires_grad_()
        start = time.perf_counter()
        loss, _ = fn(
            old_log_prob=old,
            log_prob=log_prob,
            advantages=adv,
            response_mask=mask,
            loss_agg_mode="seq-mean-token-sum-norm",
            config=config,
            **extra,
        )
        middle = time.perf_counter()
        loss.backward()
        forward, backward = halves.setdefault(name, ([], []))
        forward.append(middle - start)
        backward.append(time.perf_counter() - middle)

    steps = {
        "vanilla": (vanilla, {}),
        "dagrpo (no anchors)": (dagrpo, {}),
        "dagrpo (flags, none set)": (dagrpo, {"anchor_mask": torch.zeros(bs, dtype=torch.bool)}),
        f"dagrpo (1/{anchor_every} rows anchors)": (dagrpo, {"anchor_mask": anchors}),
    }
    total = best_seconds({name: partial(step, name, fn, **extra) for name, (fn, extra) in steps.items()}, repeats)
    forward = {name: min(f) for name, (f, _) in halves.items()}
    backward = {name: min(b) for name, (_, b) in halves.items()}
    return total, forward, backward


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small shapes for a smoke run")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", default="outputs/bench_core.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    prompts, group, length = (64, 8, 512) if args.quick else (1024, 8, 4096)
    loss_bs, loss_len = (64, 512) if args.quick else (256, 4096)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    est = bench_estimator(prompts, group, length, args.repeats)
    print(f"\nadvantage estimator, {prompts} prompts x {group} responses x {length} tokens (best of N, s)")
    for name, t in est.items():
        print(f"  {name:<28} {t:9.4f}")
    ratio_vec = est["dagrpo"] / est["grpo_vectorized"]
    speedup_loop = est["grpo"] / est["dagrpo"]
    print(f"  dagrpo / grpo_vectorized = {ratio_vec:.2f}x   (target <= 1.5x)")
    print(f"  grpo / dagrpo            = {speedup_loop:.1f}x faster (target >= 5x)")

    # The same estimators on one token per response: what is left is the per-group work alone,
    # without the (bs, T) reward sum and advantage broadcast that every estimator pays alike.
    scalar = bench_estimator(prompts, group, 1, args.repeats)
    print(f"\nadvantage estimator, {prompts} prompts x {group} responses x 1 token: per-group work only (best of N, s)")
    for name, t in scalar.items():
        print(f"  {name:<28} {t:9.4f}")
    scalar_speedup = scalar["grpo"] / scalar["dagrpo"]
    print(f"  dagrpo / grpo_vectorized = {scalar['dagrpo'] / scalar['grpo_vectorized']:.2f}x")
    print(f"  grpo / dagrpo            = {scalar_speedup:.1f}x faster")

    loss, loss_forward, loss_backward = bench_loss(loss_bs, loss_len, args.repeats, anchor_every=group)
    print(f"\npolicy loss, {loss_bs} x {loss_len} tokens, seq-mean-token-sum-norm (best of N, s)")
    print(f"  {'':<28} {'fwd+bwd':>9} {'fwd':>9} {'bwd':>9}")
    for name, t in loss.items():
        print(f"  {name:<28} {t:9.4f} {loss_forward[name]:9.4f} {loss_backward[name]:9.4f}")
    ratios = {name: t / loss["vanilla"] for name, t in loss.items() if name != "vanilla"}
    for name, r in ratios.items():
        print(f"  {name} / vanilla = {r:.2f}x   (target <= 1.2x)")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "shapes": {
                    "prompts": prompts,
                    "group": group,
                    "length": length,
                    "loss_bs": loss_bs,
                    "loss_len": loss_len,
                },
                "estimator_s": est,
                "loss_s": loss,
                "loss_forward_s": loss_forward,
                "loss_backward_s": loss_backward,
                "estimator_vs_grpo_vectorized": ratio_vec,
                "estimator_speedup_vs_grpo": speedup_loop,
                "estimator_one_token_s": scalar,
                "estimator_one_token_speedup_vs_grpo": scalar_speedup,
                "loss_vs_vanilla": ratios,
            },
            indent=2,
        )
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
