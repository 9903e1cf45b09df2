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
"""Evaluator: problem loading, scoring, the paper table, and an end-to-end CPU run with resume."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dagrpo_verl.data.benchmarks import build_files
from dagrpo_verl.eval.cli import main as eval_main
from dagrpo_verl.eval.data import load_problems, problems_from_frame
from dagrpo_verl.eval.report import ID_AVG, OOD_AVG, score, table_frame, to_markdown
from dagrpo_verl.eval.runner import SAMPLES_FILE, SampleRecord, read_samples
from dagrpo_verl.eval.suite import BENCHMARKS, parse_samples

BENCH_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmarks"


def _math(question_field, answer_field, items):
    return [{question_field: q, answer_field: a} for q, a in items]


#: Two problems per benchmark, in the public sources' record layouts.
RECORDS = {
    "math500": _math("problem", "answer", [("What is $1+1$?", "2"), ("Simplify $\\frac{2}{4}$.", "\\frac{1}{2}")]),
    "olympiad": _math(
        "question", "final_answer", [("Find $x$ with $x^2=9$, $x>0$.", ["$3$"]), ("Compute $2^5$.", ["$32$"])]
    ),
    "minerva": _math("question", "answer", [("What is $3 \\times 4$?", "12"), ("What is $10/4$?", "2.5")]),
    "aime24": _math("problem", "answer", [("Find $7 \\cdot 11 \\cdot 13$.", "1001"), ("Find $100-1$.", "99")]),
    "amc": _math("problem", "answer", [("What is $6 \\cdot 7$?", 42.0), ("What is $2+3$?", 5.0)]),
    "aime25": _math("problem", "answer", [("Find $9^2$.", "81"), ("Find $5!$.", "120")]),
    "arc_c": [
        {
            "question": "Which is a liquid at room temperature?",
            "answerKey": "B",
            "choices": {"text": ["iron", "water", "salt", "sand"], "label": ["A", "B", "C", "D"]},
        },
        {
            "question": "What do plants need for photosynthesis?",
            "answerKey": "3",
            "choices": {"text": ["rocks", "plastic", "sunlight", "metal"], "label": ["1", "2", "3", "4"]},
        },
    ],
    "gpqa": [
        {
            "Question": "Which particle has negative charge?",
            "Correct Answer": "electron",
            "Incorrect Answer 1": "proton",
            "Incorrect Answer 2": "neutron",
            "Incorrect Answer 3": "photon",
        },
        {
            "Question": "What is the chemical symbol of sodium?",
            "Correct Answer": "Na",
            "Incorrect Answer 1": "So",
            "Incorrect Answer 2": "S",
            "Incorrect Answer 3": "Sd",
        },
    ],
    "mmlu_pro": [
        {"question": "What is 2+2?", "options": ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"], "answer": "D"},
        {"question": "Capital of France?", "options": ["Rome", "Paris", "Berlin"], "answer": "B"},
    ],
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    for name, frame in build_files(RECORDS).items():
        frame.to_parquet(out / name, index=False)
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from dagrpo_verl.cpu.models import build_tiny_qwen2

    return build_tiny_qwen2(tmp_path_factory.mktemp("models") / "tiny")


def test_repeated_rows_become_one_problem(data_dir):
    problems = load_problems(sorted(data_dir.glob("*.parquet")))
    assert len(problems) == 2 * len(BENCHMARKS)
    by_key = {}
    for p in problems:
        by_key.setdefault(p.benchmark.key, []).append(p)
    assert set(by_key) == {b.key for b in BENCHMARKS}
    assert [p.repeats for p in by_key["aime24"]] == [32, 32]
    assert [p.repeats for p in by_key["math500"]] == [1, 1]
    assert len({p.uid for p in problems}) == len(problems)


@pytest.mark.skipif(not BENCH_DIR.is_dir(), reason="../shared/data/benchmarks not present")
def test_shared_data_groups_into_problems():
    problems = load_problems([BENCH_DIR / "valid.all.parquet"])
    counts = pd.Series([p.benchmark.key for p in problems]).value_counts().to_dict()
    rows = sum(p.repeats for p in problems)
    assert rows == len(pd.read_parquet(BENCH_DIR / "valid.all.parquet"))
    assert counts["aime24"] == 30 and counts["aime25"] == 30 and counts["math500"] == 500
    assert {p.repeats for p in problems if p.benchmark.key in ("aime24", "aime25", "amc")} == {32}


@pytest.mark.parametrize(
    "frame, message",
    [
        (pd.DataFrame({"data_source": ["math"], "prompt": [[{"role": "user", "content": "q"}]]}), "reward_model"),
        (
            pd.DataFrame(
                {"data_source": ["math"], "prompt": [[{"content": "q"}]], "reward_model": [{"ground_truth": "1"}]}
            ),
            "role",
        ),
        (
            pd.DataFrame(
                {"data_source": ["math"], "prompt": [[{"role": "user", "content": "q"}]], "reward_model": [{}]}
            ),
            "ground_truth",
        ),
        (
            pd.DataFrame(
                {
                    "data_source": ["gsm8k"],
                    "prompt": [[{"role": "user", "content": "q"}]],
                    "reward_model": [{"ground_truth": "1"}],
                }
            ),
            "data_source",
        ),
    ],
)
def test_bad_rows_name_the_field(frame, message):
    with pytest.raises(ValueError, match=message):
        problems_from_frame(frame, "bad.parquet")


def test_parse_samples():
    samples = parse_samples([])
    assert samples["aime24"] == samples["aime25"] == samples["amc"] == 32 and samples["gpqa"] == 1
    samples = parse_samples(["all=2", "aime24=4"])
    assert samples["aime24"] == 4 and samples["mmlu_pro"] == 2
    for bad in (["aime=4"], ["aime24"], ["aime24=0"], ["aime24=x"]):
        with pytest.raises(ValueError, match="--samples"):
            parse_samples(bad)


def _record(benchmark, uid, sample, correct):
    return SampleRecord(uid, benchmark, benchmark, sample, "r", 10 + sample, False, correct, "1")


def test_score_avg_at_k_and_table():
    records = [_record("aime24", "p1", i, c) for i, c in enumerate([True, False, True, True, False])]
    records += [_record("aime24", "p2", i, c) for i, c in enumerate([False, False, False, False])]
    records += [_record("gpqa", "q1", 0, True), _record("gpqa", "q2", 0, False), _record("gpqa", "q3", 0, True)]
    scores = score(records, {"aime24": 4, "gpqa": 1})
    assert scores["aime24"].k == 4 and scores["aime24"].problems == 2
    assert scores["aime24"].accuracy == pytest.approx(100 * (3 / 4 + 0) / 2)  # sample 4 is beyond k
    assert scores["gpqa"].accuracy == pytest.approx(100 * 2 / 3)
    frame = table_frame({"m": scores})
    assert list(frame.columns) == [
        "AIME24",
        "AIME25",
        "AMC",
        "MATH-500",
        "Minerva",
        "Olympiad",
        ID_AVG,
        "ARC-c",
        "GPQA*",
        "MMLU-Pro",
        OOD_AVG,
    ]
    assert frame.loc["m", ID_AVG] == pytest.approx(37.5) and frame.loc["m", OOD_AVG] == pytest.approx(200 / 3)
    markdown = to_markdown(frame, {"m": scores})
    assert "| m | 37.5 | - |" in markdown and "avg@4 over 2" in markdown and "pass@1 over 3" in markdown
    assert "covers 1 of the 6" in markdown


def _run(model, data_dir, out, *extra):
    return eval_main(
        [
            "--model",
            str(model),
            "--out",
            str(out),
            "--data-dir",
            str(data_dir),
            "--max-new-tokens",
            "4",
            "--no-progress",
            *extra,
        ]
    )


def test_end_to_end_cpu_resume_and_regrade(tiny_model, data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(tiny_model, data_dir, out, "--samples", "all=1", "aime24=2") == 0
    printed = capsys.readouterr().out
    first = read_samples(out)
    assert len(first) == 2 * len(BENCHMARKS) + 2  # aime24: 2 problems x 2 samples
    table = pd.read_csv(out / "table.csv", index_col=0)
    assert table.notna().all(axis=None) and (table.to_numpy() >= 0).all() and (table.to_numpy() <= 100).all()
    assert (out / "table.md").read_text() in printed
    assert set(pd.read_csv(out / "scores.csv").benchmark) == {b.key for b in BENCHMARKS}

    # Interrupted run: a torn last line is skipped; raising k only adds the missing samples.
    with (out / SAMPLES_FILE).open("a") as f:
        f.write('{"uid": "torn')
    assert _run(tiny_model, data_dir, out, "--samples", "all=1", "aime24=3") == 0
    second = read_samples(out)
    assert len(second) == len(first) + 2
    assert [r.response for r in second[: len(first)]] == [r.response for r in first]
    assert sorted(r.sample for r in second if r.benchmark == "aime24") == [0, 0, 1, 1, 2, 2]
    assert "0 new samples" not in capsys.readouterr().out

    # Nothing missing: no generation at all.
    assert _run(tiny_model, data_dir, out, "--samples", "all=1", "aime24=3") == 0
    assert "0 new samples" in capsys.readouterr().out

    # Regrade with reference answers written into the cache: the grader gives 100 everywhere.
    records = [json.loads(line) for line in (out / SAMPLES_FILE).read_text().splitlines() if line.endswith("}")]
    for r in records:
        r["response"] = (
            f"ANSWER: {r['ground_truth']}"
            if r["benchmark"] in ("arc_c", "gpqa", "mmlu_pro")
            else (f"\\boxed{{{r['ground_truth']}}}")
        )
    (out / SAMPLES_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    assert _run(tiny_model, data_dir, out, "--samples", "all=1", "aime24=3", "--regrade") == 0
    assert (pd.read_csv(out / "table.csv", index_col=0).to_numpy() == 100).all()


def test_resume_refuses_other_settings(tiny_model, data_dir, tmp_path):
    out = tmp_path / "run"
    assert _run(tiny_model, data_dir, out, "--samples", "all=1", "--benchmarks", "gpqa") == 0
    with pytest.raises(ValueError, match="temperature"):
        _run(tiny_model, data_dir, out, "--samples", "all=1", "--benchmarks", "gpqa", "--temperature", "1.0")


def test_limit_and_missing_data(tiny_model, data_dir, tmp_path):
    out = tmp_path / "run"
    assert (
        _run(tiny_model, data_dir, out, "--samples", "all=1", "--limit", "1", "--benchmarks", "math500", "arc_c") == 0
    )
    assert sorted(r.benchmark for r in read_samples(out)) == ["arc_c", "math500"]
    with pytest.raises(SystemExit, match="dagrpo_verl.data.benchmarks"):
        _run(tiny_model, tmp_path / "empty", tmp_path / "run2")


def test_table_combines_runs(tiny_model, data_dir, tmp_path, capsys):
    from dagrpo_verl.eval.table import main as table_main

    for name in ("grpo", "dagrpo"):
        assert (
            _run(
                tiny_model,
                data_dir,
                tmp_path / name,
                "--samples",
                "all=1",
                "--benchmarks",
                "gpqa",
                "mmlu_pro",
                "--name",
                name,
            )
            == 0
        )
    capsys.readouterr()
    assert table_main([str(tmp_path / "grpo"), str(tmp_path / "dagrpo"), "--csv", str(tmp_path / "t.csv")]) == 0
    table = pd.read_csv(tmp_path / "t.csv", index_col=0)
    assert list(table.index) == ["grpo", "dagrpo"]
    assert table["GPQA*"].notna().all() and table["AIME24"].isna().all()
    assert "| grpo |" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="scores.csv"):
        table_main([str(tmp_path / "nothing")])


def test_cli_argument_errors(capsys, tmp_path):
    for bad in (["--samples", "aime=4"], ["--limit", "0"]):
        with pytest.raises(SystemExit):
            eval_main(["--model", "m", "--out", str(tmp_path / "o"), *bad])
        assert bad[0] in capsys.readouterr().err
