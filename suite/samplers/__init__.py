"""The sampler registry: every sampler is a plugin module here registering a `Sampler`.

``hmc`` (Hybrid Monte Carlo), ``flow`` (a trained model's independent samples, reweighted),
``flow-mh`` (an independence Metropolis chain with the model as proposal), ``flow-pmmh`` (its
pseudo-marginal form with a joint model of links and pseudofermions), ``cluster`` (Wolff's
single-cluster algorithm, O(N) models only), ``ais`` (annealed importance sampling from the
prior), ``flow-ais`` (a trained flow corrected by AIS in its latent space), ``snf`` (a stochastic
normalizing flow: AIS with trained flow layers), ``nets`` (annealed Langevin dynamics with a learned
drift and exact discrete-time weights) and ``correlated`` (differences between two couplings from
one HMC ensemble mapped by a trained flow) ship with the suite. A new sampler is one module that
subclasses `Sampler`, declares its
spec dataclass and calls
`register`; the CLI options, the study schema, report tables and ``compare`` follow from it.

A sampler spec in a study or row is a dict ``{"name": ..., option: value, ...}``; `parse_spec`
turns it into ``(plugin, typed spec)`` and `spec_dict` back into the full dict with defaults.
Outside this registry no code compares a sampler's name to a string.

Importing this package imports no torch (the CLI derives its options from it).
"""

from __future__ import annotations

import importlib

from suite.errors import UsageError
from suite.samplers import spec as _spec
from suite.samplers.base import RunContext, Sampler

SHIPPED = ("suite.samplers.hmc", "suite.samplers.flow", "suite.samplers.cluster", "suite.samplers.ais",
           "suite.samplers.flow_ais", "suite.samplers.snf", "suite.samplers.correlated", "suite.samplers.nets")
_REGISTRY: dict[str, Sampler] = {}


def register(plugin: Sampler) -> Sampler:
    """Add a sampler plugin (an instance); a later registration under the same name replaces it."""
    if not isinstance(plugin, Sampler):
        raise TypeError(f"a sampler plugin must be a Sampler instance, got {type(plugin).__name__}")
    _REGISTRY[plugin.name] = plugin
    return plugin


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def _load_shipped() -> None:
    for module in SHIPPED:
        importlib.import_module(module)


def samplers() -> dict[str, Sampler]:
    """The registered plugins by name, shipped ones first."""
    _load_shipped()
    return dict(_REGISTRY)


def get_sampler(name) -> Sampler:
    """The plugin of a sampler name, or a one-line UsageError listing the known ones."""
    known = samplers()
    if name not in known:
        raise UsageError(f"unknown sampler {name!r}; available: {', '.join(known)}")
    return known[name]


def parse_spec(raw: dict) -> tuple[Sampler, object]:
    """(plugin, typed spec) of a spec dict ``{"name": ..., ...}``; a one-line UsageError for anything wrong."""
    if not isinstance(raw, dict):
        raise UsageError(f"a sampler must be a table with a 'name', got {raw!r}")
    raw = dict(raw)
    plugin = get_sampler(raw.pop("name", None))
    return plugin, _spec.parse(plugin.spec, raw, f"sampler {plugin.name!r}: ")


def spec_dict(raw: dict) -> dict:
    """The full, validated spec dict (defaults filled in) of a spec dict: what tasks and rows hold."""
    plugin, spec = parse_spec(raw)
    return {"name": plugin.name, **_spec.as_dict(spec)}


def plugin_of(spec: dict) -> Sampler:
    """The plugin of a (validated) spec dict, e.g. a row's ``sampler``."""
    return get_sampler(spec.get("name"))


def run_sampler(spec: dict, theory, *, seed: int, dtype, run_dir, device: str = "cpu", resume: bool = False,
                progress=None):
    """Run a spec dict on a theory outside a study (benchmarks, tests): (Chain, training summary).

    Artifacts go to ``run_dir``; samplers that need the catalogue entry (pretraining) need the
    harness (`suite.harness.runner.run_task`)."""
    from pathlib import Path

    plugin, typed = parse_spec(spec)
    context = RunContext(entry=None, seed=seed, device=device, dtype=dtype, run_dir=Path(run_dir), out=Path(run_dir),
                         catalogue_version=0, resume=resume, progress=progress)
    return plugin.run(typed, theory, context)


__all__ = ["RunContext", "Sampler", "get_sampler", "parse_spec", "plugin_of", "register", "run_sampler", "samplers", "spec_dict",
           "unregister"]
