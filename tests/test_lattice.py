"""Lattice helpers: the in-place shifted add against the rolled copy."""

import pytest
import torch

from suite.lattice import add_shifted_, shift


@pytest.mark.parametrize("shape, first", [((3, 5, 4), 1), ((2, 2, 1, 6), 2), ((2, 3, 2, 5), 1)])
@pytest.mark.parametrize("step", [1, -1])
def test_add_shifted_is_adding_the_shifted_copy(shape, first, step):
    generator = torch.Generator().manual_seed(0)
    x, out = torch.randn(shape, generator=generator, dtype=torch.float64), torch.randn(shape, generator=generator,
                                                                                         dtype=torch.float64)
    for mu in range(len(shape) - first):
        expected = out + 0.7 * shift(x, mu, step, first=first)
        result = out.clone()
        assert add_shifted_(result, x, mu, step, 0.7, first=first) is result
        torch.testing.assert_close(result, expected, rtol=1e-15, atol=1e-15)


def test_add_shifted_refuses_longer_steps():
    with pytest.raises(ValueError, match="one site"):
        add_shifted_(torch.zeros(1, 4), torch.zeros(1, 4), 0, 2)


@pytest.mark.parametrize("step", [1, -1])
def test_add_shifted_traced_by_torch_compile_adds_the_roll(step):
    """Under torch.compile (traced without a C++ compiler) it takes the rolled branch: same result."""
    generator = torch.Generator().manual_seed(1)
    x, out = torch.randn(2, 4, 6, generator=generator, dtype=torch.float64), torch.randn(2, 4, 6, generator=generator,
                                                                                           dtype=torch.float64)

    def both_axes(out, x):
        return add_shifted_(add_shifted_(out.clone(), x, 0, step, 0.3), x, 1, step, -1.1)

    torch._dynamo.reset()
    traced = torch.compile(both_axes, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(traced(out, x), both_axes(out, x), rtol=1e-15, atol=1e-15)
