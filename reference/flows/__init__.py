"""The reference models: normalizing flows for scalar fields (B, *lattice), U(1) links (B, 2, L0, L1),
SU(N) links (B, d, *lattice, N, N) (d = 2, 3, 4), independent SU(N) matrices (B, K, N, N), O(3) spins (B, *lattice, 3) and CP(N−1) fields
(B, *lattice, N), and a joint model of U(1) links and pseudofermions.

``REGISTRY`` is the one list of reference models: name -> `ModelEntry` (its factory
``factory(theory, **hparams) -> Flow``, the typed `Schema` of its hyperparameters with the
factory's defaults, the field it applies to, ``"scalar"``, ``"u1"``, ``"sun"``, ``"sun-matrix"``, ``"on"``, ``"cpn"`` or
``"schwinger"``, and a one-line description).
``build("affine", theory, n_layers=8)`` checks the hyperparameters against the schema, then calls
the factory; ``validate_hparams(name, hparams)`` checks them without a theory (when a study is
loaded). A bad name or hyperparameter (unknown, wrong type, out of bounds) is a one-line
`suite.errors.UsageError` (a ValueError) naming the model, the hyperparameter and the allowed values.

========================  ========  ==========================================================
model                     field     hyperparameters (default) and bounds
========================  ========  ==========================================================
``affine``                scalar    n_layers (16) ≥ 1, hidden ((8, 8)) each ≥ 1, kernel_size (3)
                                    odd ≥ 1, z2 (false), mask ("checkerboard"; rows, columns, stripes)
``spline``                scalar    n_layers (8) ≥ 1, n_bins (8) in [2, 999], bound (5.0) > 0,
                                    hidden, kernel_size, z2, mask as affine
``hybrid``                scalar    n_affine (8) ≥ 1, n_spline (2) ≥ 1, n_bins, bound, hidden,
                                    kernel_size, z2, mask as spline
``cnf``                   scalar    hidden ((16, 16)), kernel_size (3), n_time (5) ≥ 1, divergence
                                    ("exact", "hutchinson"), method ("rk4", "dopri5"), n_steps (20)
                                    ≥ 1, rtol, atol (1e-5) > 0, adjoint (false)
``cnf-equivariant``       scalar    n_freq (16) ≥ 0, n_time (5) ≥ 1, freq_max (5.0) ≥ 0, radius
                                    (0: the whole torus) ≥ 0, method, n_steps, rtol, atol, adjoint
                                    as cnf
``u1-equivariant``        u1        n_layers (16) ≥ 1, transform ("ncp", "spline"), n_mixture (6)
                                    ≥ 1, n_bins (8) in [1, 999], hidden ((8, 8)), kernel_size (3),
                                    loops ("plaquette", "plaquette+rectangle")
``u1-plaquette``          u1        n_layers (2) ≥ 1, transform ("spline"; "ncp"), n_mixture (6),
                                    n_bins (16), hidden ((8, 8)), kernel_size (3), n_sink (32) ≥ 1,
                                    sink_hidden ((32, 32)): plaquette couplings that carry each
                                    change to one sink plaquette, then K = min(n_sink, V − 1)
                                    autoregressive couplings of the global constraint
``u1-cnf``                u1        loops ("plaquette+rectangle"), n_harmonics (3) ≥ 1, n_time (5)
                                    ≥ 1, method, n_steps, rtol, atol, adjoint as cnf
``sun-equivariant``       sun       n_layers (16) ≥ 1, n_harmonics (4) in [1, 16], hidden ((8, 8)),
                                    kernel_size (3), loops ("plaquette", "plaquette+rectangle")
``sun-spectral``          sun-matrix n_layers (4) ≥ 1, n_harmonics (4) in [1, 16]: conjugation-
                                    equivariant spectral maps, one stack shared by the K matrices
``sun-cnf``               sun       loops ("plaquette+rectangle"; plaquette, plaquette+rectangle+chair),
                                    n_harmonics (3) ≥ 1, n_time (5) ≥ 1, method ("cf4"; "cf3"),
                                    n_steps (10) ≥ 1, adjoint (false); d = 2, 3, 4
``schwinger-pf-flow``     schwinger the hyperparameters of u1-equivariant, pf_order (2) ≥ 1, pf_hidden
                                    ((8,)) each ≥ 1: q(U) q(φ | U), φ = M[U] χ (`pseudofermions`)
``sphere-equivariant``    on        n_layers (8) ≥ 1, n_bins (8) in [1, 999], hidden ((16, 16)),
                                    kernel_size (3); O(3) spins, even extents
``cpn-equivariant``       cpn       n_layers (8) ≥ 1, n_bins (8) in [1, 999], hidden ((16, 16)),
                                    kernel_size (3); even extents
========================  ========  ==========================================================

Every flow is float32 when built (``.double()`` / ``.to(device)`` move it) and draws its prior from
the theory's field space (`reference.flows.priors`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reference.flows.continuous import DIVERGENCES, build_cnf, build_cnf_equivariant
from reference.flows.masks import KINDS as MASKS
from reference.flows.models import Flow, build_affine, build_hybrid, build_spline
from reference.flows.ode import METHODS
from reference.flows.pseudofermions import build_schwinger_pf_flow
from reference.flows.schema import Bool, Choice, Int, Ints, Real, Schema, schema_of
from reference.flows.sphere import build_cpn_equivariant, build_sphere_equivariant
from reference.flows.lie_ode import METHODS as LIE_METHODS
from reference.flows.sun import build_sun_equivariant
from reference.flows.sun_spectral import build_sun_spectral
from reference.flows.sun_continuous import LOOPS as SUN_CNF_LOOPS, build_sun_cnf
from reference.flows.u1 import LOOPS, TRANSFORMS, build_u1_equivariant
from reference.flows.u1_continuous import build_u1_cnf
from reference.flows.u1_plaquette import build_u1_plaquette
from suite.errors import UsageError

FIELDS = {"scalar": "real scalar fields (B, *lattice), prior N(0, 1)",
          "u1": "U(1) link angles (B, 2, L0, L1) in (−π, π], Haar prior",
          "sun": "SU(N) links (B, d, *lattice, N, N), complex, Haar prior",
          "sun-matrix": "independent SU(N) matrices (B, K, N, N), complex, Haar prior",
          "schwinger": "U(1) link angles (B, 2, L0, L1) of a theory with Wilson fermions (kappa), Haar prior, "
                       "and pseudofermions (B, L0, L1, 2) drawn given the links",
          "on": "O(3) spins (B, *lattice, 3), unit vectors, uniform prior on S²",
          "cpn": "CP(N−1) fields (B, *lattice, N), complex unit vectors modulo a phase, uniform prior"}


@dataclass(frozen=True)
class ModelEntry:
    """A registered reference model. Calling it builds the model (``entry(theory, **hparams)`` as `build`)."""

    name: str
    factory: Callable
    schema: Schema
    field: str
    description: str

    def __call__(self, theory, **hparams):
        return build(self.name, theory, **hparams)


def _register(name: str, factory, field: str, description: str, **kinds) -> ModelEntry:
    if field not in FIELDS:
        raise TypeError(f"model {name!r}: unknown field {field!r}; expected one of {', '.join(FIELDS)}")
    return ModelEntry(name, factory, schema_of(name, factory, **kinds), field, description)


_CONV = dict(hidden=Ints(min=1), kernel_size=Int(min=1, odd=True))
_COUPLING = dict(**_CONV, z2=Bool(), mask=Choice(choices=MASKS))
_SPLINE = dict(n_bins=Int(min=2, max=999), bound=Real(min=0.0, min_open=True))
_ODE = dict(method=Choice(choices=METHODS), n_steps=Int(min=1), rtol=Real(min=0.0, min_open=True),
            atol=Real(min=0.0, min_open=True), adjoint=Bool())

REGISTRY: dict[str, ModelEntry] = {e.name: e for e in [
    _register("affine", build_affine, "scalar",
              "RealNVP affine couplings with ConvNet conditioners (arXiv:2101.08176)",
              n_layers=Int(min=1), **_COUPLING),
    _register("spline", build_spline, "scalar",
              "rational-quadratic spline couplings on [−bound, bound], identity tails",
              n_layers=Int(min=1), **_SPLINE, **_COUPLING),
    _register("hybrid", build_hybrid, "scalar",
              "affine couplings, rescaling, spline couplings, rescaling (arXiv:2105.12481)",
              n_affine=Int(min=1), n_spline=Int(min=1), **_SPLINE, **_COUPLING),
    _register("u1-equivariant", build_u1_equivariant, "u1",
              "gauge-equivariant coupling flow for 2D U(1) (arXiv:2003.06413)",
              n_layers=Int(min=1), transform=Choice(choices=TRANSFORMS), n_mixture=Int(min=1),
              n_bins=Int(min=1, max=999), **_CONV, loops=Choice(choices=LOOPS)),
    _register("u1-plaquette", build_u1_plaquette, "u1",
              "plaquette couplings whose compensating link change is carried to one sink plaquette",
              n_layers=Int(min=1), transform=Choice(choices=TRANSFORMS), n_mixture=Int(min=1),
              n_bins=Int(min=1, max=999), **_CONV, n_sink=Int(min=1), sink_hidden=Ints(min=1)),
    _register("cnf", build_cnf, "scalar",
              "continuous flow with a time-conditioned ConvNet velocity",
              **_CONV, n_time=Int(min=1), divergence=Choice(choices=DIVERGENCES), **_ODE),
    _register("cnf-equivariant", build_cnf_equivariant, "scalar",
              "equivariant continuous flow of Gerdes et al. (arXiv:2207.00283)",
              n_freq=Int(min=0), n_time=Int(min=1), freq_max=Real(min=0.0), radius=Int(min=0), **_ODE),
    _register("u1-cnf", build_u1_cnf, "u1",
              "gauge-equivariant continuous flow for 2D U(1), Wilson-loop potential velocity",
              loops=Choice(choices=LOOPS), n_harmonics=Int(min=1), n_time=Int(min=1), **_ODE),
    _register("sun-equivariant", build_sun_equivariant, "sun",
              "gauge-equivariant plaquette couplings for SU(N) in d = 2, 3, 4, spectral maps (arXiv:2008.05456)",
              n_layers=Int(min=1), n_harmonics=Int(min=1, max=16), **_CONV, loops=Choice(choices=LOOPS)),
    _register("sun-spectral", build_sun_spectral, "sun-matrix",
              "conjugation-equivariant residual maps of the eigenphases of single SU(N) matrices (arXiv:2008.05456)",
              n_layers=Int(min=1), n_harmonics=Int(min=1, max=16)),
    _register("sun-cnf", build_sun_cnf, "sun",
              "gauge-equivariant continuous flow for SU(N) in d = 2-4, Wilson-loop potential, Lie-group integrator",
              loops=Choice(choices=SUN_CNF_LOOPS), n_harmonics=Int(min=1), n_time=Int(min=1),
              method=Choice(choices=LIE_METHODS), n_steps=Int(min=1), adjoint=Bool()),
    _register("schwinger-pf-flow", build_schwinger_pf_flow, "schwinger",
              "U(1) flow q(U) with a gauge-covariant pseudofermion map q(φ|U), φ = M[U]χ (arXiv:2207.08945)",
              n_layers=Int(min=1), transform=Choice(choices=TRANSFORMS), n_mixture=Int(min=1),
              n_bins=Int(min=1, max=999), **_CONV, loops=Choice(choices=LOOPS), pf_order=Int(min=1),
              pf_hidden=Ints(min=1)),
    _register("sphere-equivariant", build_sphere_equivariant, "on",
              "O(3)-equivariant checkerboard couplings, polar and azimuth splines in the neighbours' frame",
              n_layers=Int(min=1), n_bins=Int(min=1, max=999), **_CONV),
    _register("cpn-equivariant", build_cpn_equivariant, "cpn",
              "U(N)- and phase-equivariant checkerboard couplings, a spline of the distance to a frame point",
              n_layers=Int(min=1), n_bins=Int(min=1, max=999), **_CONV),
]}


def is_reference_model(name) -> bool:
    """Whether ``name`` is a registered reference model."""
    return isinstance(name, str) and name in REGISTRY


def _entry(name: str) -> ModelEntry:
    if not is_reference_model(name):
        raise UsageError(f"unknown reference model {name!r}; expected one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def hparams(name: str) -> tuple[str, ...]:
    """The hyperparameter names the model ``name`` accepts, in its factory's order."""
    return _entry(name).schema.names


def defaults(name: str) -> dict:
    """The hyperparameters of ``name`` with their defaults (the factory's)."""
    return _entry(name).schema.defaults()


def validate_hparams(name: str, hparams: dict) -> dict:
    """``hparams`` checked against the schema of ``name`` and normalised (integers given for reals
    become floats, lists of integers tuples; defaults are not filled in), without building the model.
    One-line UsageError for an unknown name or hyperparameter, a wrong type or a value out of bounds."""
    return _entry(name).schema.validate(hparams)


def build(name: str, theory, **hparams) -> Flow:
    """The registered model ``name`` for ``theory``, its hyperparameters validated first (`validate_hparams`);
    the factory may still raise ValueError for what depends on the theory (lattice dimension, extents)."""
    return _entry(name).factory(theory, **validate_hparams(name, hparams))


__all__ = ["FIELDS", "Flow", "ModelEntry", "REGISTRY", "build", "build_affine", "build_cnf", "build_cnf_equivariant",
           "build_cpn_equivariant", "build_hybrid", "build_schwinger_pf_flow", "build_sphere_equivariant",
           "build_spline", "build_sun_cnf", "build_sun_equivariant", "build_u1_cnf", "build_u1_equivariant", "build_u1_plaquette", "defaults",
           "hparams", "is_reference_model", "validate_hparams"]
