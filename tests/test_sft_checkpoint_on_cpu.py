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
"""How ``python -m dagrpo_verl.eval --model`` finds the model in a verl checkpoint directory, and the
errors it gives for directories that are not one. Directory layouts only (file names as verl 0.9.1
writes them); merging real shards is ``tests/test_sft_smoke_on_cpu.py``."""

from __future__ import annotations

import pytest

from dagrpo_verl.eval import cli
from dagrpo_verl.eval.checkpoint import TRACKER_FILE, checkpoint_dir, model_source, resolve_model


def _checkpoint(path, world_size=1, hf_weights=False):
    path.mkdir(parents=True)
    for rank in range(world_size):
        (path / f"model_world_size_{world_size}_rank_{rank}.pt").write_bytes(b"")
    (path / "huggingface").mkdir()
    (path / "huggingface" / "config.json").write_text("{}")
    if hf_weights:
        (path / "huggingface" / "model.safetensors").write_bytes(b"")
    return path


def test_layouts_of_the_sft_and_ppo_trainers(tmp_path):
    sft = _checkpoint(tmp_path / "sft" / "global_step_7", hf_weights=True)
    (tmp_path / "sft" / TRACKER_FILE).write_text("7\n")
    assert checkpoint_dir(tmp_path / "sft") == sft == checkpoint_dir(sft)
    assert resolve_model(str(tmp_path / "sft"), tmp_path / "m") == str(sft / "huggingface")
    assert model_source(str(tmp_path / "sft")) == str(sft)  # run.json pins the step, not the root

    actor = _checkpoint(tmp_path / "ppo" / "global_step_3" / "actor", world_size=2)
    assert checkpoint_dir(actor.parent) == actor
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    (hf / "model.safetensors").write_bytes(b"")
    assert resolve_model(str(hf), tmp_path / "m") == str(hf) == model_source(str(hf))
    assert resolve_model("Qwen/Qwen2.5-Math-7B", tmp_path / "m") == "Qwen/Qwen2.5-Math-7B"  # hub id


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d.mkdir(), "neither a Hugging Face model"),
        (lambda d: (d.mkdir(), (d / TRACKER_FILE).write_text("latest")), "expected a step number"),
        (lambda d: (d.mkdir(), (d / TRACKER_FILE).write_text("5")), "names step 5 but"),
        (lambda d: (_checkpoint(d, world_size=2), (d / "model_world_size_2_rank_1.pt").unlink()), "incomplete"),
        (lambda d: (_checkpoint(d), (d / "huggingface" / "config.json").unlink()), "huggingface/config.json"),
    ],
)
def test_what_is_not_a_checkpoint_is_named(tmp_path, make, message, capsys):
    make(tmp_path / "ckpt")
    with pytest.raises(ValueError, match=message):
        checkpoint_dir(tmp_path / "ckpt")
    with pytest.raises(SystemExit):  # the evaluator stops before loading anything
        cli.main(["--model", str(tmp_path / "ckpt"), "--out", str(tmp_path / "out"), "--data", str(tmp_path / "x")])
