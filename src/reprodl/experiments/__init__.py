"""One module per experiment: run_<exp>(cfg, ...) trains, measures and writes its outputs."""
