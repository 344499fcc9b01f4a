# The two commands of the README. Each sets up the virtualenv when needed, then runs.
#   make repro   set up, then `dvc repro` (the embedded profile: offline, about 10 minutes)
#   make test    set up, then the test suite (make test-fast: without the end-to-end dvc runs)
VENV := .venv
STAMP := $(VENV)/.installed
# Stage commands call `python`: it must be the virtualenv's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: repro test test-fast bench bench-record check lock screenshot

repro: $(STAMP)
	dvc repro

test: $(STAMP)
	pytest

# The inner loop: everything but the end-to-end dvc runs (marked slow), in about two minutes.
test-fast: $(STAMP)
	pytest -m "not slow"

check: $(STAMP)
	reprodl check

bench: $(STAMP)
	for script in $(filter-out benchmarks/timing.py benchmarks/record.py,$(wildcard benchmarks/*.py)); do python $$script --quick || exit 1; done

# The record runs of docs/performance.md: every benchmark 3 times in full, then its table rows
# (Markdown, on stdout; each run's output in bench-logs/). On a quiet machine: NOTE="quiet machine".
bench-record: $(STAMP)
	python benchmarks/record.py --runs 3 --note "$(NOTE)" --log-dir bench-logs

# The README's picture of the study page, taken in headless Chromium as the browser test opens it.
screenshot: $(STAMP)
	python tests/browser.py reports/index.html docs/report.png

# requirements.lock pins the whole tree (torch/torchvision: the releases pip takes from this
# machine's disk), so two clones a month apart install the same packages.
$(STAMP): pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# Re-resolve pyproject.toml's dependencies into requirements.lock (in a scratch virtualenv).
lock:
	rm -rf .venv-lock && python3 -m venv .venv-lock
	.venv-lock/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
	{ sed -n '1,3p' requirements.lock; .venv-lock/bin/pip freeze --exclude-editable --disable-pip-version-check; } > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock && rm -rf .venv-lock
