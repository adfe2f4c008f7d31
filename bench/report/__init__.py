"""Study results -> statistics -> ``reports/<study>/`` (``python -m bench.report``)."""
