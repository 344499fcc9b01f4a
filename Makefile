# The two commands of the README. Each sets up the virtualenv when needed, then runs.
#   make repro   set up, then `dvc repro` (the embedded profile: offline, about 10 minutes)
#   make test    set up, then the test suite
VENV := .venv
STAMP := $(VENV)/.installed
# Stage commands call `python`: it must be the virtualenv's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: repro test bench

repro: $(STAMP)
	dvc repro

test: $(STAMP)
	pytest

bench: $(STAMP)
	for script in benchmarks/*.py; do python $$script --quick || exit 1; done

# torch/torchvision are pinned to the releases pip takes from this machine's disk.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@
