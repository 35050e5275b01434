"""The sampler plugin interface and the context a run gets from the harness.

A plugin is an instance of a `Sampler` subclass registered with `suite.samplers.register`. It
declares its typed spec class (`suite.samplers.spec`), its default dtype and what kind of
estimates its chains give, and implements `Sampler.run`. Reports and ``compare`` ask the plugin
— never the sampler's name — how to label a run, which columns it adds to the runs table, which
section it adds to a report, whether
its runs are the baseline others are compared with, and whether its ESS is a reweighting ESS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar


# The arms of the transport-versus-quality comparison (`Sampler.transport_arm`), in their order there.
TRANSPORT_ARMS = {"flow": "(a) a trained flow alone",
                  "corrected": "(b) a learned transport corrected by Monte Carlo steps",
                  "prior": "(c) Monte Carlo from the prior"}


@dataclass(frozen=True)
class RunContext:
    """What the harness hands a sampler for one task.

    ``dtype`` is the torch dtype of the run's real precision (complex fields use the matching
    complex type, `suite.fields.FieldSpace.dtype`); ``run_dir`` the task's own artifact folder
    (``runs/<key>/``); ``out`` the results folder (for artifacts shared between tasks, e.g.
    pretraining); ``resume`` continues from a checkpoint in ``run_dir``.
    """

    entry: Any
    seed: int
    device: str
    dtype: Any
    run_dir: Path
    out: Path
    catalogue_version: int
    resume: bool = False
    progress: bool | None = None


class Sampler:
    """Base class of sampler plugins; subclasses set the class attributes and implement `run`.

    * ``name``: the name in studies and on the CLI (``--sampler``).
    * ``spec``: the frozen spec dataclass of its options.
    * ``default_dtype``: the real precision when ``--dtype`` is not given.
    * ``markov``: its measurements form a Markov chain (τ_int by the Γ-method, ESS/sample =
      1/(2τ_int)); otherwise they are independent weighted samples (reweighting ESS).
    * ``baseline``: runs of this sampler are the baseline of ``compare``'s "vs HMC" column.
    * ``trained``: it trains a model (its reference runs set ``compare``'s "vs best reference flow").
    * ``runs_table``: the report section its runs are listed in.
    * ``transport_arm``: its arm in the transport-versus-quality comparison of importance samplers
      (`suite.report.transport`), a key of `TRANSPORT_ARMS`; None: it is not compared there.
    * ``split_over_ranks``: the spec's counts it divides among the ranks of a torchrun launch
      (``--distributed``, `suite.distributed`), which the world size must divide; None: it does not
      run distributed.
    """

    name: ClassVar[str]
    spec: ClassVar[type]
    default_dtype: ClassVar[str] = "float64"
    markov: ClassVar[bool] = True
    baseline: ClassVar[bool] = False
    trained: ClassVar[bool] = False
    runs_table: ClassVar[str] = "Other runs"
    transport_arm: ClassVar[str | None] = None
    description: ClassVar[str] = ""
    split_over_ranks: ClassVar[tuple[str, ...] | None] = None

    def run(self, spec, theory, context: RunContext):
        """Sample ``theory`` as ``spec`` says; returns (`suite.chain.Chain`, training summary or None).

        Artifacts go into ``context.run_dir``; return their names with `artifacts`."""
        raise NotImplementedError

    def check_task(self, spec, entry) -> None:
        """Checks of a spec against the entry it is run on (at study load); a UsageError if it cannot run."""

    def artifacts(self, spec, context: RunContext) -> dict[str, Path]:
        """Artifacts the run wrote outside ``run_dir`` (kind -> path), recorded in the row."""
        return {}

    def is_reference(self, spec) -> bool:
        """Whether a run is one of the suite's reference samplers (not a user's model)."""
        return True

    def label(self, spec: dict) -> str:
        """Legend label of a run (figures, scaling tables): the sampler and what distinguishes it."""
        return self.name

    def describe(self, spec: dict) -> str:
        """Heading of a run in the report, e.g. ``flow (affine, reverse-kl)``."""
        return self.name

    def contender(self, spec: dict, by: str) -> str:
        """Its label in ``compare``, grouping by ``model``, ``objective`` or ``sampler``."""
        return self.name

    def budget_label(self, spec: dict) -> str:
        """What tells two recipes of this sampler apart in a leaderboard, in words."""
        return ", ".join(f"{k} = {v}" for k, v in spec.items() if k != "name")

    def columns(self, row) -> dict:
        """Columns it adds to its runs table, from a `suite.harness.rows.ResultRow`."""
        return {}

    def report_section(self, rows, out: Path) -> list[str]:
        """Markdown lines this sampler adds to a report, given its finished rows (figures go under ``out``)."""
        return []

    def statistics(self, info: dict) -> str:
        """The statistics of a run in words, from its sampler info (``lftbench references`` writes it
        into the provenance of computed reference values)."""
        return ", ".join(f"{k} {v}" for k, v in info.items() if isinstance(v, (int, float, str)))

    def upgrade_v1(self, data: dict) -> dict:
        """A schema-1 row's dict brought to the current schema (artifact paths it did not record)."""
        return data


def weight_columns(row) -> dict:
    """The runs-table columns of an importance sampler's weights: ESS, Pareto k̂ (> 0.7: not to be
    trusted), log Z and its pull against an exact log Z where the entry has one."""
    from suite.report.tables import format_value

    ess, log_z, exact = row.metrics.get("ess"), row.metrics.get("log_z"), row.reference.get("log_z")
    return {"ess": format_value(ess["value"], ess["error"]) if ess else None,
            "pareto_k": ess.get("pareto_k") if ess else None,
            "log_z": format_value(log_z["value"], log_z["error"]) if log_z else None,
            "log_z_pull": exact["pull"] if exact else None}


def target_configurations(theory, context: RunContext, n_configs: int):
    """``n_configs`` HMC configurations of the task's target for the forward ESS and EUBO of a sampler
    without a tractable density (its reverse paths start there), from the results folder's cached
    target ensemble with the flow sampler's default ensemble settings, so that samplers share it;
    None for 0."""
    if not n_configs:
        return None
    from suite.harness.ensembles import target_ensemble
    from suite.samplers.flow import EnsembleSpec

    ens = EnsembleSpec()
    return target_ensemble(theory, context.entry, context.out, n_configs=n_configs, chains=ens.chains,
                           n_therm=ens.n_therm, separation=ens.separation, progress=context.progress)
