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
"""Training-dynamics plots (the paper's Figures 2-3) from verl's logged metrics.

``python -m dagrpo_verl.eval.plot [LABEL=]RUN [[LABEL=]RUN ...] --out DIR``

A RUN is a metrics file or a directory searched for one. Understood formats:

* ``metrics.jsonl`` - one flat JSON object per step: ``{"step": 1, "critic/score/mean": 0.4, ...}``;
* verl's ``file`` logger (``trainer.logger=[console,file]``) - ``{"step": 1, "data": {...}}`` per line;
* verl's ``console`` logger output (a captured stdout/log file) - lines ``step:1 - key:value - ...``,
  possibly behind a Ray prefix such as ``(TaskRunner pid=1)``;
* TensorBoard event files (``trainer.logger=[tensorboard]``; ``events.out.tfevents.*``).

Writes ``training_dynamics.png`` (on-policy outcome reward, response length, entropy, gradient
norm on a log scale, where steps with a zero gradient are left out and counted in the legend) and,
when any run logged them, ``dagrpo_dynamics.png`` (mask rates, anchor usage and f(p), judge score),
when any run logged them ``sft_dynamics.png`` (the loss and learning rate of verl's SFT
trainer, ``recipes/run_sft_baseline.sh``), plus ``metrics.csv`` with every run's plotted series. A
panel names in its legend the runs that did not log it (an SFT run has no rollouts, so no reward,
response length or entropy); a panel no run logged is left out and listed, never fatal.

For a run directory, the per-step output of the gradient-conflict meter found below it
(``gradient_conflict.jsonl``, written by ``python -m dagrpo_verl.conflict``) is joined to the run's
metrics and drawn in ``gradient_conflict.png`` (cosines of g+ and g- before and after the masks,
masked vs kept positives, gradient norms; points at the measured checkpoints).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dagrpo_verl.conflict import CONFLICT_FILE, SAMPLES_FILE, metric_name

__all__ = [
    "CONFLICT_PANELS",
    "DAGRPO_PANELS",
    "SFT_PANELS",
    "TRAINING_PANELS",
    "Panel",
    "find_metrics_file",
    "is_sft_run",
    "load_metrics",
    "main",
    "not_logged_label",
    "panel_key",
    "plot_runs",
    "positive_part",
]


@dataclass(frozen=True)
class Panel:
    """One subplot: the first of ``keys`` a run logged is drawn (older/newer verl names; a key with ``*``
    matches like a file name, e.g. verl's per-data-source validation metrics)."""

    title: str
    keys: tuple[str, ...]
    log_y: bool = False
    markers: bool = False  # sparse metrics (measured at checkpoints): mark the points


#: On-policy outcome reward, most specific first: DaGRPO logs it separately because verl's
#: ``critic/score/mean`` counts the anchors too; runs without anchors only have verl's keys.
OUTCOME_REWARD_KEYS = ("dagrpo/rollout_reward_mean", "critic/score/mean", "critic/rewards/mean")

#: Figure 2-3 of the paper.
TRAINING_PANELS = (
    Panel("Outcome reward (on-policy)", OUTCOME_REWARD_KEYS),
    Panel("Response length", ("response_length/mean",)),
    Panel("Entropy", ("actor/entropy",)),
    # verl's SFT trainer logs the same quantity (global norm before clipping) as train/grad_norm
    Panel("Gradient norm", ("actor/grad_norm", "train/grad_norm"), log_y=True),
    # verl's validation (trainer.test_freq): greedy accuracy on the val set, first data source
    Panel("Held-out accuracy (validation)", ("val-core/*/acc/mean@1",), markers=True),
)

#: DaGRPO's own diagnostics.
DAGRPO_PANELS = (
    Panel("Positives masked (frac)", ("dagrpo/pos_masked_frac",)),
    Panel("Negatives masked (frac)", ("dagrpo/neg_masked_frac",)),
    Panel("Groups with an anchor (frac)", ("dagrpo/anchor_groups_frac",)),
    Panel("Anchors retained (frac)", ("dagrpo/anchor_retained_frac",)),
    Panel("Anchor reward (mean)", ("dagrpo/anchor_reward_mean",)),
    # how much of the expert the policy has taken up: mean f(p) = p / (p + γ) over anchor tokens
    Panel(
        "Anchor tokens: f(p) = p/(p+γ)", ("actor/dagrpo/anchor_shaped_ratio_mean", "dagrpo/anchor_shaped_ratio_mean")
    ),
    Panel("Judge score (mean)", ("judge/score_mean",)),
)

#: verl's SFT trainer (``verl.trainer.sft_trainer``): token-mean NLL of the expert solutions.
SFT_PANELS = (
    Panel("SFT loss (train)", ("train/loss",)),
    Panel("SFT loss (validation)", ("val/loss",)),
    Panel("SFT learning rate", ("train/lr",)),
)

#: The gradient-conflict meter (:mod:`dagrpo_verl.conflict`) at the saved policies: means over groups.
CONFLICT_PANELS = (
    Panel("cos(g+, g−) before the masks", (metric_name("cos_before", "mean"),), markers=True),
    Panel("cos(g+, g−) after the masks", (metric_name("cos_after", "mean"),), markers=True),
    Panel("Masked positives: cos with g−", (metric_name("cos_masked_pos", "mean"),), markers=True),
    Panel("Kept positives: cos with g−", (metric_name("cos_kept_pos", "mean"),), markers=True),
    Panel("‖g+ + g−‖ before the masks", (metric_name("norm_before", "mean"),), markers=True),
    Panel("‖g+ + g−‖ after the masks", (metric_name("norm_after", "mean"),), markers=True),
)

# The meter's files are not a run's metrics file, whatever a directory search finds first.
_METER_FILES = (CONFLICT_FILE, SAMPLES_FILE)

_CONSOLE_STEP = re.compile(r"(?:^|\s)step:(\d+) - ")
_NUMBER = re.compile(r"^(?:np\.\w+\()?\s*([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf))\s*\)?$")
_TB_GLOB = "events.out.tfevents.*"


def _number(value) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = _NUMBER.match(value.strip())
        return float(m.group(1)) if m else None
    return None


def _frame(rows: dict[int, dict[str, float]], origin: str) -> pd.DataFrame:
    if not rows:
        raise ValueError(
            f"{origin}: no step metrics found; expected metrics.jsonl lines with a 'step' key, verl console lines "
            "'step:N - key:value', or TensorBoard scalars."
        )
    frame = pd.DataFrame.from_dict(rows, orient="index").sort_index()
    frame.index.name = "step"
    return frame


def _load_jsonl(path: Path) -> pd.DataFrame:
    rows: dict[int, dict[str, float]] = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{path}:{n}: not a JSON line ({e.msg}); metrics files hold one JSON object per line."
                ) from None
            if not isinstance(obj, dict) or "step" not in obj:
                raise ValueError(f"{path}:{n}: a metrics line needs a 'step' key, got {str(obj)[:80]!r}.")
            data = obj["data"] if isinstance(obj.get("data"), dict) else obj
            values = {k: _number(v) for k, v in data.items() if k != "step"}
            rows.setdefault(int(obj["step"]), {}).update({k: v for k, v in values.items() if v is not None})
    return _frame(rows, str(path))


def _load_console(path: Path) -> pd.DataFrame:
    rows: dict[int, dict[str, float]] = {}
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            m = _CONSOLE_STEP.search(line)
            if not m:
                continue
            values = rows.setdefault(int(m.group(1)), {})
            for item in line[m.end() :].rstrip("\n").split(" - "):
                key, sep, raw = item.partition(":")
                value = _number(raw) if sep else None
                if value is not None:
                    values[key.strip()] = value
    return _frame(rows, str(path))


def _load_tensorboard(path: Path) -> pd.DataFrame:
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, TENSORS, EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={SCALARS: 0, TENSORS: 0})
    acc.Reload()
    rows: dict[int, dict[str, float]] = {}
    tags = acc.Tags()
    for tag in tags.get("scalars", []):
        for event in acc.Scalars(tag):
            rows.setdefault(int(event.step), {})[tag] = float(event.value)
    for tag in tags.get("tensors", []):
        from tensorboard.util import tensor_util

        for event in acc.Tensors(tag):
            array = tensor_util.make_ndarray(event.tensor_proto)
            if array.size == 1:
                rows.setdefault(int(event.step), {})[tag] = float(array.reshape(()))
    return _frame(rows, str(path))


def find_metrics_file(path: str | Path) -> Path:
    """The metrics file of a run: ``path`` itself, or in a directory (searched recursively) the first of
    ``metrics.jsonl``, other ``*.jsonl``, TensorBoard event files, ``*.log``/``*.txt``/``*.out``."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or directory (pass a metrics file or a run directory).")
    for pattern in ("metrics.jsonl", "*.jsonl", _TB_GLOB, "*.log", "*.txt", "*.out"):
        found = sorted(p for p in path.rglob(pattern) if p.name not in _METER_FILES)
        if found:
            return found[0].parent if pattern == _TB_GLOB else found[0]
    raise FileNotFoundError(f"{path}: no metrics.jsonl, *.jsonl, TensorBoard events or *.log file inside.")


def load_metrics(path: str | Path) -> pd.DataFrame:
    """Per-step metrics of one run (index: step, one column per metric name).

    For a run directory, the gradient-conflict meter's per-step file below it (``gradient_conflict.jsonl``)
    is joined in; with several, the first in path order, and the others are named.
    """
    frame = _load_metrics_file(find_metrics_file(path))
    meter = sorted(Path(path).rglob(CONFLICT_FILE)) if Path(path).is_dir() else []
    if len(meter) > 1:
        print(f"plot: {path}: joining {meter[0]}, not {', '.join(map(str, meter[1:]))}")
    return frame.combine_first(_load_jsonl(meter[0])) if meter else frame


def _load_metrics_file(path: Path) -> pd.DataFrame:
    if path.is_dir() or path.name.startswith("events.out.tfevents"):
        return _load_tensorboard(path)
    if path.suffix == ".jsonl":
        return _load_jsonl(path)
    with path.open(encoding="utf-8", errors="replace") as f:
        first = next((line for line in f if line.strip()), "")
    if first.lstrip().startswith("{"):
        return _load_jsonl(path)
    return _load_console(path)


def panel_key(frame: pd.DataFrame, panel: Panel) -> str | None:
    """The metric a panel draws for a run: the first of its keys the run logged, or None."""
    for key in panel.keys:
        names = sorted(fnmatch.filter(map(str, frame.columns), key)) if "*" in key else [key]
        found = next((name for name in names if name in frame.columns and frame[name].notna().any()), None)
        if found is not None:
            return found
    return None


def is_sft_run(frame: pd.DataFrame) -> bool:
    """True for the metrics of verl's SFT trainer: ``train/loss`` and nothing from a PPO actor or critic."""
    return "train/loss" in frame.columns and not any(str(c).startswith(("actor/", "critic/")) for c in frame.columns)


def not_logged_label(frame: pd.DataFrame, label: str) -> str:
    """Legend entry of a run that logged none of a drawn panel's metrics (instead of leaving it out silently)."""
    return f"{label}: SFT run, no rollouts (not logged)" if is_sft_run(frame) else f"{label}: not logged"


def _smooth(series: pd.Series, window: int) -> pd.Series:
    return series if window <= 1 else series.rolling(window, min_periods=1).mean()


def positive_part(series: pd.Series, label: str) -> tuple[pd.Series, str]:
    """What a log-scale panel can draw of ``series`` and the legend label saying what it left out.

    A run whose gradient is exactly 0 (GRPO on all-wrong groups) would otherwise vanish from
    the panel without a word.
    """
    positive = series[series > 0]
    dropped = len(series) - len(positive)
    if dropped == 0:
        return positive, label
    what = "0 at every step" if positive.empty else f"{dropped} step{'s' if dropped > 1 else ''} at 0"
    return positive, f"{label} ({what}, not drawn)"


def _draw(runs: dict[str, pd.DataFrame], panels: tuple[Panel, ...], title: str, out: Path, smooth: int) -> list[str]:
    """Draw the panels some run has data for; return the panel titles left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [p for p in panels if any(panel_key(f, p) for f in runs.values())]
    missing = [p.title for p in panels if p not in present]
    if not present:
        return missing
    cols = 2 if len(present) > 1 else 1
    rows = math.ceil(len(present) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.6 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, present, strict=False):
        for label, frame in runs.items():
            key = panel_key(frame, panel)
            if key is None:
                ax.plot([], [], linestyle="none", label=not_logged_label(frame, label))
                continue
            series = frame[key].dropna()
            legend = label
            if panel.log_y:
                series, legend = positive_part(series, label)
            marker = "o" if panel.markers else None
            (line,) = ax.plot(series.index, _smooth(series, smooth), label=legend, linewidth=1.5, marker=marker)
            if smooth > 1:
                ax.plot(series.index, series, color=line.get_color(), alpha=0.25, linewidth=0.8)
        ax.set_title(panel.title)
        ax.set_xlabel("step")
        if panel.log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(present) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return missing


def plot_runs(runs: dict[str, pd.DataFrame], out_dir: str | Path, smooth: int = 1) -> dict[str, Path]:
    """Write the figures and ``metrics.csv`` for ``runs`` (label -> metrics); return the written files by name.

    Panels no run has data for are left out (a figure with no panel at all is not written).
    """
    if not runs:
        raise ValueError("no runs to plot; pass at least one metrics file or run directory.")
    if smooth < 1:
        raise ValueError(f"--smooth must be >= 1, got {smooth}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, panels, title in (
        ("training_dynamics.png", TRAINING_PANELS, "Training dynamics"),
        ("dagrpo_dynamics.png", DAGRPO_PANELS, "DaGRPO masks and anchors"),
        ("sft_dynamics.png", SFT_PANELS, "Supervised fine-tuning"),
        ("gradient_conflict.png", CONFLICT_PANELS, "Gradient conflict (dagrpo_verl.conflict), means over groups"),
    ):
        missing = _draw(runs, panels, title, out / name, smooth)
        if len(missing) < len(panels):
            written[name] = out / name
        if missing:
            print(f"plot: no run logged {', '.join(missing)} ({name})")
    panels = TRAINING_PANELS + DAGRPO_PANELS + SFT_PANELS + CONFLICT_PANELS
    long = []
    for label, frame in runs.items():
        plotted = [key for key in (panel_key(frame, panel) for panel in panels) if key is not None]
        long.append(frame[plotted].assign(run=label).reset_index())
    pd.concat(long, ignore_index=True).to_csv(out / "metrics.csv", index=False)
    written["metrics.csv"] = out / "metrics.csv"
    return written


def _parse_run(spec: str) -> tuple[str, str]:
    label, sep, path = spec.partition("=")
    if sep and label and not Path(spec).exists():
        return label, path
    path = Path(spec)
    return (path.stem if path.is_file() else path.name) or str(path), spec


def main(argv: list[str] | None = None) -> int:
    """Plot the given runs."""
    parser = argparse.ArgumentParser(prog="python -m dagrpo_verl.eval.plot", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="[LABEL=]RUN", help="metrics file or run directory per run")
    parser.add_argument("--out", default="plots", help="output directory")
    parser.add_argument("--smooth", type=int, default=1, help="rolling-mean window in steps (raw curve shown faint)")
    args = parser.parse_args(argv)
    runs = {}
    for spec in args.runs:
        label, path = _parse_run(spec)
        if label in runs:
            parser.error(f"two runs are labelled {label!r}; name them with LABEL=PATH")
        runs[label] = load_metrics(path)
    for path in plot_runs(runs, args.out, args.smooth).values():
        print(f"plot: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
