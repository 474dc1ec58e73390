# One entry point for developers, CI (.ci/run) and CodeBuild (pipeline-config/buildspec.yml).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CHECKOV_VENV := .venv-checkov
REQUIREMENTS := requirements-dev.txt lambdas/requirements.txt sample-app/requirements.txt
TEMPLATES := $(wildcard cloudformation/*.yaml)
REPORTS := build/reports

# Image build. CodeBuild passes IMAGE_REPO (the ECR repository URI); the tag is the short commit id, from
# CodeBuild's resolved source version (its checkout has no .git) or from git locally.
IMAGE_REPO ?= sample-python-app
COMMIT := $(or $(CODEBUILD_RESOLVED_SOURCE_VERSION),$(shell git rev-parse HEAD 2>/dev/null),dev)
IMAGE_TAG ?= $(shell echo $(COMMIT) | cut -c1-8)
IMAGE_URI := $(IMAGE_REPO):$(IMAGE_TAG)
REGISTRY := $(firstword $(subst /, ,$(IMAGE_REPO)))
REPOSITORY_NAME := $(patsubst $(REGISTRY)/%,%,$(IMAGE_REPO))

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The virtualenv is rebuilt from scratch when the requirements' content changes: the stamp is named by their
# checksum, not dated, because a fresh clone's files (CodeBuild's source) are always newer than any stamp. With
# .venv a symlink to a cached virtualenv (the offline CodeBuild stand-in), `rm -rf` removes only the link.
REQUIREMENTS_SUM := $(firstword $(shell cat $(REQUIREMENTS) | cksum))
VENV_STAMP := $(BIN)/.installed-$(REQUIREMENTS_SUM)
$(VENV_STAMP):
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(CHECKOV_VENV)/bin/.installed: requirements-checkov.txt
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

.PHONY: venv
venv: $(VENV_STAMP) ## Create .venv with the pinned requirements (only when missing or changed)

# Both virtualenvs at once: on a fresh clone this halves the wait before the first check runs.
.PHONY: venvs
venvs:
	$(MAKE) --no-print-directory -j2 $(VENV_STAMP) $(CHECKOV_VENV)/bin/.installed

.PHONY: lint
lint: $(VENV_STAMP) ## ruff and mypy on all Python code
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

.PHONY: cfn-lint
cfn-lint: $(VENV_STAMP) ## cfn-lint on the CloudFormation templates (all findings, informational included)
ifneq ($(TEMPLATES),)
	$(BIN)/cfn-lint $(TEMPLATES)
endif

.PHONY: checkov
checkov: $(CHECKOV_VENV)/bin/.installed ## checkov on the CloudFormation templates
ifneq ($(TEMPLATES),)
	# Offline: no policy download from the vendor's platform, no version check.
	CKV_SKIP_PACKAGE_UPDATE_CHECK=true $(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download \
	  --framework cloudformation -d cloudformation
endif

.PHONY: app-test
app-test: $(VENV_STAMP) ## Sample app unit tests, with a JUnit report in build/reports
	mkdir -p $(REPORTS)
	$(BIN)/pytest sample-app --junitxml=$(REPORTS)/sample-app.xml

.PHONY: test
# The linters and template checks beside the tests (the tests leave cores idle much of the time, waiting on
# servers and clocks), each one's output kept together; everything but the drill on three workers (one file
# each at a time); then the drill (a whole demo) alone: its Lambdas run against scaled Timeouts on the wall
# clock, so it gets the machine to itself.
test: venvs ## Everything CI runs: linters, template checks and the whole pytest suite
	$(MAKE) --no-print-directory -j4 --output-sync=target lint cfn-lint checkov tests-but-drill
	$(BIN)/pytest tests/test_drill.py

.PHONY: tests-but-drill
tests-but-drill: $(VENV_STAMP)
	$(BIN)/pytest -n 3 --dist loadfile --ignore=tests/test_drill.py

.PHONY: unit
unit: $(VENV_STAMP) ## The fast tier alone: the decisions as tables (tests/unit), in seconds
	$(BIN)/pytest -m unit tests/unit

.PHONY: image
image: ## Build the sample app image (needs a Docker engine; CodeBuild has one)
	docker build --tag $(IMAGE_URI) sample-app

.PHONY: ecr-login
ecr-login: ## Log docker in to the ECR registry of IMAGE_REPO
	aws ecr get-login-password | docker login --username AWS --password-stdin $(REGISTRY)

# ECR tags are immutable: a rebuilt commit whose image is already there is not pushed again.
.PHONY: push
push: ## Push the image to ECR unless that tag is already there
	if aws ecr describe-images --repository-name $(REPOSITORY_NAME) \
	    --image-ids imageTag=$(IMAGE_TAG) >/dev/null 2>&1; then \
	  echo "$(IMAGE_URI) is already in ECR"; else docker push $(IMAGE_URI); fi

.PHONY: deploy-artifacts
deploy-artifacts: ## Write imageDetail.json, taskdef.json and appspec.yml for CodeDeployToECS into build/deploy
	IMAGE_URI=$(IMAGE_URI) APP_VERSION=$(IMAGE_TAG) $(PYTHON) pipeline-config/render.py build/deploy

# ---- AWS: Lambda packages and the three stacks (README "AWS set-up"; scripts/deploy.py documents the variables)
LAMBDA_ZIPS := build/health_check.zip build/auto_rollback.zip build/release_report.zip
LAMBDA_DEPS := build/lambda-deps

# Requirements are installed for the Lambda runtime (x86_64, the Python of lambda-functions.yaml's
# LambdaRuntime mapping), not for this machine; boto3 comes from the runtime. The zips are reproducible: same
# sources, same bytes, same S3 key in `make deploy`.
$(LAMBDA_ZIPS) &: $(wildcard lambdas/*.py) lambdas/requirements.txt scripts/deploy.py cloudformation/lambda-functions.yaml | $(VENV_STAMP)
	rm -rf $(LAMBDA_DEPS)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
	  --platform manylinux2014_x86_64 --implementation cp \
	  --python-version $(shell sed -n 's/^ *Python: {Identifier: python\([0-9.]*\)}.*/\1/p' cloudformation/lambda-functions.yaml) \
	  --target $(LAMBDA_DEPS) -r lambdas/requirements.txt
	$(BIN)/python scripts/deploy.py package $(LAMBDA_DEPS) build

.PHONY: package
package: $(LAMBDA_ZIPS) ## Build build/health_check.zip and build/auto_rollback.zip (code + lambdas/requirements.txt)

.PHONY: deploy
deploy: package ## Create or update the three stacks in the README's order (AWS_ENDPOINT_URL honoured)
	$(BIN)/python scripts/deploy.py deploy

.PHONY: destroy
destroy: | $(VENV_STAMP) ## Delete the three stacks in reverse order (PURGE=true: also ECR repo and artifact bucket)
	$(BIN)/python scripts/deploy.py destroy

# make invoke FN=auto_rollback EVENT=tests/events/sns-cloudwatch-alarm.json: scripts/invoke.py says where it runs
# (the stacks in an embedded stand-in, or the AWS_ENDPOINT_URL endpoint they were deployed to).
.PHONY: invoke
invoke: | $(VENV_STAMP) ## Run one Lambda function (FN) on an event file (EVENT) against the stand-in: logs, outcome
	$(BIN)/python scripts/invoke.py "$(FN)" "$(EVENT)"

# The runbook in docs/operations.md ("Shipping a fix while an alarm is firing"): ship a fix while a gating alarm is in ALARM (the pipeline cannot).
.PHONY: ship-fix
ship-fix: | $(VENV_STAMP) ## Deploy BUILD_OUTPUT (dir or zip, default build/deploy) with the group's alarms overridden
	$(BIN)/python scripts/ship_fix.py $(or $(BUILD_OUTPUT),build/deploy)

.PHONY: clean
clean: ## Remove build output and caches (keeps the virtualenvs)
	rm -rf build .pytest_cache .mypy_cache .ruff_cache .hypothesis

.PHONY: distclean
distclean: clean ## Also remove the virtualenvs
	rm -rf $(VENV) $(CHECKOV_VENV)

.PHONY: demo
demo: $(VENV_STAMP) ## The self-healing pipeline offline, measured: all scenarios, or SCENARIO=name
	$(BIN)/python -m local.drill --scenario $(or $(SCENARIO),all)

# make bench [RUNS=5]: both policies; FACTORS=30,120: the figures at two time factors, compared; RATES=60,300:
# the verdicts at several user loads (requests per AWS minute).
.PHONY: judge-bench
judge-bench: $(VENV_STAMP) ## The canary judge in a Monte Carlo of 10,000 canaries a row (seconds): table, curve, goals
	$(BIN)/python -m local.drill.judge_bench $(if $(CANARIES),--canaries $(CANARIES)) $(if $(SEED),--seed $(SEED)) \
	  $(if $(RATE),--rate $(RATE))

.PHONY: bench
bench: $(VENV_STAMP) ## Each drill scenario RUNS times (default 5): median and range, beside the spec's literal rule
	$(BIN)/python -m local.drill.bench --runs $(or $(RUNS),5) $(if $(FACTORS),--factors $(FACTORS)) \
	  $(if $(RATES),--rates $(RATES))
