# rdnsgate: `make run` starts the main job, `make test` runs the whole suite.
# Both install what they need: Python deps into .venv, Debian packages with apt-get.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEBIAN_RUN_PACKAGES  := knot knot-dnsutils swaks
DEBIAN_TEST_PACKAGES := $(DEBIAN_RUN_PACKAGES) adns-tools postfix iproute2 chromium postgresql pgbouncer systemd openssl fail2ban
EXIM   := .cache/exim4/usr/sbin/exim4
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Bytecode for the checkout, written once: where the environment says PYTHONDONTWRITEBYTECODE, every process
# the demo, the suite or a benchmark starts would compile the package again (~0.4 s each). Up-to-date files are skipped.
BYTECODE := $(BIN)/python -m compileall -q rdnsgate tests bench scripts >/dev/null

.PHONY: run test lint typecheck unit quick docs dist bench bench-gateway bench-policy bench-memory bench-store debian-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The main job: `rdnsgate serve` (gateway on 127.0.0.1:2525, web app on 127.0.0.1:8080,
# fleet monitor) with the embedded defaults (Maildir and SQLite under ./var/), resolving
# through a demo knotd on loopback (scripts/demo.py).
run: $(STAMP)
	@$(MAKE) --no-print-directory debian-deps PACKAGES="$(DEBIAN_RUN_PACKAGES)"
	@$(BYTECODE)
	$(BIN)/python scripts/demo.py

PACKAGES ?= $(DEBIAN_TEST_PACKAGES)
debian-deps:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | $(SUDO) debconf-set-selections; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check rdnsgate tests bench scripts
	$(BIN)/ruff format --check rdnsgate tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) debian-deps $(EXIM) lint typecheck
	@$(BYTECODE)
	$(BIN)/pytest -q

# Debian's Exim and Postfix exclude each other (each is the system's MTA), so the Exim test
# (tests/integration/test_exim.py) takes the exim4 binary out of its package without installing it.
EXIM_LIBS := libidn12 libgnutls-dane0 libdb5.3 libpcre2-8-0 libnsl2 libcrypt1
$(EXIM):
	@$(MAKE) --no-print-directory debian-deps PACKAGES="$(EXIM_LIBS)"
	rm -rf .cache/exim4 && mkdir -p .cache/exim4
	cd .cache/exim4 && { apt-get download -qq exim4-daemon-light 2>/dev/null || \
	  { $(SUDO) apt-get update -qq && apt-get download -qq exim4-daemon-light; }; } && \
	  dpkg -x exim4-daemon-light_*.deb . && rm exim4-daemon-light_*.deb

# The inner loop: the pure tests (no servers, no DNS), in seconds.
unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

# Everything but the end-to-end tests marked slow (real Postfix, browser, all services at once).
quick: $(STAMP) debian-deps
	@$(BYTECODE)
	$(BIN)/pytest -q -m "not slow"

# Regenerate the parts of docs/ made from the code (settings, reasons, profiles).
docs: $(STAMP)
	$(BIN)/python scripts/gendocs.py

# A wheel in dist/ (what `pip install` on a mail host takes; docs/deploy.md).
dist: $(STAMP)
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .

bench: $(STAMP) debian-deps
	@$(BYTECODE)
	$(BIN)/python bench/audit_vs_adns.py

# As root: makes a network namespace and runs a throw-away Postfix (never the system's).
bench-gateway: $(STAMP) debian-deps
	@$(BYTECODE)
	$(BIN)/python bench/gateway_vs_postfix.py

# As root: Postfix with its own checks vs Postfix asking rdnsgate, and the service's requests/s.
bench-policy: $(STAMP) debian-deps
	@$(BYTECODE)
	$(BIN)/python bench/policy_vs_postfix.py

# The gateway's memory while 8 clients each send a 20 MB message at once.
bench-memory: $(STAMP) debian-deps
	@$(BYTECODE)
	$(BIN)/python bench/gateway_memory.py

# The decision log's writer and a gateway under load, on SQLite and on PostgreSQL, same run.
bench-store: $(STAMP) debian-deps
	@$(BYTECODE)
	$(BIN)/python bench/store_writes.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
