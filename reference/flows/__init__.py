"""Reference normalizing flows for scalar lattice fields, layout (B, *lattice).

A model is built by name: ``build("affine", theory, n_layers=8)``; ``REGISTRY`` maps the names to
factories ``factory(theory, **hparams) -> Flow`` (``Flow.sample(n) -> (x, log_q)``,
``Flow.log_prob(x)``).
"""

from __future__ import annotations

import inspect

from reference.flows.continuous import build_cnf, build_cnf_equivariant
from reference.flows.models import Flow, build_affine, build_hybrid, build_spline
from reference.flows.u1 import build_u1_equivariant
from reference.flows.u1_continuous import build_u1_cnf

REGISTRY = {"affine": build_affine, "spline": build_spline, "hybrid": build_hybrid,
            "u1-equivariant": build_u1_equivariant, "cnf": build_cnf, "cnf-equivariant": build_cnf_equivariant,
            "u1-cnf": build_u1_cnf}


def hparams(name: str) -> tuple[str, ...]:
    """The hyperparameter names the factory ``name`` accepts."""
    return tuple(p for p in inspect.signature(REGISTRY[name]).parameters if p != "theory")


def build(name: str, theory, **options) -> Flow:
    """The registered flow ``name`` for ``theory``; ValueError for an unknown name or hyperparameter."""
    if name not in REGISTRY:
        raise ValueError(f"unknown flow {name!r}; expected one of {', '.join(REGISTRY)}")
    unknown = sorted(set(options) - set(hparams(name)))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {', '.join(unknown)} for flow {name!r}; "
                         f"valid: {', '.join(hparams(name))}")
    return REGISTRY[name](theory, **options)


__all__ = ["Flow", "REGISTRY", "build", "build_affine", "build_cnf", "build_cnf_equivariant", "build_hybrid",
           "build_spline", "build_u1_cnf", "build_u1_equivariant", "hparams"]
