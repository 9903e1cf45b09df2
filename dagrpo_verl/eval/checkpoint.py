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
"""What ``python -m dagrpo_verl.eval --model`` accepts: a Hugging Face model or a verl FSDP checkpoint.

verl 0.9.1 saves sharded checkpoints; the SFT trainer (``recipes/run_sft_baseline.sh``) and the
PPO trainers (``recipes/run_*``) lay them out as::

    <default_local_dir>/latest_checkpointed_iteration.txt        the last saved step N
    <default_local_dir>/global_step_N/                            SFT trainer
    <default_local_dir>/global_step_N/actor/                      PPO trainers (the policy)
        model_world_size_W_rank_R.pt ...                          FSDP shards
        huggingface/                                              config + tokenizer (+ the full
                                                                  model with checkpoint.save_contents
                                                                  including hf_model)

:func:`resolve_model` turns any of these directories into a Hugging Face model directory:
the checkpoint's ``huggingface/`` when it holds weights, otherwise the shards merged once by
verl's own model merger (``verl.model_merger``, FSDP backend) into a directory the caller
chooses (the evaluator uses ``<--out>/merged_model``). Megatron checkpoints are not merged
here: run ``python -m verl.model_merger merge --backend megatron`` and pass its output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

__all__ = [
    "MERGED_MODEL_DIR",
    "checkpoint_dir",
    "is_hf_model",
    "merge_fsdp_checkpoint",
    "model_source",
    "resolve_model",
]

#: verl's tracker file in ``trainer.default_local_dir`` (``verl.utils.checkpoint``).
TRACKER_FILE = "latest_checkpointed_iteration.txt"
_SHARD = re.compile(r"^model_world_size_(\d+)_rank_(\d+)\.pt$")
_WEIGHTS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")
_MERGE_STAMP = "dagrpo_merged_from.json"
#: Sub-directory of the evaluator's ``--out`` that receives a merged checkpoint.
MERGED_MODEL_DIR = "merged_model"


def is_hf_model(path: str | os.PathLike) -> bool:
    """True iff ``path`` is a directory with a ``config.json`` and model weights."""
    path = Path(path)
    return (path / "config.json").is_file() and any(next(path.glob(p), None) for p in _WEIGHTS)


def _shards(path: Path) -> list[Path]:
    return sorted(p for p in path.glob("model_world_size_*_rank_*.pt") if _SHARD.match(p.name))


def checkpoint_dir(path: str | os.PathLike) -> Path:
    """The FSDP checkpoint directory (the one holding ``model_world_size_*_rank_*.pt``) that ``path`` names.

    ``path`` may be that directory, a PPO ``global_step_N`` (its ``actor/``), or a
    ``trainer.default_local_dir`` (the step in its ``latest_checkpointed_iteration.txt``).

    Raises:
        ValueError: ``path`` is none of these (the message says what was looked for).
    """
    path = Path(path)
    tracker = path / TRACKER_FILE
    if tracker.is_file():
        text = tracker.read_text(encoding="utf-8", errors="replace").strip()
        if not text.isdigit():
            raise ValueError(f"{tracker}: expected a step number, found {text[:40]!r}.")
        step_dir = path / f"global_step_{int(text)}"
        if not step_dir.is_dir():
            raise ValueError(f"{tracker} names step {int(text)} but {step_dir} does not exist.")
        path = step_dir
    if not _shards(path) and _shards(path / "actor"):
        path = path / "actor"
    shards = _shards(path)
    if not shards:
        raise ValueError(
            f"{path} is neither a Hugging Face model (config.json + weights) nor a verl FSDP checkpoint "
            f"(model_world_size_*_rank_*.pt, in global_step_N/ or global_step_N/actor/, or a directory with "
            f"{TRACKER_FILE}). For a Megatron checkpoint run `python -m verl.model_merger merge --backend megatron "
            "--local_dir <dir> --target_dir <hf_dir>` and pass <hf_dir>."
        )
    world_sizes = {int(_SHARD.match(p.name).group(1)) for p in shards}
    if len(world_sizes) != 1 or len(shards) != world_sizes.pop():
        raise ValueError(f"{path}: incomplete or mixed FSDP shards ({[p.name for p in shards][:8]}).")
    if not (path / "huggingface" / "config.json").is_file():
        raise ValueError(f"{path}/huggingface/config.json is missing: verl saves it with every checkpoint.")
    return path


def _stamp(ckpt: Path) -> dict:
    return {
        "checkpoint": str(ckpt.resolve()),
        "shards": {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in _shards(ckpt)},
    }


def merge_fsdp_checkpoint(ckpt: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Merge the FSDP checkpoint ``ckpt`` into a Hugging Face model at ``target`` with verl's model merger.

    Reused when ``target`` already holds a merge of the same shards (same names, sizes and times).
    The merge is written to a temporary sibling and renamed into place.
    """
    from verl.model_merger.base_model_merger import ModelMergerConfig
    from verl.model_merger.fsdp_model_merger import FSDPModelMerger

    ckpt, target = checkpoint_dir(ckpt), Path(target)
    stamp = _stamp(ckpt)
    try:
        if is_hf_model(target) and json.loads((target / _MERGE_STAMP).read_text()) == stamp:
            return target
    except (OSError, ValueError):
        pass
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        config = ModelMergerConfig(
            operation="merge",
            backend="fsdp",
            local_dir=str(ckpt),
            target_dir=str(tmp),
            hf_model_config_path=str(ckpt / "huggingface"),
        )
        merger = FSDPModelMerger(config)
        merger.merge_and_save()
        merger.cleanup()
        (tmp / _MERGE_STAMP).write_text(json.dumps(stamp, sort_keys=True))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def model_source(model: str) -> str:
    """What ``--model`` names, without merging anything: ``model`` itself for a Hugging Face
    directory or hub id, else its FSDP checkpoint directory (which includes the step), so that
    ``run.json`` pins the checkpoint that was evaluated.

    Raises:
        ValueError: an existing local path that is neither (see :func:`checkpoint_dir`).
    """
    path = Path(model).expanduser()
    if not path.exists() or is_hf_model(path):
        return model
    return str(checkpoint_dir(path))


def resolve_model(model: str, merge_dir: str | os.PathLike) -> str:
    """The Hugging Face model to load for ``--model``.

    Args:
        model: a Hugging Face model directory or hub id, or a verl checkpoint (see :func:`checkpoint_dir`).
        merge_dir: where FSDP shards are merged when the checkpoint holds no full model.

    Returns:
        ``model`` itself (HF directory or a name that is no local path), the checkpoint's
        ``huggingface/`` directory when it holds weights, or ``merge_dir`` after merging.
    """
    ckpt = Path(model_source(model)).expanduser()
    if not ckpt.exists() or is_hf_model(ckpt):
        return model
    if is_hf_model(ckpt / "huggingface"):
        return str(ckpt / "huggingface")
    return str(merge_fsdp_checkpoint(ckpt, merge_dir))
