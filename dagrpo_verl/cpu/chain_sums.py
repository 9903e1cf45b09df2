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
"""Chain sums: a CPU task where the judge sees what the binary reward misses (rectification on its own).

Problem: ``a + b + c = ? Put the final answer in \\boxed{}.`` with a, b, c in ``0..max_operand``.
Expert (reference) solution, two steps and the answer::

    a + b = s1. s1 + c = s2. \\boxed{s2}

* **Reward** R (binary, as the paper's): 1 iff the last ``\\boxed{}`` equals a + b + c
  (math-verify with ``require_boxed``, graded in the bounded grading processes of
  :mod:`dagrpo_verl.grading.pool`, as :mod:`dagrpo_verl.reward` grades).
* **Judge** S in [1, 10] (:func:`step_judge_score`): a rule judge that checks the work against the
  reference, standing in for the paper's LLM judge (final answer, validity and completeness of
  the reasoning)::

      S = 1 + 4·R + 5·(share of the reference's steps "p + q = r" the response states exactly)

  A correct solution scores 10, a lucky guess (right box, wrong or missing steps) 5, a near miss
  (both steps right, wrong box) 6, a response with nothing right 1. So with δ = 3 the masks of
  eq. 8-9 drop exactly the pairs the binary reward cannot tell apart: lucky guesses next to near
  misses. It cannot judge anything else (other correct ways to the answer score as wrong work).
* **Held out**: the (a, b, c) combinations of ``val.parquet`` never occur in ``train.parquet``.
* **Start model** (:func:`warm_start`): the embedded tiny Qwen2 after a short supervised pass on
  the worked solutions of the training problems (about 30 s on 2 cores), so on-policy groups are
  mixed (right and wrong rollouts) from the first RL step.

Reward function for verl: ``reward.custom_reward_function.path=pkg://dagrpo_verl.cpu.chain_sums``,
``name=compute_score``; it returns ``{"score": R, "acc": R, "judge_score": S, "work": share,
"grade_timeout": T, "grade_error": E, "reward_error": X}`` for every sample (``work`` shows up in verl's
validation metrics as the held-out share of correct steps; T, E, X are the fault keys of
:mod:`dagrpo_verl.reward`, logged and budgeted by the trainer hooks the same way).

Bounded on hostile input (anything a policy writes or a data row holds):

* R: math-verify runs in a grading process under ``reward_kwargs.grading.timeout_s`` (default 10 s)
  and an address-space limit; a timeout or a failed grade scores 0 and sets T or E.
* S: the step checker reads the first :data:`MAX_JUDGED_CHARS` characters with one regular expression
  without nested quantifiers (digit runs of at most 9, then ``\\s*``): every start position is tried
  in time linear in the rest of the text, so one response costs at most O(MAX_JUDGED_CHARS²) character
  steps (about 4·10⁶, milliseconds) and O(MAX_JUDGED_CHARS) memory; it runs in the calling thread.
* A row it cannot read (no reference solution, a reference without steps, a null ground truth) does not
  raise out of the reward function: R = 0, S = NaN (a missing judge score, handled by
  ``algorithm.dagrpo.on_missing_score``), ``work`` = 0 and X = 1, recorded with
  :mod:`dagrpo_verl.reward`'s error log so the trainer's ``reward.custom_reward_function.reward_kwargs``
  error budget (``max_error_frac``) and its messages apply. A setting it does not take raises at once
  (a configuration error, not input).
"""

from __future__ import annotations

import json
import math
import random
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagrpo_verl.fields import ACC, ANCHOR_TEXT, GRADE_ERROR, GRADE_TIMEOUT, JUDGE_SCORE, QUESTION, REWARD_ERROR
from dagrpo_verl.grading import ground_truth_text
from dagrpo_verl.grading.pool import GradeStatus, get_grading_pool, grading_config_from, utf8_safe

__all__ = [
    "DATA_SOURCE",
    "compute_score",
    "reference_solution",
    "step_judge_score",
    "stated_steps",
    "warm_start",
    "write_chain_task",
]

DATA_SOURCE = "dagrpo/chain_sums"
INSTRUCTION = "Put the final answer in \\boxed{}."

#: Characters of a response the step checker reads (the work comes first; a policy can write anything).
MAX_JUDGED_CHARS = 2000
#: One addition "p + q = r"; numbers are whole digit runs (so "11 + 2 = 3" does not state "1 + 2 = 3").
_STEP = re.compile(r"(?<!\d)(\d{1,9})\s*\+\s*(\d{1,9})\s*=\s*(\d{1,9})(?!\d)")


def reference_solution(a: int, b: int, c: int) -> str:
    """The expert solution: ``a + b = s1. s1 + c = s2. \\boxed{s2}``."""
    return f"{a} + {b} = {a + b}. {a + b} + {c} = {a + b + c}. \\boxed{{{a + b + c}}}"


def stated_steps(text: str) -> set[tuple[int, int, int]]:
    """The additions ``p + q = r`` stated in the first :data:`MAX_JUDGED_CHARS` characters of ``text``."""
    return {(int(p), int(q), int(r)) for p, q, r in _STEP.findall(text[:MAX_JUDGED_CHARS])}


def step_judge_score(response: str, reference: str, correct: bool) -> tuple[float, float]:
    """``(S, work)``: the judge score ``1 + 4·correct + 5·work`` and ``work``, the share of the
    reference's steps that the response states exactly (both operands and the result)."""
    wanted = stated_steps(reference)
    if not wanted:
        raise ValueError(f"the reference {reference[:80]!r} states no step 'p + q = r'; it is not a chain-sums row.")
    work = len(wanted & stated_steps(response)) / len(wanted)
    return 1.0 + 4.0 * float(correct) + 5.0 * work, work


async def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    grading: Any = None,
    reward_router_address: str | None = None,
    reward_model_tokenizer: Any = None,
    **unknown: Any,
) -> dict[str, float]:
    """verl reward function (awaited once per sample, as :func:`dagrpo_verl.reward.compute_score`):
    ``{"score": R, "acc": R, "judge_score": S, "work": share, "grade_timeout": T, "grade_error": E,
    "reward_error": X}`` (module docstring). Never raises for a response or a data row.

    The reference is the row's ``extra_info["anchor"]`` (the expert solution, as for the project's
    LLM judge). The judge is the step checker; it takes no settings, so any other
    ``reward.custom_reward_function.reward_kwargs`` (such as the trainer config's ``judge`` block)
    is refused rather than silently ignored. ``grading`` is the grading bound
    (``reward_kwargs.grading``, :class:`~dagrpo_verl.grading.pool.GradingConfig`). verl's reward-model
    arguments are unused.
    """
    del reward_router_address, reward_model_tokenizer
    if unknown:
        raise ValueError(
            "pkg://dagrpo_verl.cpu.chain_sums:compute_score takes no reward_kwargs other than grading, got "
            f"{sorted(unknown)}; its judge is the fixed step checker. Drop them: "
            "~reward.custom_reward_function.reward_kwargs."
        )
    grading_config = grading_config_from(grading)
    try:
        reference = extra_info.get(ANCHOR_TEXT) if isinstance(extra_info, Mapping) else None
        if not isinstance(reference, str):
            raise ValueError(f"extra_info[{ANCHOR_TEXT!r}] must hold the reference solution of a chain-sums row.")
        answer = ground_truth_text(ground_truth, f"reward_model.ground_truth (data_source={data_source!r})")
        solution_str = utf8_safe(solution_str)
        graded = await get_grading_pool(grading_config).agrade(solution_str, answer, DATA_SOURCE, True)
        score, work = step_judge_score(solution_str, reference, graded.correct)
    except Exception as error:  # a data row or a bug: counted (reward_error), never out of the reward function
        from dagrpo_verl.reward import record_sample_error  # the log the trainer's error budget reads

        record_sample_error(error, data_source, extra_info)
        return _result(0.0, math.nan, 0.0, reward_error=1.0)
    return _result(
        float(graded.correct),
        score,
        work,
        grade_timeout=float(graded.status is GradeStatus.TIMEOUT),
        grade_error=float(graded.status is GradeStatus.ERROR),
    )


def _result(
    acc: float,
    judge_score: float,
    work: float,
    *,
    grade_timeout: float = 0.0,
    grade_error: float = 0.0,
    reward_error: float = 0.0,
) -> dict[str, float]:
    """The reward dict: the same keys for every sample (verl requires it)."""
    return {
        "score": acc,
        ACC: acc,
        JUDGE_SCORE: judge_score,
        "work": work,
        GRADE_TIMEOUT: grade_timeout,
        GRADE_ERROR: grade_error,
        REWARD_ERROR: reward_error,
    }


def _combinations(max_operand: int) -> list[tuple[int, int, int]]:
    r = range(max_operand + 1)
    return [(a, b, c) for a in r for b in r for c in r]


def split_combinations(max_operand: int, val_frac: float, seed: int) -> tuple[list, list]:
    """``(train, val)``: all (a, b, c) combinations, shuffled with ``seed``, the first ``val_frac`` held out."""
    combos = _combinations(max_operand)
    random.Random(seed).shuffle(combos)
    n_val = max(1, round(len(combos) * val_frac))
    return combos[n_val:], combos[:n_val]


def _row(a: int, b: int, c: int, index: int, split: str) -> dict:
    question = f"{a} + {b} + {c} = ? {INSTRUCTION}"
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": question}],
        "ability": "math",
        "reward_model": {"ground_truth": str(a + b + c), "style": "rule"},
        "extra_info": {"index": index, "split": split, ANCHOR_TEXT: reference_solution(a, b, c), QUESTION: question},
    }


def write_chain_task(
    out_dir: str | Path, *, max_operand: int = 4, val_frac: float = 0.2, seed: int = 0
) -> tuple[Path, Path]:
    """Write ``train.parquet`` and ``val.parquet`` (held-out combinations) under ``out_dir``."""
    import pandas as pd

    if max_operand < 1:
        raise ValueError(f"max_operand must be >= 1, got {max_operand}.")
    if not 0.0 < val_frac < 1.0:
        raise ValueError(f"val_frac must be in (0, 1), got {val_frac}.")
    train, val = split_combinations(max_operand, val_frac, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, combos in (("train", train), ("val", val)):
        path = out / f"{split}.parquet"
        pd.DataFrame([_row(*abc, i, split) for i, abc in enumerate(combos)]).to_parquet(path)
        paths.append(path)
    return paths[0], paths[1]


def warm_start(
    base_model: str | Path,
    out_dir: str | Path,
    train_file: str | Path,
    *,
    steps: int = 300,
    lr: float = 3e-3,
    batch_size: int = 16,
    seed: int = 0,
) -> Path:
    """Supervised pass on the worked solutions of ``train_file``: the start model of the RL runs.

    Cross-entropy on the response tokens (solution + eos) after the chat-templated prompt, AdamW,
    ``steps`` batches of ``batch_size`` problems drawn with ``seed``. Idempotent: a directory built
    with the same settings and inputs is reused. Returns ``out_dir``.
    """
    import pandas as pd
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out_dir).resolve()
    base_model, train_file = Path(base_model).resolve(), Path(train_file).resolve()
    stamp = {
        "kind": "chain_sums_warm_start",
        "base_model": str(base_model),
        "base_stamp": (base_model / "dagrpo_model.json").read_text()
        if (base_model / "dagrpo_model.json").is_file()
        else "",
        "train_file_bytes": train_file.stat().st_size,
        "steps": steps,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
    }
    stamp_file = out / "warm_start.json"
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return out

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    rows = pd.read_parquet(train_file).to_dict(orient="records")
    examples = []
    for row in rows:
        prompt = list(
            tokenizer.apply_chat_template(
                [dict(m) for m in row["prompt"]], add_generation_prompt=True, tokenize=True, return_dict=False
            )
        )
        response = list(tokenizer.encode(row["extra_info"][ANCHOR_TEXT], add_special_tokens=False))
        examples.append((prompt, response + [int(tokenizer.eos_token_id)]))

    torch.manual_seed(seed)
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        batch = [examples[rng.randrange(len(examples))] for _ in range(batch_size)]
        length = max(len(p) + len(r) for p, r in batch)
        input_ids = torch.full((batch_size, length), int(tokenizer.pad_token_id), dtype=torch.long)
        labels = torch.full((batch_size, length), -100, dtype=torch.long)
        attention = torch.zeros((batch_size, length), dtype=torch.long)
        for i, (p, r) in enumerate(batch):
            input_ids[i, : len(p) + len(r)] = torch.tensor(p + r)
            labels[i, len(p) : len(p) + len(r)] = torch.tensor(r)
            attention[i, : len(p) + len(r)] = 1
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "warm_start.json").write_text(json.dumps(stamp))
    tmp.chmod(0o755)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out
