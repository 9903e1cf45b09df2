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
"""One DaGRPO actor update through verl's worker with N data-parallel ranks on the CPU.

Stands in for the GPU's multi-rank training: ``N`` processes (FSDP2 over gloo, the CPU
platform of :mod:`dagrpo_verl.cpu`) each build verl 0.9.1's ``ActorRolloutRefWorker`` (role
``actor``) from the composed ``dagrpo_trainer`` config, get the DaGRPO loss with the trainers'
own :func:`dagrpo_verl.integration.trainer.install_dagrpo_loss`, take their share of one fixed batch as
verl's dispatcher cuts it (``BatchData.chunk``, contiguous by data-parallel rank) and run
``update_actor``: ``TrainingWorker.train_mini_batch`` with dynamic batch sizes (verl equalises
the number of micro-batches across ranks, not their anchors), the engine's global token
normalisation and verl's cross-rank metric aggregation (``Metric.aggregate_dp``). Only the Ray
dispatch is replaced (by the same chunking, in each process).

The batch (:func:`make_batch`): 8 sequences of different lengths from the tiny Qwen2 of
:mod:`dagrpo_verl.cpu.models`, anchors spread unevenly (rank 0 of 2 gets two, rank 1 one),
old log-probs = the model's own minus a fixed perturbation (ratios around 1, some clipped).

Rank 0 writes ``result.json`` (loss, grad norm, the actor metrics as the v1 trainer logs them,
the anchor tokens of every micro-batch on every rank) and ``grads.pt`` (the full gradient the
optimizer stepped with, captured by an optimizer pre-step hook). ``tests/test_dp_actor_update_on_cpu.py``
compares a 2-rank with a 1-rank update of the same batch.

    python -m dagrpo_verl.cpu.multirank --world-size 2 --out /tmp/dp2 [hydra overrides]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys
from typing import Any

__all__ = ["BATCH_ANCHORS", "make_batch", "run_actor_update"]

#: Response lengths and anchor flags of the fixed batch (rows 0-3 go to rank 0 of 2, rows 4-7 to rank 1).
BATCH_RESPONSE_LENGTHS = [9, 4, 14, 6, 5, 12, 7, 10]
BATCH_PROMPT_LENGTHS = [6, 9, 5, 8, 7, 5, 9, 6]
BATCH_ANCHORS = [True, False, True, False, False, False, True, False]
BATCH_ADVANTAGES = [0.875, -0.125, 0.5, -0.5, 0.25, -0.75, 0.625, -0.375]

#: Settings of the update (besides the model path and the command line's overrides).
UPDATE_OVERRIDES = [
    "+platform=cpu",
    "actor_rollout_ref.actor.use_dynamic_bsz=true",
    # a few sequences per micro-batch: several micro-batches per rank
    "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=40",
    "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=true",
    "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=40",
    "actor_rollout_ref.actor.ppo_mini_batch_size=8",
    "actor_rollout_ref.rollout.n=1",
    "actor_rollout_ref.actor.optim.lr=1e-3",
    # the gradient is compared before any clipping
    "actor_rollout_ref.actor.optim.clip_grad=1e9",
    "data.max_prompt_length=16",
    "data.max_response_length=16",
]


def make_batch(model_dir: str | os.PathLike):
    """The fixed batch in the layout verl's v1 trainer hands ``update_actor`` (nested per-token fields).

    Returns a ``TensorDict`` of ``len(BATCH_ANCHORS)`` rows; deterministic (the same in every process).
    """
    import torch
    from tensordict import TensorDict
    from transformers import AutoModelForCausalLM

    from dagrpo_verl.fields import IS_ANCHOR

    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="eager")
    generator = torch.Generator().manual_seed(0)
    high = model.config.vocab_size - 1
    rows = []
    for prompt_length, response_length in zip(BATCH_PROMPT_LENGTHS, BATCH_RESPONSE_LENGTHS, strict=True):
        prompt = torch.randint(3, high, (prompt_length,), generator=generator)
        response = torch.randint(3, high, (response_length,), generator=generator)
        with torch.no_grad():
            ids = torch.cat([prompt, response]).unsqueeze(0)
            log_probs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        response_log_probs = log_probs.gather(-1, ids[0, 1:, None])[:, 0][prompt_length - 1 :]
        perturbation = 0.3 * torch.sin(torch.arange(response_length, dtype=torch.float32) + prompt_length)
        rows.append((prompt, response, response_log_probs - perturbation))

    def nested(tensors):
        return torch.nested.as_nested_tensor(list(tensors), layout=torch.jagged)

    ones = [torch.ones(len(p) + len(r), dtype=torch.long) for p, r, _ in rows]
    return TensorDict(
        {
            "prompts": nested(p for p, _, _ in rows),
            "responses": nested(r for _, r, _ in rows),
            "input_ids": nested(torch.cat([p, r]) for p, r, _ in rows),
            "position_ids": nested(torch.arange(len(p) + len(r)) for p, r, _ in rows),
            "attention_mask": nested(ones),
            "response_mask": nested(torch.ones(len(r), dtype=torch.long) for _, r, _ in rows),
            "loss_mask": nested(torch.ones(len(r), dtype=torch.long) for _, r, _ in rows),
            "old_log_probs": nested(lp for _, _, lp in rows),
            "advantages": nested(torch.full((len(r),), a) for (_, r, _), a in zip(rows, BATCH_ADVANTAGES, strict=True)),
            IS_ANCHOR: torch.tensor(BATCH_ANCHORS),
        },
        batch_size=len(rows),
    )


def _rank_main(args: argparse.Namespace, overrides: list[str]) -> None:
    """One rank: build verl's actor worker, update once on this rank's share, rank 0 writes the result."""
    import torch
    import torch.distributed as dist
    from verl.protocol import BatchData
    from verl.utils import tensordict_utils as tu
    from verl.utils.metric import reduce_metrics
    from verl.utils.py_functional import rename_dict
    from verl.workers.engine_workers import ActorRolloutRefWorker

    from dagrpo_verl.algo.core import ANCHOR_TOKENS
    from dagrpo_verl.integration.losses import finish_loss_metrics
    from dagrpo_verl.integration.trainer import install_dagrpo_loss
    from dagrpo_verl.main import compose_config

    config = compose_config([*UPDATE_OVERRIDES, f"actor_rollout_ref.model.path={args.model}", *overrides])
    worker = ActorRolloutRefWorker(config=config.actor_rollout_ref, role="actor")
    worker.init_model()
    assert install_dagrpo_loss(config, worker), "the dagrpo loss was not selected"

    # observe (not change) the loss: anchor tokens of every micro-batch on this rank
    loss_fn, anchor_tokens = worker.actor.loss_fn, []

    def recording_loss_fn(*a, **k):
        loss, metrics = loss_fn(*a, **k)
        anchor_tokens.append(float(metrics[ANCHOR_TOKENS].values[0]))
        return loss, metrics

    worker.actor.set_loss_fn(recording_loss_fn)

    engine = worker.actor.engine
    grads: dict[str, Any] = {}

    def capture(optimizer, *_):  # the gradient the optimizer steps with (full tensors: a collective)
        for name, param in engine.module.named_parameters():
            grad = param.grad
            grads[name] = (grad.full_tensor() if hasattr(grad, "full_tensor") else grad).detach().clone()

    engine.optimizer.register_step_pre_hook(capture)

    batch = make_batch(args.model)
    actor = config.actor_rollout_ref.actor
    mini_batch_size = actor.ppo_mini_batch_size * config.actor_rollout_ref.rollout.n
    # the extra info verl's v1 PPOTrainer._update_actor attaches to the batch
    # mirrors verl 0.9.1 verl.trainer.ppo.v1.trainer_base:PPOTrainer._update_actor (batch info)
    tu.assign_non_tensor(
        batch,
        calculate_entropy=False,
        distillation_use_topk=False,
        distillation_only=False,
        global_batch_size=mini_batch_size,
        mini_batch_size=mini_batch_size,
        epochs=1,
        seed=actor.data_loader_seed,
        dataloader_kwargs={"shuffle": False},
        temperature=1.0,
    )
    # end mirror
    # this rank's share as verl's dispatcher cuts it; the worker fetches it unlocked from TransferQueue
    data = BatchData(batch).chunk(chunks=args.world_size)[args.rank].unlock_()
    output = worker.update_actor(data)

    per_rank = [None] * args.world_size
    dist.all_gather_object(per_rank, anchor_tokens)
    if args.rank != 0:
        return
    metrics = rename_dict(output["metrics"], "actor/")  # as PPOTrainer._update_actor, then the DaGRPO mix-in
    metrics.pop("actor/mfu", None)
    metrics = finish_loss_metrics(reduce_metrics(metrics))
    out = pathlib.Path(args.out)
    torch.save(grads, out / "grads.pt")
    result = {
        "world_size": args.world_size,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "micro_batch_anchor_tokens": per_rank,
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_actor_update(
    world_size: int, model_dir: str | os.PathLike, out_dir: str | os.PathLike, overrides=(), timeout: float = 600
) -> dict:
    """Run the update with ``world_size`` rank processes; return rank 0's ``result.json`` (plus ``grads``).

    Raises:
        RuntimeError: a rank failed or ran past ``timeout`` seconds; the message holds its output.
    """
    import torch

    from dagrpo_verl.cpu.smoke import cpu_env

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in cpu_env().items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_", "MASTER_"))}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(world_size))
    env.update(LOCAL_WORLD_SIZE=str(world_size), OMP_NUM_THREADS="1")
    procs = []
    for rank in range(world_size):
        command = [sys.executable, "-m", "dagrpo_verl.cpu.multirank", "--rank", str(rank)]
        command += ["--world-size", str(world_size), "--model", str(model_dir), "--out", str(out), *overrides]
        log = open(out / f"rank{rank}.log", "w")  # noqa: SIM115 (closed below)
        rank_env = dict(env, RANK=str(rank), LOCAL_RANK=str(rank))
        procs.append((subprocess.Popen(command, env=rank_env, stdout=log, stderr=subprocess.STDOUT), log))
    failed = []
    for rank, (proc, log) in enumerate(procs):
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other, _ in procs:
                other.kill()
            code = "timeout"
        log.close()
        if code != 0:
            failed.append(f"rank {rank} ({code}):\n" + (out / f"rank{rank}.log").read_text()[-4000:])
    if failed:
        raise RuntimeError("\n".join(failed))
    result = json.loads((out / "result.json").read_text())
    result["grads"] = torch.load(out / "grads.pt")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world-size", type=int, default=2, help="data-parallel ranks (processes)")
    parser.add_argument("--out", required=True, help="directory for result.json, grads.pt and the rank logs")
    parser.add_argument("--model", help="model directory (default: the tiny Qwen2, built under --out)")
    parser.add_argument("--rank", type=int, help=argparse.SUPPRESS)  # set by run_actor_update for each process
    args, overrides = parser.parse_known_args(argv)
    if args.rank is not None:
        _rank_main(args, overrides)
        return
    from dagrpo_verl.cpu.models import build_tiny_qwen2

    model = args.model or str(build_tiny_qwen2(pathlib.Path(args.out) / "model"))
    result = run_actor_update(args.world_size, model, args.out, overrides)
    print(json.dumps({k: v for k, v in result.items() if k != "grads"}, indent=1))


if __name__ == "__main__":
    main()
