# hepgen: make demo | make test | make install | make bench
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
HEPGEN := $(VENV)/bin/hepgen
DEMO := demo-output

.PHONY: install test demo bench clean

install: $(STAMP)

# Every pin is in requirements.lock and installed without dependency resolution, so a
# fresh machine gets exactly the tested set. wasserstein (needed by energyflow) is
# built from source: its published wheel is compiled against numpy 1 and fails to
# import under numpy 2.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q pip==26.3 setuptools==84.2.1 wheel==0.48.0
	$(PIP) install -q --no-deps -r requirements.lock
	$(PIP) install -q --no-deps --no-binary wasserstein wasserstein==1.1.0
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PY) -c "import hepgen, energyflow, wasserstein, jetnet, pythia8mc, fastjet, torch, zuko, lightning"
	@touch $(STAMP)

# one worker per core (pytest-xdist); a file's tests stay on one worker, so its module
# fixtures are built once
test: install
	$(PY) -m pytest -q -n auto --dist loadfile tests

# The main job end to end on built-in defaults: reference jets from Pythia, a brief
# training run (to show the training path), samples from the shipped MDMA-GAN, and an
# evaluation against the reference with the truth floor (a second Pythia sample).
demo: install
	@mkdir -p $(DEMO)
	$(HEPGEN) data jets --jet-type t --num-particles 30 --num-jets 5000 --seed 1 --out $(DEMO)/t30_reference.h5
	$(HEPGEN) data jets --jet-type t --num-particles 30 --num-jets 5000 --seed 2 --out $(DEMO)/t30_floor.h5
	rm -rf $(DEMO)/brief-run
	$(HEPGEN) train mdma-gan --data $(DEMO)/t30_reference.h5 --max-epochs 1 --out $(DEMO)/brief-run
	$(HEPGEN) sample $(DEMO)/brief-run --num 1000 --seed 1 --out $(DEMO)/brief-run-samples.h5
	$(HEPGEN) models
	$(HEPGEN) sample mdma-gan/t30 --num 5000 --seed 1 --out $(DEMO)/mdma-gan-t30.h5
	$(HEPGEN) evaluate jets --real $(DEMO)/t30_reference.h5 --gen $(DEMO)/mdma-gan-t30.h5 \
		--truth-floor $(DEMO)/t30_floor.h5 --out $(DEMO)/report
	@echo "Demo report: $(abspath $(DEMO)/report/report.html)"

# Speed is always a ratio against a reference measured in the same run: jetnet for the
# metrics, Pythia + FastJet for the models. Reference samples are cached under data/.
bench: install
	$(HEPGEN) bench metrics --num-jets 50000 --num-particles 30 --num-particles 150 --out bench-results
	@test -f data/t30_train.h5 || $(HEPGEN) data jets --jet-type t --num-particles 30 --num-jets 100000 --seed 1 --out data/t30_train.h5
	@test -f data/t30_test.h5 || $(HEPGEN) data jets --jet-type t --num-particles 30 --num-jets 50000 --seed 2 --out data/t30_test.h5
	$(HEPGEN) bench jets --test data/t30_test.h5 --train data/t30_train.h5 --out bench-results
	$(HEPGEN) bench calo --geometry ds2 --num-showers 10000 --out bench-results
	$(HEPGEN) bench calo --geometry ds1-photons --num-showers 10000 --out bench-results/ds1-photons

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
