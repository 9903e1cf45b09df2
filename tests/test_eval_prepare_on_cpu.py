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
"""Benchmark prepare-scripts: the converters rebuild the public evaluation parquets from source records.

The records are reconstructed from ``../shared/data/benchmarks/`` (which was made from the public
sources), converted again, and compared with the shared rows field by field.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from dagrpo_verl.data.benchmarks import (
    CHOICE_TEMPLATE,
    FILES,
    SOURCES,
    build_files,
    convert_arc,
    convert_gpqa,
    convert_mmlu_pro,
    format_options,
    main,
)
from dagrpo_verl.eval.data import problems_from_frame
from dagrpo_verl.grading import grade

BENCH_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmarks"
needs_shared = pytest.mark.skipif(not BENCH_DIR.is_dir(), reason="../shared/data/benchmarks not present")

#: data_source in the shared file -> (source key, question field, answer field) of the public record.
MATH_FIELDS = {
    "math": ("math500", "problem", "answer"),
    "olympiad_bench": ("olympiad", "question", "final_answer"),
    "minerva": ("minerva", "question", "answer"),
    "aime": ("aime24", "problem", "answer"),
    "amc": ("amc", "problem", "answer"),
    "aime25": ("aime25", "problem", "answer"),
}


def _plain(frame: pd.DataFrame) -> list[dict]:
    return [
        {
            "data_source": r.data_source,
            "prompt": [dict(m) for m in r.prompt],
            "ability": r.ability,
            "reward_model": dict(r.reward_model),
            "extra_info": {k: r.extra_info[k] for k in ("index", "split")},
        }
        for r in frame.itertuples()
    ]


@needs_shared
def test_valid_all_is_rebuilt_exactly():
    shared = pd.read_parquet(BENCH_DIR / "valid.all.parquet")
    records: dict[str, list[dict]] = {}
    for data_source, (key, q_field, a_field) in MATH_FIELDS.items():
        seen = set()
        for r in shared[shared.data_source == data_source].itertuples():
            question, answer = r.prompt[-1]["content"], r.reward_model["ground_truth"]
            if (question, answer) in seen:
                continue
            seen.add((question, answer))
            if key == "amc":
                answer = float(answer)  # AI-MO/aimo-validation-amc stores floats
            elif key == "olympiad":
                answer = [answer]  # OlympiadBench's final_answer is a list
            records.setdefault(key, []).append({q_field: question, a_field: answer})
    rebuilt = build_files(records)["valid.all.parquet"]
    assert _plain(rebuilt) == _plain(shared)


def _parse_arc(content: str) -> dict:
    question, _, block = content.rpartition("\n\n")
    options = re.findall(r"^([A-E1-5])\) (.*)$", block, flags=re.MULTILINE)
    return {"question": question, "choices": {"label": [o[0] for o in options], "text": [o[1] for o in options]}}


@needs_shared
def test_arc_is_rebuilt_exactly():
    shared = pd.read_parquet(BENCH_DIR / "valid.arc_c.parquet")
    records = [
        {**_parse_arc(r.prompt[-1]["content"]), "answerKey": r.reward_model["ground_truth"]}
        for r in shared.itertuples()
    ]
    assert _plain(pd.DataFrame(convert_arc(records))) == _plain(shared)


@needs_shared
def test_gpqa_layout_and_shuffle():
    """GPQA's option order is a per-question shuffle: the prompt text must follow the shared template, and the
    ground-truth letter must point at the correct answer."""
    shared = pd.read_parquet(BENCH_DIR / "valid.gpqa.parquet")
    prefix = CHOICE_TEMPLATE.split("{question}")[0].format(letters="ABCD")
    records = []
    for r in shared.itertuples():
        content = r.prompt[-1]["content"]
        assert content.startswith(prefix)
        question, _, block = content[len(prefix) :].rpartition("\n\nA) ")
        options = re.split(r"\n(?=[B-D]\) )", "A) " + block)
        texts = [o[3:] for o in options]
        assert (
            CHOICE_TEMPLATE.format(letters="ABCD", question=question, options=format_options("ABCD", texts)) == content
        )
        correct = "ABCD".index(r.reward_model["ground_truth"])
        wrong = [t for i, t in enumerate(texts) if i != correct]
        records.append(
            {
                "Question": question,
                "Correct Answer": texts[correct],
                **{f"Incorrect Answer {j + 1}": w for j, w in enumerate(wrong)},
            }
        )
    rebuilt = convert_gpqa(records)
    letters = [row["reward_model"]["ground_truth"] for row in rebuilt]
    assert len(set(letters)) == 4  # shuffled, not always "A"
    for row, record, shared_row in zip(rebuilt, records, shared.itertuples(), strict=True):
        content = row["prompt"][-1]["content"]
        question, _, block = content[len(prefix) :].rpartition("\n\nA) ")
        texts = [o[3:] for o in re.split(r"\n(?=[B-D]\) )", "A) " + block)]
        assert question == record["Question"]
        assert sorted(texts) == sorted(t for k, t in record.items() if "Answer" in k)
        assert texts["ABCD".index(row["reward_model"]["ground_truth"])] == record["Correct Answer"]
        assert row["prompt"][0] == dict(shared_row.prompt[0])


def test_mmlu_pro_ten_options_and_grading():
    records = [
        {
            "question": "Which is prime?",
            "options": ["4", "6", "8", "9", "10", "12", "14", "15", "16", "17"],
            "answer": "J",
            "answer_index": 9,
            "category": "math",
        },
        {"question": "2+2?", "options": ["3", "4", "5"], "answer": "B", "answer_index": 1, "category": "math"},
    ]
    rows = convert_mmlu_pro(records)
    content = rows[0]["prompt"][-1]["content"]
    assert "LETTER is one of ABCDEFGHIJ" in content and content.endswith("I) 16\nJ) 17")
    assert "LETTER is one of ABC." in rows[1]["prompt"][-1]["content"]
    assert [r["reward_model"]["ground_truth"] for r in rows] == ["J", "B"]
    problems = problems_from_frame(pd.DataFrame(rows))
    assert {p.benchmark.key for p in problems} == {"mmlu_pro"}
    assert grade("ANSWER: J", "J", "mmlu_pro") and not grade("ANSWER: I", "J", "mmlu_pro")
    with pytest.raises(ValueError, match="'answer'"):
        convert_mmlu_pro([{"question": "q", "options": ["a", "b"], "answer": "C"}])
    with pytest.raises(ValueError, match="'options'"):
        convert_mmlu_pro([{"question": "q", "answer": "A"}])


def test_build_files_layout_and_errors():
    files = build_files({"aime24": [{"problem": "p", "answer": "1"}], "arc_c": []}, repeat=1)
    assert set(files) == {"valid.all.parquet", "valid.arc_c.parquet"} and set(files) <= set(FILES)
    assert len(files["valid.all.parquet"]) == 1
    assert len(build_files({"aime24": [{"problem": "p", "answer": "1"}]})["valid.all.parquet"]) == 32
    with pytest.raises(ValueError, match="unknown benchmark"):
        build_files({"gsm8k": []})
    with pytest.raises(ValueError, match="'answer'"):
        build_files({"aime24": [{"problem": "p"}]})
    assert [s.key for s in SOURCES][-3:] == ["arc_c", "gpqa", "mmlu_pro"]


def test_cli_rejects_bad_repeat(capsys):
    with pytest.raises(SystemExit):
        main(["--out", "x", "--repeat", "0"])
    assert "--repeat" in capsys.readouterr().err


def test_the_prepared_sets_are_the_evaluation_suites_nine():
    """One table: every set the evaluator scores is prepared once, and a prepared row maps back to its set
    with the evaluator's samples per problem as its copies."""
    from dagrpo_verl.eval.suite import BENCHMARKS, benchmark_for

    assert sorted(s.key for s in SOURCES) == sorted(b.key for b in BENCHMARKS)
    minimal = {
        "arc_c": [{"question": "q", "choices": {"label": ["A", "B"], "text": ["x", "y"]}, "answerKey": "A"}],
        "gpqa": [{"Question": "q", "Correct Answer": "x"} | {f"Incorrect Answer {j}": f"w{j}" for j in (1, 2, 3)}],
        "mmlu_pro": [{"question": "q", "options": ["a", "b"], "answer": "A"}],
    }
    for source in SOURCES:
        records = minimal.get(source.key) or [{"problem": "p", "question": "p", "answer": "1", "final_answer": ["1"]}]
        rows = build_files({source.key: records})[source.file]
        assert {benchmark_for(d) for d in rows.data_source} == {source.benchmark}, source.key
        assert len(rows) == source.benchmark.default_k == source.repeat


def test_arc_record_with_more_labels_than_texts_is_named():
    record = {"question": "q?", "choices": {"label": ["A", "B", "C"], "text": ["x", "y"]}, "answerKey": "A"}
    with pytest.raises(ValueError, match="3 choice labels for 2 choice texts"):
        convert_arc([record])
