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
"""``python -m dagrpo_verl.data.prepare`` on small files in the OpenR1-Math-46k-8192 layout.

Everything is real: the files are written here, converted by the module's CLI entry, and
the output is read back with verl's ``RLHFDataset``.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dagrpo_verl.data.prepare import DataValidationError, _plain, convert_rows, load_rows, main, prepare
from dagrpo_verl.fields import ANCHOR_TEXT, QUESTION

SYSTEM = {"role": "system", "content": "Think step by step."}


def _row(i: int, **changes) -> dict:
    row = {
        "data_source": "openr1",
        "prompt": [SYSTEM, {"role": "user", "content": f"What is {i} + 1?"}],
        "target": [{"role": "assistant", "content": f"<think>add</think> The answer is \\boxed{{{i + 1}}}."}],
        "ability": "math",
        "reward_model": {"ground_truth": str(i + 1), "style": "rule"},
        "extra_info": {"index": 100 + i, "split": "train"},
    }
    row.update(changes)
    return row


# each bad row and the (field, kind) its error must name
BAD_ROWS = {
    "no target": (_row(1, target=None), "target", "missing_anchor"),
    "empty target": (_row(2, target=[{"role": "assistant", "content": "  "}]), "target", "missing_anchor"),
    "target without assistant": (_row(3, target=[{"role": "user", "content": "x"}]), "target", "missing_anchor"),
    "no ground truth": (_row(4, reward_model={"style": "rule"}), "reward_model.ground_truth", "no_ground_truth"),
    "empty ground truth": (_row(5, reward_model={"ground_truth": ""}), "reward_model.ground_truth", "no_ground_truth"),
    "prompt is a string": (_row(6, prompt="What is 6 + 1?"), "prompt", "bad_prompt"),
    "empty prompt": (_row(7, prompt=[]), "prompt", "bad_prompt"),
    "prompt ends with assistant": (
        _row(8, prompt=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]),
        "prompt",
        "bad_prompt",
    ),
    "prompt message without content": (_row(9, prompt=[{"role": "user"}]), "prompt", "bad_prompt"),
    "unknown role": (_row(10, prompt=[{"role": "robot", "content": "q"}]), "prompt", "bad_prompt"),
    "no data source": (_row(11, data_source=""), "data_source", "no_data_source"),
}


def _write(path, rows):
    if path.suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(path, index=False)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from dagrpo_verl.cpu.models import build_tiny_qwen2

    return AutoTokenizer.from_pretrained(build_tiny_qwen2(tmp_path_factory.mktemp("tiny")))


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_valid_rows_pass_and_reach_verl_dataset(tmp_path, suffix, tokenizer):
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    rows = [_row(i) for i in range(3)]
    rows[2]["extra_info"] = None  # optional: index and split are filled in
    source = _write(tmp_path / f"openr1{suffix}", rows)
    out = tmp_path / "train.parquet"
    assert main(["--input", str(source), "--output", str(out)]) == 0

    written = pd.read_parquet(out)
    assert list(written.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    infos = written["extra_info"].tolist()
    assert [info[ANCHOR_TEXT] for info in infos] == [r["target"][0]["content"] for r in rows]
    assert [info["index"] for info in infos] == [100, 101, 2]
    assert infos[2]["split"] == "train"
    assert [info[QUESTION] for info in infos] == [r["prompt"][-1]["content"] for r in rows]  # the judge's problem

    config = OmegaConf.create({"max_prompt_length": 256, "filter_overlong_prompts": False})
    dataset = RLHFDataset(data_files=[str(out)], tokenizer=tokenizer, config=config)
    item = dataset[1]
    assert item["extra_info"][ANCHOR_TEXT] == rows[1]["target"][0]["content"]
    assert item["raw_prompt"][-1] == {"role": "user", "content": "What is 1 + 1?"}
    assert item["reward_model"]["ground_truth"] == "2"


def test_prepare_is_idempotent(tmp_path):
    first = tmp_path / "a.parquet"
    prepare(str(_write(tmp_path / "in.jsonl", [_row(0), _row(1)])), first)
    second = tmp_path / "b.parquet"
    prepare(str(first), second)  # already converted rows: anchor read from extra_info
    assert load_rows(str(first)) and _plain(load_rows(str(first))) == _plain(load_rows(str(second)))


@pytest.mark.parametrize("name", sorted(BAD_ROWS))
def test_each_bad_row_gives_a_named_error(name):
    row, field, kind = BAD_ROWS[name]
    with pytest.raises(DataValidationError) as info:
        convert_rows([_row(0), row], on_invalid="fail")
    (error,) = info.value.errors
    assert (error.row, error.field, error.kind) == (1, field, kind)
    message = str(info.value)
    assert f"row 1: field '{field}'" in message and "Fix:" in message and "--on-invalid drop" in message


def test_drop_keeps_valid_rows_and_counts_the_dropped(tmp_path, capsys):
    bad = [row for row, _, _ in BAD_ROWS.values()]
    rows = [_row(0), *bad, _row(1)]
    source = _write(tmp_path / "mixed.jsonl", rows)  # parquet cannot hold a string prompt next to lists
    out, report = tmp_path / "out.parquet", tmp_path / "report.json"

    assert main(["--input", str(source), "--output", str(out), "--report", str(report)]) == 1
    assert not out.exists()  # fail (the default) writes nothing
    assert "11 of 13 rows are invalid" in capsys.readouterr().err

    assert main(["--input", str(source), "--output", str(out), "--on-invalid", "drop", "--report", str(report)]) == 0
    assert pd.read_parquet(out)["extra_info"].map(lambda e: e["index"]).tolist() == [100, 101]
    summary = json.loads(report.read_text())
    assert (summary["total"], summary["written"], summary["dropped"]) == (13, 2, 11)
    expected = {}
    for _, _, kind in BAD_ROWS.values():
        expected[kind] = expected.get(kind, 0) + 1
    assert summary["dropped_by_kind"] == expected
    assert sorted(e["row"] for e in summary["errors"]) == list(range(1, 12))
    assert "dropped 11" in capsys.readouterr().out


def test_all_rows_invalid_fails_even_with_drop():
    with pytest.raises(DataValidationError, match="1 of 1 rows are invalid"):
        convert_rows([_row(0, target=None)], on_invalid="drop")


def test_missing_file_and_bad_suffix_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        prepare(str(tmp_path / "nope.parquet"), tmp_path / "out.parquet")
    odd = tmp_path / "data.csv"
    odd.write_text("a,b\n")
    with pytest.raises(ValueError, match="unsupported file type"):
        prepare(str(odd), tmp_path / "out.parquet")


def test_unreachable_hugging_face_name_is_clear(monkeypatch, tmp_path):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    with pytest.raises(RuntimeError, match="could not load the Hugging Face data set 'nobody/no-such-set'"):
        prepare("nobody/no-such-set", tmp_path / "out.parquet")


def test_real_benchmark_rows_fail_only_for_the_missing_anchor():
    """The public evaluation parquets (same layout, no expert answers): every other check passes on real rows."""
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks" / "valid.gpqa.parquet"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    rows = load_rows(str(path))
    with pytest.raises(DataValidationError) as info:
        convert_rows(rows)
    assert {e.kind for e in info.value.errors} == {"missing_anchor"} and len(info.value.errors) == len(rows)
    result = convert_rows([{**row, "target": "expert"} for row in rows])
    assert result.dropped == 0 and len(result.rows) == len(rows)


# --------------------------------------------------------------------------- hostile inputs (issue 11)
def test_null_and_non_object_jsonl_lines_name_their_line(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(_row(0)) + "\n\nnull\n[1, 2]\n" + json.dumps(_row(1)) + "\n")
    out = tmp_path / "out.parquet"
    assert main(["--input", str(source), "--output", str(out)]) == 1  # a named error, no traceback
    err = capsys.readouterr().err
    assert "row 1 (line 3): field '(row)': is null, not an object" in err
    assert "row 2 (line 4): field '(row)': is a list" in err and "Traceback" not in err
    assert main(["--input", str(source), "--output", str(out), "--on-invalid", "drop"]) == 0
    assert pd.read_parquet(out)["extra_info"].map(lambda e: e["index"]).tolist() == [100, 101]


def test_invalid_json_line_is_a_named_file_error(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(_row(0)) + "\n{not json\n")
    assert main(["--input", str(source), "--output", str(tmp_path / "out.parquet")]) == 2
    err = capsys.readouterr().err
    assert f"{source} line 2: not valid JSON" in err and "Traceback" not in err
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    assert main(["--input", str(deep), "--output", str(tmp_path / "out.parquet")]) == 2
    assert f"{deep} line 1: not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize(
    "written, expected",
    [
        ("1e20", "100000000000000000000"),  # never "1e+20" (math-verify reads e + 20)
        ("100000000000000000000", "100000000000000000000"),
        ("4.0", "4"),  # an integral float is the integer
        ("2.50", "2.50"),  # a decimal keeps the digits it was written with
        ("-0.125", "-0.125"),
        ("1e-05", "0.00001"),
        ('"1e+20"', "1e+20"),  # text is kept as written
    ],
)
def test_numeric_ground_truths_stay_exact(tmp_path, written, expected):
    line = json.dumps(_row(0)).replace('"ground_truth": "1"', f'"ground_truth": {written}')
    source = tmp_path / "in.jsonl"
    source.write_text(line + "\n")
    prepare(str(source), tmp_path / "out.parquet")
    assert pd.read_parquet(tmp_path / "out.parquet")["reward_model"][0]["ground_truth"] == expected


def test_numeric_ground_truths_from_parquet_stay_exact(tmp_path):
    rows = [_row(i, reward_model={"ground_truth": value}) for i, value in enumerate([1e20, 0.1, 7.0])]
    result = convert_rows(rows)
    assert [r["reward_model"]["ground_truth"] for r in result.rows] == ["100000000000000000000", "0.1", "7"]


@pytest.mark.parametrize("value", ["true", "NaN", "Infinity", "-Infinity"])
def test_bool_nan_and_infinite_ground_truths_are_refused(tmp_path, capsys, value):
    line = json.dumps(_row(0)).replace('"ground_truth": "1"', f'"ground_truth": {value}')
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(_row(1)) + "\n" + line + "\n")
    assert main(["--input", str(source), "--output", str(tmp_path / "out.parquet")]) == 1
    err = capsys.readouterr().err
    assert "row 1 (line 2): field 'reward_model.ground_truth'" in err and "bad_ground_truth: 1" in err


def test_extra_info_fields_are_validated():
    anchored = _row(1, extra_info={"is_anchor": True})
    numeric_question = _row(2, extra_info={"question": 5})
    unjudged = _row(4, extra_info={"is_validation": False})
    with pytest.raises(DataValidationError) as info:
        convert_rows([_row(0), anchored, numeric_question, unjudged])
    errors = {(e.row, e.field, e.kind) for e in info.value.errors}
    assert errors == {
        (1, "extra_info.is_anchor", "bad_extra_info"),
        (2, "extra_info.question", "bad_extra_info"),
        (3, "extra_info.is_validation", "bad_extra_info"),
    }
    assert "maximum score" in str(info.value)
    blank = convert_rows([_row(3, extra_info={"question": "  "})]).rows[0]
    assert blank["extra_info"][QUESTION] == "What is 3 + 1?"  # empty: the last user message


@pytest.mark.parametrize("value", ["-1", "0", "x"])
def test_max_rows_below_one_is_rejected(tmp_path, capsys, value):
    source = _write(tmp_path / "in.jsonl", [_row(0), _row(1)])
    with pytest.raises(SystemExit) as exit_info:
        main(["--input", str(source), "--output", str(tmp_path / "out.parquet"), "--max-rows", value])
    assert exit_info.value.code == 2 and "--max-rows" in capsys.readouterr().err
    with pytest.raises(ValueError, match="max-rows"):
        prepare(str(source), tmp_path / "out.parquet", max_rows=-1)
    assert main(["--input", str(source), "--output", str(tmp_path / "out.parquet"), "--max-rows", "2"]) == 0
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == 2  # the last row is kept
