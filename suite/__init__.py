"""lftbench: a benchmark suite for samplers of lattice field theories.

`suite` holds what every run shares (lattice helpers, theories, the catalogue, statistics,
the harness, reports, the CLI); `reference` holds the samplers users compare against.
"""

__version__ = "0.1.0"
