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
"""Prepare the paper's nine evaluation benchmarks from their public sources.

``python -m dagrpo_verl.data.benchmarks --out data/benchmarks`` downloads the
sets from the Hugging Face hub (``datasets.load_dataset``; GPQA is gated: accept
its terms on the hub and set ``HF_TOKEN``) and writes the layout of the public
LUFFY evaluation parquets, which ``python -m dagrpo_verl.eval`` reads:

* ``valid.all.parquet`` - MATH-500, OlympiadBench, Minerva, AIME24, AMC, AIME25
  (AIME/AMC rows repeated ``--repeat`` times, 32 by default, as in the public file);
* ``valid.arc_c.parquet``, ``valid.gpqa.parquet``, ``valid.mmlu_pro.parquet``.

Every row: ``data_source``, ``prompt`` (LUFFY's system prompt + the question),
``ability="math"``, ``reward_model={"ground_truth", "style": "rule"}``,
``extra_info={"index", "split": "default"}``. Multiple-choice prompts list the
options as ``A) ...`` lines (ARC-c keeps its own labels, some of which are 1-4);
GPQA and MMLU-Pro use the simple-evals template that asks for ``ANSWER: X``.

The converters (``convert_*``) take the sources' records as dicts, so they are
testable without network access.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from dagrpo_verl.eval.suite import Benchmark, benchmark_by_key

__all__ = [
    "CHOICE_TEMPLATE",
    "FILES",
    "SOURCES",
    "SYSTEM_PROMPT",
    "Source",
    "build_files",
    "convert_arc",
    "convert_gpqa",
    "convert_math",
    "convert_mmlu_pro",
    "format_options",
    "main",
    "make_row",
]

#: LUFFY's system prompt, used by every row of the public evaluation parquets.
SYSTEM_PROMPT = (
    "Your task is to follow a systematic, thorough reasoning process before providing the final solution. "
    "This involves analyzing, summarizing, exploring, reassessing, and refining your thought process through "
    "multiple iterations. Structure your response into two sections: Thought and Solution. In the Thought "
    'section, present your reasoning using the format: "<think>\n {thoughts} </think>\n". Each thought should '
    'include detailed analysis, brainstorming, verification, and refinement of ideas. After "</think>\n," in the '
    "Solution section, provide the final, logical, and accurate answer, clearly derived from the exploration in "
    "the Thought section. If applicable, include the answer in \\boxed{} for closed-form results like multiple "
    "choices or mathematical solutions."
)

#: simple-evals' multiple-choice template (GPQA, MMLU-Pro); ``{letters}`` is e.g. ``ABCD``.
CHOICE_TEMPLATE = (
    "Answer the following multiple choice question. The last line of your response should be of the following "
    "format: 'ANSWER: $LETTER' (without quotes) where LETTER is one of {letters}. Think step by step before "
    "answering.\n\n{question}\n\n{options}"
)

LETTERS = "ABCDEFGHIJ"


def _field(record: Mapping, name: str, source: str):
    if name not in record or record[name] is None:
        raise ValueError(f"{source} record has no field {name!r} (fields: {sorted(record)}); is it the right data set?")
    return record[name]


def make_row(data_source: str, question: str, ground_truth: str, index: int) -> dict:
    """One row in the evaluation layout."""
    return {
        "data_source": data_source,
        "prompt": [{"content": SYSTEM_PROMPT, "role": "system"}, {"content": question, "role": "user"}],
        "ability": "math",
        "reward_model": {"ground_truth": ground_truth, "style": "rule"},
        "extra_info": {"index": index, "split": "default"},
    }


def format_options(labels: Iterable[str], texts: Iterable[str]) -> str:
    """One ``label) text`` line per option, joined by newlines."""
    return "\n".join(f"{label}) {text}" for label, text in zip(labels, texts, strict=True))


def convert_math(records: Iterable[Mapping], data_source: str, question_field: str, answer_field: str) -> list[dict]:
    """Math sets: the question is the prompt, the answer field the ground truth.

    A list-valued answer (OlympiadBench's ``final_answer``) is joined with commas; numbers are
    written with ``str`` (AMC's ``142.0`` stays ``"142.0"``, as in the public file).
    """
    rows = []
    for i, r in enumerate(records):
        answer = _field(r, answer_field, data_source)
        if isinstance(answer, (list, tuple)):
            answer = ",".join(str(a) for a in answer)
        rows.append(make_row(data_source, str(_field(r, question_field, data_source)), str(answer), i))
    return rows


def convert_arc(records: Iterable[Mapping], data_source: str = benchmark_by_key("arc_c").data_source) -> list[dict]:
    """ARC-Challenge (``allenai/ai2_arc``): question, ``choices={text, label}``, ``answerKey``.

    The prompt is the question, a blank line and one ``label) text`` line per choice (each ending in
    a newline), keeping ARC's own labels (A-E, or 1-4 for some questions).
    """
    rows = []
    for i, r in enumerate(records):
        choices = _field(r, "choices", data_source)
        labels, texts = list(choices["label"]), list(choices["text"])
        answer = str(_field(r, "answerKey", data_source))
        if len(labels) != len(texts):
            raise ValueError(f"{data_source} record {i}: {len(labels)} choice labels for {len(texts)} choice texts.")
        if answer not in labels:
            raise ValueError(f"{data_source} record {i}: answerKey {answer!r} is not one of its labels {labels}.")
        question = f"{_field(r, 'question', data_source)}\n\n" + "".join(
            f"{label}) {text}\n" for label, text in zip(labels, texts, strict=True)
        )
        rows.append(make_row(data_source, question, answer, i))
    return rows


def _choice_question(question: str, options: list[str]) -> str:
    letters = LETTERS[: len(options)]
    return CHOICE_TEMPLATE.format(letters=letters, question=question, options=format_options(letters, options))


def convert_gpqa(
    records: Iterable[Mapping], seed: int = 0, data_source: str = benchmark_by_key("gpqa").data_source
) -> list[dict]:
    """GPQA-Diamond (``Idavidrein/gpqa``, ``gpqa_diamond``): ``Question``, ``Correct Answer``,
    ``Incorrect Answer 1..3``. Options are shuffled per question (``random.Random(seed + index)``)."""
    rows = []
    for i, r in enumerate(records):
        correct = str(_field(r, "Correct Answer", data_source))
        options = [correct] + [str(_field(r, f"Incorrect Answer {j}", data_source)) for j in (1, 2, 3)]
        random.Random(seed + i).shuffle(options)
        answer = LETTERS[options.index(correct)]
        question = _choice_question(str(_field(r, "Question", data_source)), options)
        rows.append(make_row(data_source, question, answer, i))
    return rows


def convert_mmlu_pro(
    records: Iterable[Mapping], data_source: str = benchmark_by_key("mmlu_pro").data_source
) -> list[dict]:
    """MMLU-Pro (``TIGER-Lab/MMLU-Pro``, test split): ``question``, ``options`` (up to 10), ``answer`` (A-J)."""
    rows = []
    for i, r in enumerate(records):
        options = [str(o) for o in _field(r, "options", data_source)]
        if not 2 <= len(options) <= len(LETTERS):
            raise ValueError(f"{data_source} record {i}: 'options' must hold 2-10 options, got {len(options)}.")
        answer = str(_field(r, "answer", data_source)).strip().upper()
        if answer not in LETTERS[: len(options)]:
            raise ValueError(f"{data_source} record {i}: 'answer' {answer!r} is not one of {LETTERS[: len(options)]}.")
        question = _choice_question(str(_field(r, "question", data_source)), options)
        rows.append(make_row(data_source, question, answer, i))
    return rows


@dataclass(frozen=True)
class Source:
    """Where a benchmark of :data:`dagrpo_verl.eval.suite.BENCHMARKS` comes from and how its records become rows.

    Args:
        benchmark: the evaluation suite's entry (key, ``data_source`` spelling, samples per problem).
        file: output parquet name.
        hub_id, config, split: ``datasets.load_dataset(hub_id, config, split=split)``.
        convert: records -> rows.
    """

    benchmark: Benchmark
    file: str
    hub_id: str
    config: str | None
    split: str
    convert: Callable[[list[dict]], list[dict]]

    @property
    def key(self) -> str:
        """The benchmark key (``--only``, :func:`build_files`)."""
        return self.benchmark.key

    @property
    def repeat(self) -> int:
        """Default copies of every row: the benchmark's samples per problem (avg@k layout of the public file)."""
        return self.benchmark.default_k


def _math_source(key: str, file: str, hub_id: str, config: str | None, split: str, question: str, answer: str):
    """A math set: the ``question`` field is the prompt, the ``answer`` field the ground truth."""
    benchmark = benchmark_by_key(key)

    def convert(records: list[dict]) -> list[dict]:
        return convert_math(records, benchmark.data_source, question, answer)

    return Source(benchmark, file, hub_id, config, split, convert)


#: The sources, in the row order of the public ``valid.all.parquet``.
SOURCES: tuple[Source, ...] = (
    _math_source("math500", "valid.all.parquet", "HuggingFaceH4/MATH-500", None, "test", "problem", "answer"),
    _math_source(
        "olympiad",
        "valid.all.parquet",
        "Hothan/OlympiadBench",
        "OE_TO_maths_en_COMP",
        "train",
        "question",
        "final_answer",
    ),
    _math_source("minerva", "valid.all.parquet", "math-ai/minervamath", None, "test", "question", "answer"),
    _math_source("aime24", "valid.all.parquet", "HuggingFaceH4/aime_2024", None, "train", "problem", "answer"),
    _math_source("amc", "valid.all.parquet", "AI-MO/aimo-validation-amc", None, "train", "problem", "answer"),
    _math_source("aime25", "valid.all.parquet", "math-ai/aime25", None, "test", "problem", "answer"),
    Source(benchmark_by_key("arc_c"), "valid.arc_c.parquet", "allenai/ai2_arc", "ARC-Challenge", "test", convert_arc),
    Source(benchmark_by_key("gpqa"), "valid.gpqa.parquet", "Idavidrein/gpqa", "gpqa_diamond", "train", convert_gpqa),
    Source(
        benchmark_by_key("mmlu_pro"), "valid.mmlu_pro.parquet", "TIGER-Lab/MMLU-Pro", None, "test", convert_mmlu_pro
    ),
)

FILES = tuple(dict.fromkeys(s.file for s in SOURCES))


def build_files(records: Mapping[str, list[dict]], repeat: int | None = None) -> dict[str, pd.DataFrame]:
    """Convert downloaded records (by source key) into the output files (by file name).

    Args:
        records: source key -> its records; sources not given are left out.
        repeat: copies of every AIME/AMC row (``None``: 32, the public layout; 1: one row per problem,
            which the evaluator handles the same way).
    """
    unknown = sorted(set(records) - {s.key for s in SOURCES})
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; known: {[s.key for s in SOURCES]}.")
    files: dict[str, list[dict]] = {}
    for source in SOURCES:
        if source.key not in records:
            continue
        copies = source.repeat if repeat is None else repeat
        rows = source.convert(records[source.key])
        files.setdefault(source.file, []).extend(row for row in rows for _ in range(copies))
    return {name: pd.DataFrame(rows) for name, rows in files.items()}


def _download(source: Source) -> list[dict]:
    from datasets import load_dataset

    dataset = load_dataset(source.hub_id, source.config, split=source.split)
    return [dict(r) for r in dataset]


def main(argv: list[str] | None = None) -> int:
    """Download, convert and write the benchmark parquets."""
    parser = argparse.ArgumentParser(prog="python -m dagrpo_verl.data.benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        choices=[s.key for s in SOURCES],
        metavar="KEY",
        help=f"prepare only these ({', '.join(s.key for s in SOURCES)})",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="copies of every AIME/AMC row (default 32, as the public file; 1 is enough for our evaluator)",
    )
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    sources = [s for s in SOURCES if args.only is None or s.key in args.only]
    records = {s.key: _download(s) for s in tqdm(sources, desc="download")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in build_files(records, args.repeat).items():
        frame.to_parquet(out / name, index=False)
        counts = ", ".join(f"{k}={v}" for k, v in frame.data_source.value_counts().items())
        print(f"{out / name}: {len(frame)} rows ({counts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
