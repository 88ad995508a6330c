"""Geometry tests run torch on one thread: on a machine shared with other jobs, two spinning
threads per process cost far more than they gain on these small tensors."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
