"""Shared test set-up."""

import pandas as pd
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


def markdown_tables(lines, every: bool = False):
    """The Markdown tables of a section by heading, as DataFrames of strings: the first table under
    each heading, or (``every``) the list of all of them."""
    found, heading = {}, None
    lines = "\n".join(lines).splitlines()
    for i, line in enumerate(lines):
        if line.startswith("## "):
            heading = line
        elif line.startswith("|") and not lines[i - 1].startswith("|"):
            body = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                body.append([c.strip() for c in row.strip("|").split("|")])
            found.setdefault(heading, []).append(
                pd.DataFrame(body, columns=[c.strip() for c in line.strip("|").split("|")]))
    return found if every else {heading: tables[0] for heading, tables in found.items()}
