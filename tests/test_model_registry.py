"""The model registry: typed hyperparameter schemas that match their factories, one-line errors for bad
hyperparameters (with or without a theory), priors from the field space, and the leaderboard's reference flag."""

import inspect
import math

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import result_row

from reference.flows import FIELDS, REGISTRY, build, defaults, hparams, is_reference_model, validate_hparams
from reference.flows.priors import FieldPrior
from reference.flows.schema import Bool, Choice, Int, Ints, Real, schema_of
from suite.errors import UsageError
from suite.fields import SUN, EuclideanSpace, SphereSpace, TorusSpace
from suite.models import build_model, check_model_spec
from suite.theories import build_theory
from suite.theories.cpn import CPNModel
from suite.theories.on import ONModel
from suite.theories.phi4 import Phi4
from suite.theories.sun import SUNGauge
from suite.theories.sun_matrix import SUNMatrices
from suite.theories.u1 import U1

# small hyperparameters for every registered model (a new model must add its own here)
SMALL = {"affine": {"n_layers": 2}, "spline": {"n_layers": 2}, "hybrid": {"n_affine": 2, "n_spline": 2},
         "u1-equivariant": {"n_layers": 2}, "u1-plaquette": {"n_layers": 2, "n_sink": 3}, "cnf": {"n_steps": 2}, "cnf-equivariant": {"n_steps": 2},
         "u1-cnf": {"n_steps": 2}, "sun-equivariant": {"n_layers": 2}, "sun-cnf": {"n_steps": 2}, "sun-spectral": {"n_layers": 2},
         "schwinger-pf-flow": {"n_layers": 2},
         "sphere-equivariant": {"n_layers": 2}, "cpn-equivariant": {"n_layers": 2}}
THEORIES = {"scalar": lambda: Phi4.from_albergo((4, 4), m2=-4.0, lam=8.0), "u1": lambda: U1((4, 4), beta=1.0),
            "sun": lambda: SUNGauge((4, 4), 2, beta=2.0), "sun-matrix": lambda: SUNMatrices(3, 3, beta=4.0), "on": lambda: ONModel((4, 4), beta=1.0),
            "cpn": lambda: CPNModel((4, 4), beta=1.0, n=3),
            "schwinger": lambda: build_theory("schwinger", (4, 4), "pseudofermion", {"beta": 1.0, "kappa": 0.25})}
MODELS = list(REGISTRY)


def small_flow(name, seed=0):
    """A small float32 model with randomised parameters for its field's theory."""
    theory = THEORIES[REGISTRY[name].field]()
    torch.manual_seed(seed)
    flow = build(name, theory, **SMALL[name])
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return flow, theory


def test_every_registered_model_has_small_hparams_and_a_field():
    assert set(SMALL) == set(REGISTRY)
    for name, entry in REGISTRY.items():
        assert entry.name == name and entry.field in FIELDS
        assert entry.description and "\n" not in entry.description


@pytest.mark.parametrize("name", MODELS)
def test_schema_agrees_with_the_factory_signature(name):
    entry = REGISTRY[name]
    params = [p for p in inspect.signature(entry.factory).parameters.values() if p.name != "theory"]
    assert hparams(name) == entry.schema.names == tuple(p.name for p in params)
    assert defaults(name) == {p.name: p.default for p in params}
    assert validate_hparams(name, defaults(name)) == defaults(name)  # every default is within its bounds


def test_schema_of_rejects_a_drifted_schema():
    def factory(theory, n_layers=4, z2=False):
        return None

    with pytest.raises(TypeError, match="kinds for"):
        schema_of("m", factory, n_layers=Int(min=1))
    with pytest.raises(TypeError, match="default"):
        schema_of("m", factory, n_layers=Int(min=1, default=8), z2=Bool())
    with pytest.raises(TypeError, match="invalid"):
        schema_of("m", factory, n_layers=Int(min=5), z2=Bool())

    def no_default(theory, n_layers):
        return None

    with pytest.raises(TypeError, match="no default"):
        schema_of("m", no_default, n_layers=Int(min=1))


BAD = [("affine", {"z2": "false"}, "z2", "true or false"),
       ("affine", {"z2": 0}, "z2", "true or false"),
       ("spline", {"bound": math.nan}, "bound", "finite number > 0"),
       ("spline", {"bound": math.inf}, "bound", "finite number > 0"),
       ("spline", {"bound": -1}, "bound", "finite number > 0"),
       ("hybrid", {"bound": 0.0}, "bound", "finite number > 0"),
       ("spline", {"bound": "5"}, "bound", "finite number"),
       ("affine", {"hidden": [-1]}, "hidden", "each >= 1"),
       ("affine", {"hidden": []}, "hidden", "non-empty list"),
       ("cnf", {"hidden": 16}, "hidden", "list of integers"),
       ("affine", {"hidden": [8, 2.5]}, "hidden", "list of integers"),
       ("affine", {"n_layers": 0}, "n_layers", "integer >= 1"),
       ("affine", {"n_layers": 2.5}, "n_layers", "integer >= 1"),
       ("affine", {"n_layers": 2.0}, "n_layers", "integer >= 1"),
       ("affine", {"n_layers": True}, "n_layers", "integer >= 1"),
       ("hybrid", {"n_spline": 0}, "n_spline", "integer >= 1"),
       ("affine", {"kernel_size": 2}, "kernel_size", "odd integer >= 1"),
       ("spline", {"n_bins": 1}, "n_bins", "integer >= 2 and <= 999"),
       ("affine", {"mask": "diagonal"}, "mask", "one of checkerboard, rows, columns, stripes"),
       ("u1-equivariant", {"transform": "glow"}, "transform", "one of ncp, spline"),
       ("u1-equivariant", {"loops": "rectangle"}, "loops", "one of plaquette, plaquette+rectangle"),
       ("u1-plaquette", {"n_sink": 0}, "n_sink", "integer >= 1"),
       ("cnf", {"method": "euler"}, "method", "one of rk4, dopri5"),
       ("cnf", {"divergence": "trace"}, "divergence", "one of exact, hutchinson"),
       ("cnf-equivariant", {"n_freq": -1}, "n_freq", "integer >= 0"),
       ("cnf-equivariant", {"rtol": 0}, "rtol", "finite number > 0"),
       ("u1-cnf", {"adjoint": "true"}, "adjoint", "true or false"),
       ("u1-cnf", {"n_harmonics": 0}, "n_harmonics", "integer >= 1"),
       ("sun-equivariant", {"n_harmonics": 17}, "n_harmonics", "integer >= 1 and <= 16"),
       ("sun-equivariant", {"loops": "rectangle"}, "loops", "one of plaquette, plaquette+rectangle"),
       ("sun-cnf", {"method": "rk4"}, "method", "one of cf3, cf4"),
       ("sun-cnf", {"loops": "chair"}, "loops", "one of plaquette, plaquette+rectangle, plaquette+rectangle+chair"),
       ("sphere-equivariant", {"n_bins": 0}, "n_bins", "integer >= 1 and <= 999"),
       ("cpn-equivariant", {"kernel_size": 4}, "kernel_size", "odd integer >= 1"),
       ("affine", {"n_layer": 4}, "n_layer", "valid: n_layers, hidden, kernel_size, z2, mask")]


@pytest.mark.parametrize("name, options, hparam, allowed", BAD, ids=[f"{n}-{h}={o[h]!r}" for n, o, h, _ in BAD])
def test_bad_hparams_give_one_line_errors(name, options, hparam, allowed):
    theory = THEORIES[REGISTRY[name].field]()
    calls = [lambda: validate_hparams(name, options),  # at study load: no theory
             lambda: check_model_spec(name, options),
             lambda: build(name, None, **options),  # rejected before the factory reads the theory
             lambda: build(name, theory, **options),
             lambda: build_model(name, theory, options)]
    for call in calls:
        with pytest.raises(UsageError) as error:
            call()
        message = str(error.value)
        assert "\n" not in message and message.count(f"model {name!r}") == 1
        assert hparam in message and allowed in message


def test_unknown_model_names():
    for call in (lambda: validate_hparams("glow", {}), lambda: build("glow", None), lambda: hparams("glow")):
        with pytest.raises(UsageError, match="unknown reference model 'glow'; expected one of affine, spline"):
            call()
    with pytest.raises(UsageError, match="table"):
        validate_hparams("affine", [("n_layers", 2)])


def test_valid_hparams_are_normalised_and_build():
    assert validate_hparams("spline", {"bound": 3, "hidden": [4, 4], "z2": True}) == {
        "bound": 3.0, "hidden": (4, 4), "z2": True}
    assert isinstance(validate_hparams("cnf", {"rtol": 1})["rtol"], float)
    assert validate_hparams("affine", {}) == {}  # defaults are not filled in
    flow = build("spline", THEORIES["scalar"](), n_layers=2, bound=3, hidden=[4, 4], z2=True, kernel_size=1)
    assert all(layer.map.bound == 3.0 for layer in flow.transform.bijections)
    x, log_q = flow.sample(2)
    assert x.shape == (2, 4, 4) and torch.isfinite(log_q).all()
    theory = THEORIES["u1"]()
    model = build_model("u1-equivariant", theory, {"n_layers": 2, "transform": "spline", "n_bins": 1})
    assert model.sample(2)[0].shape == (2, 2, 4, 4)


def test_registry_entries_build_when_called():
    flow = REGISTRY["affine"](THEORIES["scalar"](), n_layers=2)
    assert len(flow.transform.bijections) == 2
    with pytest.raises(UsageError, match="z2"):
        REGISTRY["affine"](THEORIES["scalar"](), z2="false")


def test_check_model_spec_of_user_factories_checks_only_the_form(tmp_path):
    # nothing is imported at load: a missing file or module is only found when the model is built
    assert check_model_spec("nowhere/model.py:build", {"width": "anything"}) == {"width": "anything"}
    assert check_model_spec("some_package.models:build") == {}
    for spec in ("nonsense", "module:", ":build", "a b:build", "pkg.mod:not-a-name", None):
        with pytest.raises(UsageError, match="expected a registered name") as error:
            check_model_spec(spec, {})
        assert "\n" not in str(error.value)
    with pytest.raises(UsageError, match="table"):
        check_model_spec("pkg.mod:build", [1, 2])
    with pytest.raises(UsageError, match="no file"):
        build_model(str(tmp_path / "model.py") + ":build", THEORIES["scalar"]())


def test_is_reference_model():
    assert all(is_reference_model(name) for name in REGISTRY)
    assert not any(is_reference_model(name) for name in ("glow", "mine.py:build", "pkg.mod:build", None, ""))


@pytest.mark.parametrize("name", MODELS)
def test_priors_come_from_the_field_space_and_hold_no_state(name):
    flow, theory = small_flow(name)
    assert isinstance(flow.prior, FieldPrior) and flow.prior.field is theory.field
    assert not isinstance(flow.prior, torch.nn.Module)
    keys = list(flow.state_dict())
    transform = [f"transform.{k}" for k in flow.transform.state_dict()]
    assert transform and keys[:len(transform)] == transform and not any(k.startswith("prior.") for k in keys)


def old_prior(field, n, generator):
    """The priors as the flows drew them before they came from the field space (float32)."""
    shape = (n, *field.shape)
    if isinstance(field, SUN):  # Haar SU(N), new with the SU(N) flows: the field space's own draw
        return field.prior_sample(n, generator=generator, dtype=torch.float32), torch.zeros(n)
    if isinstance(field, SphereSpace):  # uniform on the spheres, new with the sphere flows: the field space's own draw
        z = field.prior_sample(n, generator=generator, dtype=torch.float32)
        return z, field.prior_log_prob(z)
    if isinstance(field, TorusSpace):  # the former HaarPrior
        z = math.pi - 2 * math.pi * torch.rand(shape, generator=generator, dtype=torch.float32)
        return z, z.new_full((n,), -math.prod(field.shape) * math.log(2 * math.pi))
    z = torch.randn(shape, generator=generator, dtype=torch.float32)  # the former NormalPrior
    return z, -0.5 * z.pow(2).flatten(1).sum(1) - 0.5 * math.prod(field.shape) * math.log(2 * math.pi)


@pytest.mark.parametrize("name", MODELS)
def test_flow_sample_draws_the_same_z_as_before(name):
    flow, theory = small_flow(name)
    with torch.no_grad():
        x, log_q = flow.sample(3, generator=torch.Generator().manual_seed(5))
        z, log_p = old_prior(theory.field, 3, torch.Generator().manual_seed(5))
        x_old, ladj = flow.transform(z)
    assert x.dtype == theory.field.field_dtype(torch.float32)
    assert torch.equal(x, x_old) and torch.equal(log_q, log_p - ladj)  # bit for bit
    assert not torch.equal(x, z)  # the randomised transform is not the identity


def test_field_space_prior_log_prob():
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    normal = torch.distributions.Normal(0.0, 1.0).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(EuclideanSpace((3, 4)).prior_log_prob(x), normal, atol=1e-12, rtol=0)
    haar = TorusSpace((3, 4)).prior_log_prob(x)
    assert haar.shape == (5,) and haar.dtype == torch.float64
    assert torch.allclose(haar, torch.full((5,), -12 * math.log(2 * math.pi), dtype=torch.float64))


def test_a_flow_for_another_field_is_rejected():
    with pytest.raises(ValueError, match="needs a EuclideanSpace"):
        build("affine", THEORIES["u1"]())
    with pytest.raises(UsageError, match="model 'cnf'.*needs a EuclideanSpace"):
        build_model("cnf", THEORIES["u1"](), {"n_steps": 2})


def test_schema_kinds():
    assert Real(min=0.0).check(0, "m", "r") == 0.0
    with pytest.raises(UsageError, match="> 0"):
        Real(min=0.0, min_open=True).check(0.0, "m", "r")
    assert Real(max=1.0, max_open=True).accepts(0.5) and not Real(max=1.0, max_open=True).accepts(1.0)
    assert not Real().accepts(True) and not Real().accepts(-math.inf)
    assert Int(min=1, max=3).accepts(np.int64(2)) and not Int(min=1, max=3).accepts(4)
    assert Ints(min=1, allow_empty=True).check([], "m", "h") == ()
    assert Choice(choices=("a", "b")).accepts("a") and not Choice(choices=("a", "b")).accepts(["a"])


def _row(folder, model, ess):
    run_id = f"flow-{model.replace(':', '_')}"
    (folder / "runs" / run_id).mkdir(parents=True)
    steps = np.arange(1, 101)
    pd.DataFrame({"step": steps, "loss": 0.0, "ess": 0.05, "seconds": steps * 0.1}).to_csv(
        folder / "runs" / run_id / "training.csv", index=False)
    est = {"value": 1.0, "error": 0.01, "tau_int": 0.5, "tau_int_error": 0.0, "seconds_per_independent_sample": 1e-3}
    return result_row(folder, run_id=run_id, entry="phi4/xi2/L8", theory="phi4",
                      sampler={"name": "flow", "model": model, "objective": "reverse-kl"}, seed=0,
                      metrics={"ess": {"value": ess, "error": 0.1 * ess, "n_samples": 1000}},
                      observables={"chi2": est}, training={"steps": 100, "seconds": 10.0},
                      artifacts={"training": f"runs/{run_id}/training.csv"})


def test_compare_marks_every_registered_model_as_reference(tmp_path):
    from suite.compare import leaderboard

    rows = [_row(tmp_path, name, 0.1 + 0.01 * i) for i, name in enumerate([*REGISTRY, "mine.py:build"])]
    board = leaderboard(rows, target_ess=0.5, n_independent=1000).set_index("contender")
    assert set(REGISTRY) <= set(board.index)
    assert all(bool(board.loc[name, "reference"]) for name in REGISTRY)
    assert not bool(board.loc["mine.py:build", "reference"])
