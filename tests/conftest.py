"""Shared test set-up."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Test tensors are small: intra-op threads only add overhead, and on a shared 2-core machine
    OpenMP's spinning workers can stall a process badly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
