"""reprodl: the library behind the reproducible deep-learning pipeline.

reprodl.config is the typed schema of params.yaml; stages load the file through it and pass
the section objects to the experiments, which never read params.yaml or dvc.yaml themselves.
"""

__version__ = "0.1.0"
