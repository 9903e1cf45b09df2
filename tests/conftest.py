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
"""Shared fixtures: local Ray and a TransferQueue on it, per test module (each module starts and stops its
own, so no test sees another module's actors or stored samples)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def ray_local():
    """Local Ray (2 CPUs, no dashboard) for the module, started here unless one is running already."""
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def transfer_queue(ray_local):
    """TransferQueue (``tq.init``) on local Ray with a small in-memory SimpleStorage, as verl's v1 trainer
    starts it; closed after the module."""
    tq = pytest.importorskip("transfer_queue")
    from omegaconf import OmegaConf

    # TQ 0.1.11's controller and every storage unit hold 1 CPU each: one unit fits next to it on 2 CPUs
    storage = {"total_storage_size": 4000, "num_data_storage_units": 1}
    tq.init(OmegaConf.create({"backend": {"storage_backend": "SimpleStorage", "SimpleStorage": storage}}))
    yield tq
    tq.close()
