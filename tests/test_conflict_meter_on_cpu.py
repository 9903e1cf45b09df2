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
"""The gradient-conflict meter (dagrpo_verl.conflict): hand-computed cosines, finite differences, I/O.

Real parts: dagrpo_verl.algo.core's advantage and masks, a real (tiny, random) transformers Qwen2, the
chain-sums reward function and dagrpo_verl.algo.anchors for the sampled groups.
"""

import json
import math
import pathlib

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from transformers import Qwen2Config, Qwen2ForCausalLM

from dagrpo_verl.conflict import QUANTITIES, metric_name
from dagrpo_verl.conflict import meter as conflict
from dagrpo_verl.conflict.meter import Sample, group_advantages, measure_group, weighted_logprob_gradient

ALGORITHM = OmegaConf.create({"norm_adv_by_std_in_grpo": False, "dagrpo": {"delta": 3.0}})


class _Unigram(torch.nn.Module):
    """Logits θ at every position, whatever the context: ∇θ log π(o) = Σ_t (e_{o_t} - softmax(θ))."""

    def __init__(self, vocab: int):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(vocab, dtype=torch.float64))

    def forward(self, input_ids, attention_mask=None):
        logits = self.theta.expand(*input_ids.shape, -1)
        return type("Output", (), {"logits": logits})()


def _hand_group() -> list[Sample]:
    # R = [1, 1, 0, 0] -> A = ±1/2. δ = 3: S_max- = 6 keeps the positive scored 10 and masks the one
    # scored 5; S_min+ = 5 keeps the negative scored 1 and masks the one scored 6.
    return [
        Sample("q", [0], [1, 1], 1.0, 10.0),
        Sample("q", [0], [1, 2], 1.0, 5.0),
        Sample("q", [0], [2, 2], 0.0, 1.0),
        Sample("q", [0], [1, 0], 0.0, 6.0),
    ]


def test_hand_computed_unigram_group():
    """At θ = 0 with V = 3, ∇ log π(o) = counts(o) - |o|/3. By hand (see the comments):
    P_k = (-1/3, 2/3, -1/3), P_m = (-1/3, 1/6, 1/6), N_k = (1/3, 1/3, -2/3), N_m = (-1/6, -1/6, 1/3)."""
    samples = _hand_group()
    advantages, rectified = group_advantages(samples, ALGORITHM)
    assert advantages.tolist() == [0.5, 0.5, -0.5, -0.5]
    assert rectified.tolist() == [0.5, 0.0, -0.5, -0.0]

    result = measure_group(_Unigram(3), samples, advantages, rectified)
    assert (result.n_pos, result.n_neg, result.n_pos_masked, result.n_neg_masked) == (2, 2, 1, 1)
    v = result.values
    # g+ = (-2/3, 5/6, -1/6), g- = (1/6, 1/6, -1/3): g+·g- = 1/12, |g+|² = 7/6, |g-|² = 1/6
    assert v["cos_before"] == pytest.approx(1 / (2 * math.sqrt(7)), abs=1e-12)
    assert v["cos_after"] == pytest.approx(0.5, abs=1e-12)  # P_k·N_k = 1/3, |P_k|² = |N_k|² = 2/3
    assert v["cos_masked_pos"] == pytest.approx(-0.5, abs=1e-12)  # P_m·g- = -1/12, |P_m|² = 1/6
    assert v["cos_kept_pos"] == pytest.approx(0.5, abs=1e-12)  # P_k·g- = 1/6
    assert v["cos_masked_neg"] == pytest.approx(-1 / (2 * math.sqrt(7)), abs=1e-12)  # N_m·g+ = -1/12, |N_m|² = 1/6
    assert v["cos_kept_neg"] == pytest.approx(1 / (2 * math.sqrt(7)), abs=1e-12)  # N_k·g+ = 1/6
    assert v["norm_pos"] == pytest.approx(math.sqrt(7 / 6), abs=1e-12)
    assert v["norm_neg"] == pytest.approx(math.sqrt(1 / 6), abs=1e-12)
    assert v["norm_before"] == pytest.approx(math.sqrt(1.5), abs=1e-12)  # g+ + g- = (-1/2, 1, -1/2)
    assert v["norm_after"] == pytest.approx(math.sqrt(2), abs=1e-12)  # P_k + N_k = (0, 1, -1)


def test_no_masked_subset_gives_nan_not_zero():
    samples = [Sample("q", [0], [1], 1.0, 10.0), Sample("q", [0], [2], 0.0, 1.0)]
    advantages, rectified = group_advantages(samples, ALGORITHM)
    v = measure_group(_Unigram(3), samples, advantages, rectified).values
    assert v["cos_before"] == pytest.approx(v["cos_after"])
    assert math.isnan(v["cos_masked_pos"]) and math.isnan(v["cos_masked_neg"])
    assert math.isnan(v["cos_removed_vs_kept"])


def test_group_without_signal_is_not_measured():
    samples = [Sample("q", [0], [1], 1.0, 10.0), Sample("q", [0], [2], 1.0, 1.0)]
    advantages, rectified = group_advantages(samples, ALGORITHM)
    result = measure_group(_Unigram(3), samples, advantages, rectified)
    assert result.n_pos == result.n_neg == 0
    assert all(math.isnan(x) for x in result.values.values())


def _tiny_qwen2() -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=40,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).double().eval()


def _objective_one_by_one(model, prompts, responses, weights, temperature) -> torch.Tensor:
    """Σ_i w_i Σ_t log π, each sequence on its own (no padding), token by token."""
    total = torch.zeros((), dtype=torch.float64)
    for prompt, response, w in zip(prompts, responses, weights, strict=True):
        ids = torch.tensor([prompt + response])
        logits = model(input_ids=ids).logits[0] / temperature
        for t in range(len(response)):
            position = len(prompt) + t - 1  # the logits at this position predict token len(prompt) + t
            total = total + w * torch.log_softmax(logits[position], dim=-1)[response[t]]
    return total


def test_gradient_matches_finite_differences_on_a_real_qwen2():
    model = _tiny_qwen2()
    prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    responses = [[10, 11, 12, 13], [14], [15, 16]]
    weights = [0.75, -0.25, -0.5]
    temperature = 0.7
    gradient = weighted_logprob_gradient(model, prompts, responses, weights, temperature=temperature, micro_batch=2)
    params = [p for p in model.parameters() if p.requires_grad]
    assert gradient.shape == (sum(p.numel() for p in params),)

    def objective_at(direction, step):
        """The objective at θ + step·direction (θ restored afterwards)."""
        with torch.no_grad():
            offset = 0
            for p in params:
                p.add_(step * direction[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
            value = float(_objective_one_by_one(model, prompts, responses, weights, temperature))
            offset = 0
            for p in params:
                p.sub_(step * direction[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
        return value

    # Central differences with Richardson extrapolation: Qwen2's RMSNorm computes its variance in float32,
    # so a plain central difference is limited to ~1e-4 relative accuracy whatever the step.
    generator = torch.Generator().manual_seed(1)
    h = 2e-4
    for _ in range(3):
        direction = torch.randn(gradient.shape, generator=generator, dtype=torch.float64)

        def central(step, direction=direction):
            return (objective_at(direction, step) - objective_at(direction, -step)) / (2 * step)

        numeric = (4 * central(h / 2) - central(h)) / 3
        assert float(gradient @ direction) == pytest.approx(numeric, rel=1e-4)


def test_summary_statistics_by_hand():
    groups = pd.DataFrame({
        "step": [5] * 6, "n_pos": [1, 1, 1, 1, 1, 0], "n_neg": [1, 1, 1, 1, 1, 0],
        **{q: [0.0, 1.0, 2.0, 3.0, 4.0, math.nan] for q in QUANTITIES},
    })  # fmt: skip
    groups.loc[0, "cos_after"] = math.nan
    (row,) = conflict.summarise(groups).to_dict(orient="records")
    assert row["step"] == 5 and row["dagrpo/conflict_groups"] == 5
    assert row["dagrpo/conflict_groups_without_signal"] == 1
    assert row[metric_name("cos_before", "mean")] == 2.0
    assert row[metric_name("cos_before", "p50")] == 2.0
    assert row[metric_name("cos_before", "p10")] == pytest.approx(0.4)  # linear interpolation
    assert row[metric_name("cos_before", "n")] == 5
    assert row[metric_name("cos_after", "mean")] == 2.5 and row[metric_name("cos_after", "n")] == 4


def test_groups_file_round_trip_and_bad_lines(tmp_path):
    samples = _hand_group()
    samples[2].judge_score = math.nan
    path = tmp_path / "groups.jsonl"
    advantages, rectified = group_advantages(samples, ALGORITHM)
    conflict.write_groups(path, 7, samples, advantages, rectified)
    back = conflict.read_groups(path)
    assert list(back) == [7]
    assert [s.response_ids for s in back[7]] == [s.response_ids for s in samples]
    assert math.isnan(back[7][2].judge_score) and back[7][0].judge_score == 10.0
    assert json.loads(path.read_text().splitlines()[1])["rectified_advantage"] == 0.0

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"uid": "a", "prompt_ids": [1], "response_ids": [2], "reward": 1}) + "\n{not json\n")
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        conflict.read_groups(bad)
    bad.write_text(json.dumps({"uid": "a", "prompt_ids": "xyz", "response_ids": [2], "reward": 1}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        conflict.read_groups(bad)


def test_policy_step_from_checkpoint_paths(tmp_path):
    assert conflict.policy_step(tmp_path / "checkpoints" / "global_step_20" / "actor") == 20
    assert conflict.policy_step(tmp_path / "global_step_3") == 3
    assert conflict.policy_step(tmp_path / "model") is None


def test_load_policy_refuses_a_directory_without_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a Hugging Face model directory"):
        conflict.load_policy(tmp_path)


def test_sampled_groups_mix_anchors_as_the_trainer_does(tmp_path):
    """A random tiny model gets every chain sum wrong: with anchors on (trigger hard), every group gets one
    anchor in place of a rollout, rewarded 1 and judged 10 by the task's judge; without anchors, no group
    has signal. The run's settings come from the composed trainer config."""
    from dagrpo_verl.cpu.chain_sums import write_chain_task
    from dagrpo_verl.cpu.models import build_tiny_qwen2
    from dagrpo_verl.main import compose_config

    model_dir = build_tiny_qwen2(tmp_path / "tiny")
    train, _ = write_chain_task(tmp_path / "data", max_operand=2)
    common = [
        f"data.train_files={train}",
        "data.max_response_length=32",
        "actor_rollout_ref.rollout.n=4",
        "reward.custom_reward_function.path=pkg://dagrpo_verl.cpu.chain_sums",
        "~reward.custom_reward_function.reward_kwargs",
    ]
    model, tokenizer = conflict.load_policy(model_dir)
    rows = conflict._data_rows(compose_config(common), None, prompts=3, seed=0)

    with_anchors = conflict.sample_groups(model, tokenizer, rows, compose_config(common), seed=0)
    assert len(with_anchors) == 12
    anchors = [s for s in with_anchors if s.is_anchor]
    assert len(anchors) == 3 and {s.uid for s in anchors} == {"0", "1", "2"}
    assert all(s.reward == 1.0 and s.judge_score == 10.0 for s in anchors)
    assert all(s.reward == 0.0 for s in with_anchors if not s.is_anchor)
    groups = conflict.measure_samples(model, tokenizer, with_anchors, compose_config(common), 0, "test")
    assert [(g["n_pos"], g["n_neg"], g["n_anchor"]) for g in groups] == [(1, 3, 1)] * 3
    assert all(np.isfinite(g["cos_before"]) for g in groups)

    plain = conflict.sample_groups(
        model, tokenizer, rows, compose_config(common + ["algorithm.dagrpo.anchor.enable=false"]), seed=0
    )
    assert not any(s.is_anchor for s in plain) and len(plain) == 12


def test_reward_function_without_judge_score_is_refused(tmp_path):
    from dagrpo_verl.cpu.chain_sums import write_chain_task
    from dagrpo_verl.cpu.models import build_tiny_qwen2
    from dagrpo_verl.main import compose_config

    model, tokenizer = conflict.load_policy(build_tiny_qwen2(tmp_path / "tiny"))
    train, _ = write_chain_task(tmp_path / "data", max_operand=2)
    config = compose_config(
        [
            f"data.train_files={train}",
            "data.max_response_length=4",
            "actor_rollout_ref.rollout.n=2",
            "algorithm.dagrpo.anchor.enable=false",
            "reward.custom_reward_function.path=pkg://dagrpo_verl.cpu.demo_data",
            "reward.custom_reward_function.name=digit_reward",
            "~reward.custom_reward_function.reward_kwargs",
        ]
    )
    rows = conflict._data_rows(config, None, prompts=1, seed=0)
    with pytest.raises(ValueError, match="returns no 'judge_score'"):
        conflict.sample_groups(model, tokenizer, rows, config, seed=0)


def test_plot_joins_the_meter_output_of_a_run_directory(tmp_path, capsys):
    from dagrpo_verl.conflict import CONFLICT_FILE, SAMPLES_FILE
    from dagrpo_verl.eval.plot import TRAINING_PANELS, load_metrics, panel_key
    from dagrpo_verl.eval.plot import main as plot_main

    run = tmp_path / "run"
    (run / "conflict").mkdir(parents=True)
    lines = [{"step": s, "data": {"actor/grad_norm": 0.1 * s, "critic/score/mean": 0.02 * s}} for s in range(1, 21)]
    lines += [{"step": s, "data": {"val-core/task/acc/mean@1": 0.1 + s / 100}} for s in (0, 10, 20)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    cos = metric_name("cos_before", "mean")
    meter = [{"step": 0, cos: 0.5}, {"step": 10, cos: -0.25}, {"step": 20, cos: None}]
    (run / "conflict" / CONFLICT_FILE).write_text("".join(json.dumps(line) + "\n" for line in meter))
    sample = {"step": 0, "uid": "0", "prompt_ids": [1], "response_ids": [2], "reward": 1.0}
    (run / "conflict" / SAMPLES_FILE).write_text(json.dumps(sample) + "\n")

    frame = load_metrics(run)
    assert frame.loc[10, cos] == -0.25 and frame.loc[10, "actor/grad_norm"] == pytest.approx(1.0)
    assert frame.loc[0, cos] == 0.5 and pd.isna(frame.loc[0, "actor/grad_norm"])
    assert pd.isna(frame.loc[20, cos]) and "reward" not in frame.columns

    # A run logged only to the console: its log is its metrics file, not the meter's JSON lines.
    (run / "metrics.jsonl").unlink()
    (run / "train.log").write_text(
        "".join(f"(TaskRunner pid=1) step:{s} - actor/grad_norm:{s} - x:1\n" for s in (1, 2))
    )
    assert load_metrics(run).loc[2, "actor/grad_norm"] == 2.0

    assert plot_main([f"A={run}", "--out", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "gradient_conflict.png").stat().st_size > 10_000
    assert cos in pd.read_csv(tmp_path / "plots" / "metrics.csv").columns
    # the held-out panel finds verl's per-data-source validation metric by pattern
    (run / "train.log").unlink()
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    frame = load_metrics(run)
    assert panel_key(frame, TRAINING_PANELS[-1]) == "val-core/task/acc/mean@1"
    assert plot_main([f"A={run}", "--out", str(tmp_path / "plots")]) == 0
    assert pd.read_csv(tmp_path / "plots" / "metrics.csv").dropna(subset=["val-core/task/acc/mean@1"]).shape[0] == 3


def test_a_run_started_with_a_preset_dir_composes_again(tmp_path):
    """A run launched with ``--config-dir=configs +experiment=paper`` (the recipes): its overrides compose again
    from the .hydra files hydra wrote (the config dir is not an override; hydra.yaml records it)."""
    import yaml

    from dagrpo_verl.conflict.meter import _run_overrides
    from dagrpo_verl.main import compose_config

    configs = pathlib.Path(__file__).resolve().parent.parent / "configs"
    hydra_dir = tmp_path / "outputs" / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(["+experiment=paper", "data.train_batch_size=3"]))
    sources = [{"path": "hydra.conf", "schema": "pkg", "provider": "hydra"},
               {"path": str(configs), "schema": "file", "provider": "command-line"}]  # fmt: skip
    (hydra_dir / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"config_sources": sources}}}))
    overrides = _run_overrides(tmp_path)
    assert overrides[0] == f"--config-dir={configs}"
    config = compose_config(overrides)
    assert config.data.train_batch_size == 3 and config.actor_rollout_ref.rollout.n == 8  # the preset's G = 8
