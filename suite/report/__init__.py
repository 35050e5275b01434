"""Reports: result rows in, files out (report.md, runs.csv, observables.csv, figures/*.png).

Reports read rows and saved chains; they never re-run a sampler.
"""

from suite.report.build import build_report

__all__ = ["build_report"]
