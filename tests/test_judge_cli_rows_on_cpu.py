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
"""``python -m dagrpo_verl.judge`` on hostile files (issue 11, item 4): a null response or
reference gets a missing score without a judge call, the output is strict JSON (null, never
NaN), and one bad row never loses the other rows.

The judge LLM is stood in for by ``LocalJudgeServer`` (real HTTP on 127.0.0.1; it gives 7 to
everything, so a null score can only come from the row itself).
"""

import json
import math

import pandas as pd
import pytest

from dagrpo_verl.judge.__main__ import main
from dagrpo_verl.judge.testing import LocalJudgeServer, fixed_score

GOOD = {"question": "6 * 7?", "response": "\\boxed{42}", "reference": "\\boxed{42}"}


def strict_json(line: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(line, parse_constant=refuse)


def run(tmp_path, source, output_name="scored.jsonl", extra=()):
    target = tmp_path / output_name
    with LocalJudgeServer(fixed_score(7)) as server:
        code = main(
            [
                "--input",
                str(source),
                "--output",
                str(target),
                "--backend",
                "openai",
                "--base-url",
                server.url,
                "--model",
                "stand-in",
                "--no-progress",
                *extra,
            ]
        )
    return code, target, server


def test_bad_rows_get_null_scores_and_reasons_and_never_cost_the_others(tmp_path, capsys):
    lines = [
        json.dumps({**GOOD, "id": 1}),
        json.dumps({**GOOD, "response": None, "id": 2}),
        json.dumps({**GOOD, "reference": None, "id": 3}),
        json.dumps({"response": "x", "reference": "y", "id": 4}),  # no question field
        "null",
        "[1, 2]",
        "{not json",
        '{"a": ' * 5000 + "1" + "}" * 5000,  # nested beyond the recursion limit
        json.dumps({**GOOD, "response": ["a", "list"], "id": 9}),
        json.dumps({**GOOD, "response": True, "id": 10}),
        '{"question": "q", "response": "r \\ud800 lone", "reference": "ref", "id": 11, "extra": NaN, '
        '"big": 1e400, "neg": -Infinity}',
        "",  # blank lines are not rows
        json.dumps({**GOOD, "reference": 42, "id": 12}),  # a numeric reference is its decimal text
        b"\xff\xfe not utf-8".decode("latin-1"),
        json.dumps({**GOOD, "response": "It is \\boxed{42}", "id": 14}),
    ]
    source = tmp_path / "items.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, target, server = run(tmp_path, source)
    assert code == 0
    out = [strict_json(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert len(out) == len(lines) - 1  # one output row per input row, in order
    scores = [row["judge_score"] for row in out]
    assert scores == [7.0, None, None, None, None, None, None, None, None, None, 7.0, 7.0, None, 7.0]
    assert server.count == 4  # rows without usable texts were never sent
    errors = [row["judge_error"] for row in out]
    assert errors[1] == "response is null" and errors[2] == "reference is null"
    assert errors[3] == "no 'question' field" and "line 5" in errors[4] and "not an object" in errors[5]
    assert "not valid JSON" in errors[6] and "nested too deeply" in errors[7]
    assert "not text" in errors[8] and "not text" in errors[9] and "not valid JSON" in errors[12]
    assert out[10]["response"] == "r \ud800 lone" and out[10]["extra"] is None and out[10]["big"] is None
    assert out[0]["id"] == 1 and out[13]["id"] == 14
    metrics = strict_json(capsys.readouterr().err.strip().splitlines()[-1])
    assert metrics["judge/invalid_rows"] == 10 and metrics["judge/requests"] == 4
    assert metrics["judge/cached_prompt_tokens"] is not None


def test_parquet_nulls_and_nans_are_missing_without_a_call(tmp_path):
    frame = pd.DataFrame(
        {
            "question": ["q1", "q2", "q3", None],
            "response": ["\\boxed{1}", None, float("nan"), "r"],
            "reference": ["1", "2", "3", "4"],
        }
    )
    source = tmp_path / "items.parquet"
    frame.to_parquet(source)
    code, target, server = run(tmp_path, source, "scored.parquet")
    assert code == 0 and server.count == 1
    out = pd.read_parquet(target)
    assert out["judge_score"].iloc[0] == 7.0 and all(math.isnan(v) for v in out["judge_score"].iloc[1:])
    assert list(out["judge_error"].iloc[1:]) == ["response is null", "response is null", "question is null"]
    code, target, _ = run(tmp_path, source, "scored_from_parquet.jsonl")
    rows = [strict_json(line) for line in target.read_text().splitlines()]
    assert [row["judge_score"] for row in rows] == [7.0, None, None, None] and rows[2]["response"] is None


def test_rows_parquet_cannot_hold_are_kept_in_jsonl_and_the_run_fails_loudly(tmp_path):
    source = tmp_path / "items.jsonl"
    source.write_text(json.dumps({**GOOD, "meta": 1}) + "\n" + json.dumps({**GOOD, "meta": {"k": [1, "a"]}}) + "\n")
    with pytest.raises(SystemExit, match="written to"):
        run(tmp_path, source, "scored.parquet")
    rows = [strict_json(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    assert [row["judge_score"] for row in rows] == [7.0, 7.0]


def test_unreadable_inputs_name_the_file(tmp_path):
    with pytest.raises(SystemExit, match="FileNotFoundError"):
        main(["--input", str(tmp_path / "absent.jsonl"), "--output", str(tmp_path / "o.jsonl")])
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(SystemExit, match="not a readable parquet file"):
        main(["--input", str(broken), "--output", str(tmp_path / "o.jsonl")])
