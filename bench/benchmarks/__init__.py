"""asv benchmarks of lftbench (configuration: asv.conf.json at the repository root).

Modules ``bench_*.py`` as in numpy's and scipy's suites; shared set-up in `common`.
They import the installed project (``suite``, ``reference``), never paths.
"""
