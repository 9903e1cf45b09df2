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
"""The DaGRPO actor loss reaches anchor tokens through verl's FSDP engine, on the CPU.

Real: verl's ``FSDPEngineWithLMHead`` (``EngineRegistry.new``, strategy ``fsdp2``, fp32),
its ``train_mode`` / ``forward_backward_batch`` (micro-batching, no-padding layout,
global token normalisation), the loss function exactly as the trainers install it
(``partial(dagrpo_ppo_loss, config=ActorConfig)`` built from the composed
``dagrpo_trainer`` config), torch.distributed (gloo, one rank), the project's CPU
platform (``dagrpo_verl.cpu``) and the tiny Qwen2 of ``dagrpo_verl.cpu.models``.

The engine's parameter gradient is compared with the analytic one: with
``old_log_probs`` equal to the current log-probs (ratio 1) and ``token-mean``
aggregation over N response tokens, dL/dlog p_t is ``-A/N`` on rollout tokens and
``-A γ p / (p + γ)^2 / N`` on anchor tokens (LUFFY shaping f(p) = p / (p + γ)), so the
expected gradient is the autograd gradient of ``Σ_t c_t log p_t`` in a plain
transformers copy of the same weights.

Runs in a subprocess: the CPU platform is chosen by environment variables that must be
set before verl is imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("dagrpo_verl.cpu")

SCRIPT = textwrap.dedent(
    """
    import json, os, socket, sys
    from functools import partial

    from dagrpo_verl.cpu import CPU_ENV

    os.environ.update(CPU_ENV)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")

    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=0, world_size=1)

    from tensordict import TensorDict
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from verl.utils import tensordict_utils as tu
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.engine import EngineRegistry

    from dagrpo_verl.fields import IS_ANCHOR
    from dagrpo_verl.integration.losses import dagrpo_ppo_loss
    from dagrpo_verl.main import compose_config
    from dagrpo_verl.cpu.models import build_tiny_qwen2

    model_dir = str(build_tiny_qwen2(sys.argv[1]))
    config = compose_config([
        f"actor_rollout_ref.model.path={model_dir}",
        "+actor_rollout_ref.model.override_config.attn_implementation=eager",
        "actor_rollout_ref.model.use_remove_padding=false",
        "actor_rollout_ref.actor.strategy=fsdp2",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
        "actor_rollout_ref.actor.loss_agg_mode=token-mean",
        "actor_rollout_ref.actor.optim.clip_grad=1e9",
        "actor_rollout_ref.actor.fsdp_config.use_torch_compile=false",
        "+actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=fp32",
        "+actor_rollout_ref.actor.fsdp_config.mixed_precision.reduce_dtype=fp32",
        "+actor_rollout_ref.actor.fsdp_config.mixed_precision.buffer_dtype=fp32",
    ])
    actor = omega_conf_to_dataclass(config.actor_rollout_ref.actor)
    engine = EngineRegistry.new(
        model_type="language_model", backend=actor.engine.strategy,
        model_config=omega_conf_to_dataclass(config.actor_rollout_ref.model),
        engine_config=actor.engine, optimizer_config=actor.optim, checkpoint_config=actor.checkpoint,
    )
    engine.initialize()

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = [("What is 2 + 2?", " It is 4."), ("Solve x + 1 = 3.", " x = 2, so the answer is 2."),
             ("Name a prime.", " 7"), ("What is 3 * 3?", " Nine, i.e. 9.")]
    anchor = [False, True, False, False]
    adv = [0.5, 1.0, -0.75, 0.25]
    prompts = [tokenizer.encode(p) for p, _ in texts]
    responses = [tokenizer.encode(r) for _, r in texts]
    gamma = float(actor.policy_loss.off_policy_gamma)

    # analytic gradient on a plain transformers copy of the same weights
    reference = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="eager")
    ref_lp = []
    for p, r in zip(prompts, responses):
        ids = torch.tensor([p + r])
        logits = reference(input_ids=ids).logits[0, :-1].float()
        ref_lp.append(torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None])[:, 0][len(p) - 1:])
    n_tokens = sum(len(r) for r in responses)

    def reference_grad(anchor_flags):
        coef = []
        for lp, a, is_anchor in zip(ref_lp, adv, anchor_flags):
            p = lp.detach().exp()
            coef.append(-a * gamma * p / (p + gamma) ** 2 if is_anchor else torch.full_like(p, -a))
        reference.zero_grad()
        (sum((c * lp).sum() for c, lp in zip(coef, ref_lp)) / n_tokens).backward(retain_graph=True)
        return {k: v.grad.clone() for k, v in reference.named_parameters()}

    expected, as_rollouts = reference_grad(anchor), reference_grad([False] * 4)

    def nested(rows, dtype):
        return torch.nested.as_nested_tensor([torch.tensor(r, dtype=dtype) for r in rows], layout=torch.jagged)

    # a micro-batch in the layout verl's v1 trainer reads from TransferQueue
    data = TensorDict({
        "input_ids": nested([p + r for p, r in zip(prompts, responses)], torch.long),
        "position_ids": nested([list(range(len(p) + len(r))) for p, r in zip(prompts, responses)], torch.long),
        "prompts": nested(prompts, torch.long),
        "responses": nested(responses, torch.long),
        "response_mask": nested([[1] * len(r) for r in responses], torch.long),
        "loss_mask": nested([[1] * len(r) for r in responses], torch.long),
        "attention_mask": nested([[1] * (len(p) + len(r)) for p, r in zip(prompts, responses)], torch.long),
        "old_log_probs": torch.nested.as_nested_tensor([lp.detach() for lp in ref_lp], layout=torch.jagged),
        "advantages": nested([[a] * len(r) for a, r in zip(adv, responses)], torch.float32),
        IS_ANCHOR: torch.tensor(anchor),
    }, batch_size=4)
    tu.assign_non_tensor(data, temperature=1.0, use_remove_padding=False, use_dynamic_bsz=False,
                         micro_batch_size_per_gpu=2, max_token_len_per_gpu=4096, use_fused_kernels=False,
                         calculate_entropy=False, global_batch_size=4)
    with engine.train_mode():
        engine.optimizer_zero_grad()
        out = engine.forward_backward_batch(data, partial(dagrpo_ppo_loss, config=actor), forward_only=False)
        got = {}
        for name, param in engine.module.named_parameters():
            grad = param.grad
            got[name] = (grad.full_tensor() if hasattr(grad, "full_tensor") else grad).detach().clone()
    names = sorted(set(got) & set(expected))
    print("RESULT " + json.dumps({
        "matched": len(names),
        "total": len(got),
        "max_err": max(float((got[k] - expected[k]).abs().max()) for k in names),
        "scale": max(float(expected[k].abs().max()) for k in names),
        "diff_if_rollouts": max(float((got[k] - as_rollouts[k]).abs().max()) for k in names),
        # per micro-batch (rows 0-1, rows 2-3) anchor tokens, summed by verl's Metric
        "anchor_tokens": out["metrics"]["dagrpo/anchor_tokens"].values,
        "expected_anchor_tokens": [len(responses[1]), 0],
    }), flush=True)
    """
)


@pytest.mark.slow
def test_anchor_loss_gradient_through_verl_fsdp_engine(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERL_", "RANK", "WORLD_SIZE", "MASTER_"))}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "tiny_qwen2")],
        check=False,  # the exit code is asserted below
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["matched"] == result["total"] > 0, "every engine parameter has a reference gradient"
    assert result["max_err"] <= 1e-5 * max(result["scale"], 1.0), result
    # the anchor mask made a difference: training the anchor as a rollout gives another gradient
    assert result["diff_if_rollouts"] > 100 * result["max_err"], result
    # the engine split the batch into two micro-batches; the anchor flag followed its row into the first
    assert result["anchor_tokens"] == result["expected_anchor_tokens"]
