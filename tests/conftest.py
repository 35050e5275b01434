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


def result_row(folder=None, **fields):
    """A `ResultRow` from the fields a test cares about; the others get neutral values."""
    from suite.harness.rows import ResultRow

    lattice = tuple(fields.pop("lattice", (8, 8)))
    defaults = {"run_id": "run", "entry": "phi4/free/L8", "theory": "phi4", "lattice": lattice,
                "volume": fields.pop("volume", lattice[0] * lattice[-1]), "params": {}, "sampler": {"name": "hmc"},
                "seed": 0, "device": "cpu", "device_name": "test CPU", "dtype": "float64", "suite_version": "test",
                "catalogue_version": 2}
    return ResultRow(**{**defaults, **fields}, folder=folder)
