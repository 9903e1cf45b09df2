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
"""Training-dynamics plots from metrics written by verl's own loggers (console, file, TensorBoard)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import matplotlib.image
import pandas as pd
import pytest

from dagrpo_verl.eval.plot import (
    DAGRPO_PANELS,
    TRAINING_PANELS,
    find_metrics_file,
    load_metrics,
    main,
    panel_key,
    plot_runs,
    positive_part,
)

STEPS = 12


def _metrics(step: int, dagrpo: bool) -> dict:
    m = {
        "critic/score/mean": 0.2 + 0.02 * step,
        "response_length/mean": 400.0 + 5 * step,
        "actor/entropy": 0.6 - 0.01 * step,
        "actor/grad_norm": 0.5 * math.exp(-0.1 * step),
    }
    if dagrpo:
        m.update(
            {
                "dagrpo/pos_masked_frac": 0.1 * (step % 3),
                "dagrpo/anchor_groups_frac": 0.25,
                "judge/score_mean": 5.0 + 0.1 * step,
            }
        )
    return m


@pytest.fixture(scope="module")
def verl_logs(tmp_path_factory):
    """One run logged through verl's Tracking with the console, file and tensorboard backends at once."""
    tmp = tmp_path_factory.mktemp("logs")
    (tmp / "metrics.json").write_text(json.dumps([_metrics(step, True) for step in range(1, STEPS + 1)]))
    script = textwrap.dedent(
        """
        import json, numpy as np
        from verl.utils.tracking import Tracking
        tracker = Tracking("p", "e", default_backend=["console", "file", "tensorboard"])
        for step, m in enumerate(json.load(open("metrics.json")), 1):
            m["response_length/mean"] = np.float64(m["response_length/mean"])  # printed as np.float64(...)
            tracker.log(m, step=step)
        tracker.finish()
        """
    )
    env = {"TENSORBOARD_DIR": str(tmp / "tb"), "VERL_FILE_LOGGER_PATH": str(tmp / "file.jsonl"), "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", script], check=False, cwd=tmp, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    # Ray prefixes worker output; the parser must see through it.
    (tmp / "console.log").write_text("".join(f"(TaskRunner pid=7) {line}\n" for line in out.stdout.splitlines()))
    return tmp


def test_three_formats_agree(verl_logs):
    expected = pd.DataFrame({s: _metrics(s, True) for s in range(1, STEPS + 1)}).T
    for path in (verl_logs / "console.log", verl_logs / "file.jsonl", verl_logs / "tb"):
        frame = load_metrics(path)
        assert list(frame.index) == list(range(1, STEPS + 1)), path
        for key in expected.columns:
            assert frame[key].to_numpy() == pytest.approx(expected[key].to_numpy(), rel=1e-6), (path, key)


def test_flat_metrics_jsonl_and_directory_lookup(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with (run / "metrics.jsonl").open("w") as f:
        for step in range(1, 6):
            f.write(json.dumps({"step": step, **_metrics(step, False), "note": "text is ignored"}) + "\n")
    assert find_metrics_file(run) == run / "metrics.jsonl"
    frame = load_metrics(run)
    assert frame.loc[3, "actor/entropy"] == pytest.approx(0.57) and "note" not in frame.columns


def test_figures_and_missing_metrics(verl_logs, tmp_path, capsys):
    grpo = tmp_path / "grpo.jsonl"
    grpo.write_text("".join(json.dumps({"step": s, **_metrics(s, False)}) + "\n" for s in range(1, 8)))
    runs = {"dagrpo": load_metrics(verl_logs / "file.jsonl"), "grpo": load_metrics(grpo)}
    written = plot_runs(runs, tmp_path / "out", smooth=3)
    assert set(written) == {"training_dynamics.png", "dagrpo_dynamics.png", "metrics.csv"}
    for name in ("training_dynamics.png", "dagrpo_dynamics.png"):
        assert matplotlib.image.imread(written[name]).shape[0] > 100
    csv = pd.read_csv(written["metrics.csv"])
    assert set(csv.run) == {"dagrpo", "grpo"} and len(csv) == STEPS + 7
    assert csv[csv.run == "grpo"]["dagrpo/pos_masked_frac"].isna().all()
    assert "Negatives masked" in capsys.readouterr().out  # logged by no run: listed, not fatal

    only_grpo = plot_runs({"grpo": runs["grpo"]}, tmp_path / "out2")
    assert "dagrpo_dynamics.png" not in only_grpo and not (tmp_path / "out2" / "dagrpo_dynamics.png").exists()


def test_cli_labels(verl_logs, tmp_path, capsys):
    assert main([f"con={verl_logs / 'console.log'}", str(verl_logs / "tb"), "--out", str(tmp_path / "o")]) == 0
    assert set(pd.read_csv(tmp_path / "o" / "metrics.csv").run) == {"con", "tb"}
    with pytest.raises(SystemExit):
        main([f"a={verl_logs / 'console.log'}", f"a={verl_logs / 'file.jsonl'}", "--out", str(tmp_path / "o")])
    assert "labelled 'a'" in capsys.readouterr().err


def test_bad_inputs(tmp_path):
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"critic/score/mean": 1.0}\n')
    with pytest.raises(ValueError, match="'step'"):
        load_metrics(bad)
    bad.write_text("not json\n")
    with pytest.raises(ValueError, match="not a JSON line"):
        load_metrics(bad)
    log = tmp_path / "train.log"
    log.write_text("nothing that looks like metrics\n")
    with pytest.raises(ValueError, match="no step metrics"):
        load_metrics(log)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        load_metrics(tmp_path / "empty")
    with pytest.raises(ValueError, match="--smooth"):
        plot_runs({"x": pd.DataFrame({"actor/entropy": [1.0]}, index=[1])}, tmp_path / "o", smooth=0)


def test_outcome_reward_prefers_on_policy_mean():
    """With anchors verl's critic/score/mean counts them; the panel then draws DaGRPO's on-policy mean."""
    reward = TRAINING_PANELS[0]
    dagrpo = pd.DataFrame({"critic/score/mean": [0.5, 0.5], "dagrpo/rollout_reward_mean": [0.1, 0.2]}, index=[1, 2])
    grpo = pd.DataFrame({"critic/score/mean": [0.1, 0.2]}, index=[1, 2])
    assert panel_key(dagrpo, reward) == "dagrpo/rollout_reward_mean"
    assert panel_key(grpo, reward) == "critic/score/mean"
    assert panel_key(grpo, DAGRPO_PANELS[0]) is None


def test_log_panels_say_what_they_leave_out():
    zero = pd.Series([0.0, 0.0, 0.0], index=[1, 2, 3])
    drawn, label = positive_part(zero, "GRPO")
    assert drawn.empty and label == "GRPO (0 at every step, not drawn)"
    drawn, label = positive_part(pd.Series([0.5, 0.0, 0.25], index=[1, 2, 3]), "DaGRPO")
    assert list(drawn.index) == [1, 3] and label == "DaGRPO (1 step at 0, not drawn)"
    drawn, label = positive_part(pd.Series([0.5, 0.25]), "x")
    assert len(drawn) == 2 and label == "x"
