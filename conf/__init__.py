"""Hydra's config tree, shipped in the package as ``bench.conf`` (see pyproject.toml)."""
