"""Search spaces and study definitions, shipped in the package as ``bench.sweeps``."""
