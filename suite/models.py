"""Models (flows or any generative model with an exact density) by name or by a user's factory.

A model spec is a registered reference model (a name in `reference.flows.REGISTRY`: affine,
spline, hybrid, cnf, cnf-equivariant for scalar fields; u1-equivariant, u1-cnf for U(1) links;
sun-equivariant, sun-cnf for SU(N) links; sphere-equivariant for O(3) spins; cpn-equivariant for CP(N−1) fields), or
a user's factory ``package.module:function`` or ``path/to/file.py:function``; the factory is
called as ``function(theory, **hparams)`` and must return a `torch.nn.Module` with
``sample(n) -> (x, log_q)`` (x of shape (n, *theory.field.shape), log_q of shape (n,)) and, for
the objectives that need it, ``log_prob(x) -> (n,)``.

A reference model's hyperparameters are typed and bounded (its schema in the registry);
`check_model_spec` checks a spec and its hyperparameters when a study is loaded, without a theory
and without importing a user's file; `build_model` checks them again and builds. Every mistake is a
one-line `UsageError`.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import torch

from suite.errors import UsageError


def _split_factory_spec(spec) -> tuple[str, str]:
    """(target, function) of a user's ``module:function`` / ``file.py:function``; UsageError if malformed."""
    if not isinstance(spec, str):
        raise UsageError(f"model {spec!r}: expected a registered name, module:function or file.py:function")
    target, _, name = spec.rpartition(":")
    if not target or not name.isidentifier() or not (
            target.endswith(".py") or all(part.isidentifier() for part in target.split("."))):
        from reference.flows import REGISTRY

        raise UsageError(f"model {spec!r}: expected a registered name ({', '.join(REGISTRY)}), "
                         "module:function or file.py:function")
    return target, name


def check_model_spec(model, hparams: dict | None = None) -> dict:
    """Check a model spec and its hyperparameters without a theory (at study load): a registered name's
    hyperparameters against its schema (returned normalised, `reference.flows.validate_hparams`); for a
    user's factory only the form of the spec (``module:function`` / ``file.py:function``; nothing is
    imported) and that ``hparams`` is a table (returned as given). One-line UsageError otherwise."""
    from reference.flows import is_reference_model, validate_hparams

    if hparams is None:
        hparams = {}
    if is_reference_model(model):
        return validate_hparams(model, hparams)
    _split_factory_spec(model)
    if not isinstance(hparams, dict):
        raise UsageError(f"model {model!r}: hyperparameters must be a table/object, got {type(hparams).__name__}")
    return dict(hparams)


def _load_factory(spec: str):
    target, name = _split_factory_spec(spec)
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise UsageError(f"model {spec!r}: no file {target!r}")
        module_spec = importlib.util.spec_from_file_location(f"lftbench_user_model_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as err:  # a user's file: report, do not crash with a traceback
            raise UsageError(f"model {spec!r}: importing {target} failed: {type(err).__name__}: {err}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise UsageError(f"model {spec!r}: cannot import module {target!r} ({err})") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise UsageError(f"model {spec!r}: {target} has no function {name!r}")
    return factory


def build_model(spec: str, theory, hparams: dict | None = None) -> torch.nn.Module:
    """The model named by ``spec`` for ``theory``, checked against the Model protocol. A reference
    model's hyperparameters are validated against its schema first (`check_model_spec`)."""
    from reference.flows import REGISTRY

    hparams = check_model_spec(spec, hparams)
    if spec in REGISTRY:
        try:
            model = REGISTRY[spec].factory(theory, **hparams)
        except (TypeError, ValueError) as err:
            raise UsageError(f"model {spec!r}: {err}") from None
    else:
        factory = _load_factory(spec)
        try:
            model = factory(theory, **hparams)
        except Exception as err:
            raise UsageError(f"model {spec!r}: the factory failed: {type(err).__name__}: {err}") from None
    check_model(model, theory, spec)
    return model


def check_model(model, theory, name: str = "model") -> None:
    """A one-line UsageError if the model breaks the protocol (checked on a batch of 2)."""
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{name}: the factory returned {type(model).__name__}, not a torch.nn.Module")
    if not callable(getattr(model, "sample", None)):
        raise UsageError(f"{name}: the model has no sample(n) method")
    with torch.no_grad():
        try:
            out = model.sample(2)
        except Exception as err:
            raise UsageError(f"{name}: sample(2) failed: {type(err).__name__}: {err}") from None
        check_samples(out, 2, theory, name)
        if callable(getattr(model, "log_prob", None)):
            x, log_q = out
            lp = model.log_prob(x)
            if tuple(lp.shape) != (2,):
                raise UsageError(f"{name}: log_prob(x) returned shape {tuple(lp.shape)}, expected (2,)")


def check_samples(out, n: int, theory, name: str = "model", finite: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``sample(n)``'s output: a pair (x, log_q) of the right shapes, with finite log_q
    (``finite=False`` skips that check, which waits for the device; see `check_finite_log_q`)."""
    if not (isinstance(out, tuple) and len(out) == 2 and all(torch.is_tensor(t) for t in out)):
        raise UsageError(f"{name}: sample(n) must return a pair of tensors (x, log_q)")
    x, log_q = out
    want = (n, *theory.field.shape)
    if tuple(x.shape) != want:
        raise UsageError(f"{name}: sample({n}) returned x of shape {tuple(x.shape)}, expected {want}")
    if x.is_complex() != theory.field.is_complex:
        kind = "complex" if theory.field.is_complex else "real"
        raise UsageError(f"{name}: sample({n}) returned x of dtype {x.dtype}, but the field is {kind}")
    if tuple(log_q.shape) != (n,):
        raise UsageError(f"{name}: sample({n}) returned log_q of shape {tuple(log_q.shape)}, expected ({n},)")
    if finite:
        check_finite_log_q(log_q, n, name)
    return x, log_q


def check_finite_log_q(log_q: torch.Tensor, n: int, name: str = "model") -> None:
    """A one-line UsageError if any log q drawn by ``sample(n)`` is non-finite (a host-device sync)."""
    if not torch.isfinite(log_q).all():
        raise UsageError(f"{name}: sample({n}) returned non-finite log_q")

