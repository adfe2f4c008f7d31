"""A study's results: the tidy record (:mod:`~bench.results.record`), the stores read into it
(:mod:`~bench.results.reader`) and the ROPE rule it records (:mod:`~bench.results.rope`).

Studies resume from it, the report is built from it; neither reads the other's code.
"""
