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
"""hf_cpu rollout server (dagrpo_verl.cpu.rollout.HFCPUServer), driven directly without Ray."""

import asyncio

import pytest
import torch
from transformers import AutoModelForCausalLM
from verl.workers.config import HFModelConfig, RolloutConfig

from dagrpo_verl.cpu.models import build_tiny_qwen2
from dagrpo_verl.cpu.rollout import HFCPUServer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny") / "model", hidden_size=32, num_layers=1)


@pytest.fixture
def server(model_dir):
    config = RolloutConfig(name="hf_cpu", prompt_length=16, response_length=8, dtype="float32")
    return HFCPUServer(config, HFModelConfig(path=str(model_dir)))


PROMPTS = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14], [15, 16, 17, 18]]


def _generate_all(server, prompts, **sampling):
    """Send the prompts concurrently (as verl's agent loops do) and return the outputs."""

    async def run():
        return await asyncio.gather(
            *[
                server.generate(prompt_ids=p, sampling_params=dict(sampling), request_id=str(i))
                for i, p in enumerate(prompts)
            ]
        )

    return asyncio.run(run())


def _reference_log_probs(model, prompt, response, temperature):
    """log p(response | prompt) per token, from one unpadded forward pass."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : -1] / temperature
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(response)[:, None]).squeeze(-1)


def test_batched_sampling_log_probs_match_unpadded_forward(server, model_dir):
    torch.manual_seed(0)
    outputs = _generate_all(server, PROMPTS, temperature=0.7, top_p=0.9, top_k=-1, logprobs=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    for prompt, out in zip(PROMPTS, outputs, strict=True):
        assert 1 <= len(out.token_ids) <= 8 and out.stop_reason == "completed"
        assert len(out.log_probs) == len(out.token_ids)
        expected = _reference_log_probs(model, prompt, out.token_ids, 0.7)
        torch.testing.assert_close(torch.tensor(out.log_probs), expected, atol=1e-4, rtol=1e-4)


def test_greedy_matches_single_sequence_generate(server, model_dir):
    outputs = _generate_all(server, PROMPTS, temperature=0, max_tokens=5)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    for prompt, out in zip(PROMPTS, outputs, strict=True):
        ref = model.generate(
            torch.tensor([prompt]), max_new_tokens=5, do_sample=False, eos_token_id=server.eos_token_ids
        )
        assert out.token_ids == ref[0, len(prompt) :].tolist()[: len(out.token_ids)]
        assert out.log_probs is None


def test_stops_at_eos_and_ignore_eos(server):
    (first,) = _generate_all(server, PROMPTS[:1], temperature=0)
    server.eos_token_ids = [first.token_ids[0]]
    (stopped,) = _generate_all(server, PROMPTS[:1], temperature=0)
    assert stopped.token_ids == [first.token_ids[0]]  # the eos token is part of the response
    (ignored,) = _generate_all(server, PROMPTS[:1], temperature=0, ignore_eos=True, max_tokens=6)
    assert len(ignored.token_ids) == 6


def test_update_weights_loads_trainer_weights(server, model_dir, tmp_path):
    other = build_tiny_qwen2(tmp_path / "other", hidden_size=32, num_layers=1, seed=1)
    new = AutoModelForCausalLM.from_pretrained(other, dtype=torch.float32)
    named = list(new.state_dict().items())
    asyncio.run(server.update_weights(named, global_steps=3))
    for name, tensor in named:
        torch.testing.assert_close(server.model.state_dict()[name], tensor)
    (out,) = _generate_all(server, PROMPTS[:1], temperature=0)
    assert out.extra_fields["global_steps"] == 3
    with pytest.raises(KeyError, match="not.a.weight"):
        asyncio.run(server.update_weights([("not.a.weight", torch.zeros(1))], global_steps=4))


def test_multimodal_requests_are_rejected(server):
    with pytest.raises(NotImplementedError, match="text-only"):
        asyncio.run(server.generate(prompt_ids=[1], sampling_params={}, request_id="x", image_data=[object()]))
