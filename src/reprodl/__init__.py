"""reprodl: the library behind the reproducible deep-learning pipeline.

The library knows nothing of DVC or params.yaml: stages read their params section,
validate it (reprodl.params) and pass plain values in.
"""

__version__ = "0.1.0"
