"""Sampler specs: a name plus options, validated, and the function that turns one into a Chain.

A spec is a dict such as ``{"name": "hmc", "chains": 16, "n_therm": 500, "n_traj": 1000}``.
Samplers: ``hmc`` now; ``flow`` and ``flow-mh`` join when the reference flows do.
"""

from __future__ import annotations

from suite.errors import UsageError

HMC_DEFAULTS = {
    "chains": 16,
    "n_therm": 500,
    "n_traj": 1000,
    "integrator": "leapfrog",
    "n_steps": 10,
    "trajectory_length": 1.0,
    "target_acceptance": 0.8,
    "adapt": True,
}
SAMPLER_DEFAULTS = {"hmc": HMC_DEFAULTS}
RUN_LENGTHS = {"chains": 1, "n_therm": 0, "n_traj": 1}   # option -> smallest allowed value


def _has_type_of(value, default) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def normalise_spec(spec: dict) -> dict:
    """The full spec with defaults filled in; a UsageError for an unknown sampler, option or bad number."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in SAMPLER_DEFAULTS:
        raise UsageError(f"unknown sampler {name!r}; available: {', '.join(SAMPLER_DEFAULTS)}")
    defaults = SAMPLER_DEFAULTS[name]
    unknown = sorted(set(spec) - set(defaults))
    if unknown:
        raise UsageError(f"sampler {name!r} has no option {unknown[0]!r}; options: {', '.join(defaults)}")
    full = {"name": name, **defaults, **spec}
    for key, default in defaults.items():
        if not _has_type_of(full[key], default):
            raise UsageError(f"sampler option {key!r} must be {type(default).__name__}, got {full[key]!r}")
    for key, smallest in RUN_LENGTHS.items():
        if full[key] < smallest:
            raise UsageError(f"sampler option {key!r} must be >= {smallest}, got {full[key]}")
    _hmc_settings(full)
    return full


def _hmc_settings(spec: dict):
    from reference.hmc import HMCSettings

    try:
        return HMCSettings(**{k: spec[k] for k in ("trajectory_length", "n_steps", "integrator", "adapt",
                                                   "target_acceptance")})
    except ValueError as err:
        raise UsageError(f"sampler option: {err}") from None


def run_sampler(spec: dict, theory, *, seed: int, device: str, dtype, progress=None):
    """Run a normalised spec on a theory; returns the Chain."""
    if spec["name"] == "hmc":
        from reference.hmc import run_hmc

        return run_hmc(theory, chains=spec["chains"], n_therm=spec["n_therm"], n_traj=spec["n_traj"], seed=seed,
                       settings=_hmc_settings(spec), dtype=dtype, device=device, progress=progress)
    raise UsageError(f"unknown sampler {spec['name']!r}")
