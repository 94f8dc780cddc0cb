# The two commands a newcomer needs:  make demo   and   make test
# Everything else is here for hiring teams (grade, assignment) and maintainers (artifacts, bench).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
FLAVOR ?= sklearn
RUNTIME ?= local
OUT    ?= reports
CANDIDATE_REPO ?=
CONFIG ?=
MIN_SCORE ?=
PYTEST_ARGS ?=

.PHONY: help setup sandbox-tools artifacts assignment grade demo test lint bench clean calibrate retest gradescope grader-image

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch==2.13.0 is pinned: a bare "torch" would pull a multi-GB CUDA build.
	$(PY) -m pip install -q -e '.[dev,torch]'
	@touch $@

setup: $(VENV)/.installed sandbox-tools  ## create .venv and install the kit

# The local runtime sandboxes candidate code with bubblewrap; as root this installs it from Debian,
# otherwise it says how (and `make demo` still grades its own bundled candidate without a sandbox).
sandbox-tools:
	@bash .ci/install-sandbox.sh || echo "note: no sandbox tools; the local runtime will refuse candidates' code until they are installed"

build/artifacts/manifest.json: $(VENV)/.installed | sandbox-tools
	$(PY) -m reference_model.build --out build/artifacts

artifacts: build/artifacts/manifest.json  ## build the reference dataset, models (v1, v2; sklearn and torch), profile, manifest

assignment: artifacts  ## write the candidate archive: make assignment FLAVOR=sklearn|torch
	$(PY) -m assignment.build --flavor $(FLAVOR) --out dist/

grader-image: artifacts  ## build the grader image for takehome batch --on-cluster [TAG=takehome-grader:latest] [WITH_TORCH=1]
	$(PY) -m grader.batch.grader_image $(if $(TAG),--tag $(TAG)) $(if $(WITH_TORCH),--with-torch)

gradescope: artifacts  ## write the Gradescope autograder zip (needs TAKEHOME_SCENARIO_SEED): dist/gradescope-autograder.zip
	$(PY) -m grader.gradescope_bundle --out dist/gradescope-autograder.zip --flavor $(FLAVOR)

grade: artifacts  ## grade a repo into reports/<repo>/<commit>/: make grade CANDIDATE_REPO=<git URL or path> [RUNTIME=local] [CONFIG=my.yaml] [MIN_SCORE=80] [REPORTS=dir]
	@test -n "$(CANDIDATE_REPO)" || { echo "usage: make grade CANDIDATE_REPO=<git URL or path> [RUNTIME=local|docker|kind] [CONFIG=file] [MIN_SCORE=N]"; exit 2; }
	$(VENV)/bin/takehome grade --repo "$(CANDIDATE_REPO)" --runtime $(RUNTIME) $(if $(REPORTS),--out $(REPORTS)) \
		$(if $(CONFIG),--config $(CONFIG)) $(if $(MIN_SCORE),--min-score $(MIN_SCORE))

demo: artifacts  ## set up, then grade the bundled reference solution on the local runtime and print a summary
	$(VENV)/bin/takehome demo --out $(OUT)/demo

test: artifacts  ## run the test suite (docker tests run when an engine is up; kind tests when kind is installed)
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

lint: $(VENV)/.installed  ## ruff and mypy, as configured in pyproject.toml
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: artifacts  ## timing benchmarks (artifact build, load generator vs wrk, grading wall time)
	$(PY) benchmarks/build_artifacts.py
	$(PY) benchmarks/load_benchmark.py
	$(PY) benchmarks/grade_benchmark.py --compare

clean:  ## remove build outputs (keeps .venv)
	rm -rf build dist reports .pytest_cache

retest: artifacts  ## grade one commit N times, print each section's spread: make retest CANDIDATE_REPO=<repo>|CANDIDATE=<corpus name> [N=10] [RUNTIME=local]
	@test -n "$(CANDIDATE_REPO)$(CANDIDATE)" || { echo "usage: make retest CANDIDATE_REPO=<git URL or path> | CANDIDATE=<corpus name> [N=10] [RUNTIME=local|docker|kind]"; exit 2; }
	$(PY) -m calibration.retest $(if $(CANDIDATE_REPO),--repo "$(CANDIDATE_REPO)",--candidate $(CANDIDATE)) -n $(or $(N),10) \
		--runtime $(RUNTIME) --out $(OUT)/retest

calibrate: artifacts  ## grade the calibration corpus, compare with calibration/expected.yaml [RUNTIME=local] [REPEAT=K] [CANDIDATES=a,b] [JOBS=1] [RETRY=N]
	$(PY) -m calibration.calibrate --runtime $(RUNTIME) --out $(OUT)/calibration-$(RUNTIME) $(if $(REPEAT),--repeat $(REPEAT)) \
		$(if $(RETRY),--retry-mismatch $(RETRY)) \
		$(if $(CANDIDATES),--candidates $(CANDIDATES)) $(if $(JOBS),--jobs $(JOBS))
