# barerun: `make demo` runs a busybox container through its whole life,
# `make test` runs the test suite, `make test-enosys` the lowlevel and runtime
# suites without the newer syscalls. All set up a fresh machine first (root).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CRIU_SRC := /var/cache/barerun/criu/src

.PHONY: setup host venv bytecode test test-enosys fuzz demo bench clean

setup: host venv bytecode

host:
	@scripts/setup-host.sh

# the venv is (re)built when pyproject.toml or a binding changes
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py native/build.py native/execstub.c $(wildcard native/bindings/*.py) | host
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check \
	    --config-settings editable_mode=compat -e '.[test]' $(CRIU_SRC)/lib 2>&1 \
	    | grep -v "^WARNING: Location" || true
	@$(PY) -c "import lowlevel._ffi, prctl, pycriu" || { echo "setup: the venv is broken" >&2; exit 1; }
	@touch $@

# every `barerun` call starts a fresh interpreter: compiled modules save
# ~10 ms per call, also where PYTHONDONTWRITEBYTECODE keeps Python from
# writing them itself
bytecode: venv
	@$(PY) -m compileall -q runtime lowlevel >/dev/null

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory test-enosys lint

# the source packages: ruff and mypy (configured in pyproject.toml) clean
lint: setup
	$(VENV)/bin/ruff check lowlevel runtime
	$(PY) -m mypy

# the lowlevel, runtime and security suites again with clone3, openat2,
# mount_setattr, pidfd_open and pidfd_send_signal failing with ENOSYS (a seccomp filter
# every process of the run inherits, tests/enosys.py): each fallback runs
# on the real kernel.
ENOSYS_TESTS ?= tests/lowlevel tests/runtime tests/security

test-enosys: setup
	@echo "the lowlevel, runtime and security suites again, with clone3, openat2, mount_setattr, pidfd_open and pidfd_send_signal failing (ENOSYS):"
	$(PY) tests/enosys.py $(PY) -m pytest -p tests.enosys $(ENOSYS_TESTS) $(PYTEST_ARGS)

# a long random run of the fuzz targets (tests/fuzz; `make test` runs a
# short reproducible one): BARERUN_FUZZ_EXAMPLES examples per target
BARERUN_FUZZ_EXAMPLES ?= 10000
fuzz: setup
	BARERUN_FUZZ_EXAMPLES=$(BARERUN_FUZZ_EXAMPLES) $(PY) -m pytest -p no:cacheprovider tests/fuzz $(PYTEST_ARGS)

demo: setup
	$(PY) -m runtime.demo

bench: setup
	$(PY) bench/run.py
	$(PY) bench/clients.py

clean:
	rm -rf $(VENV) build *.egg-info lowlevel/_native*.so lowlevel/_native.c
