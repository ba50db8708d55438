# xcluster.multus — the two commands a user needs are `make demo` and `make test`.
# Everything else is a building block of those two.
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Lab backend: netns (namespace nodes) or vm (qemu VMs); node count; name prefix.
LAB ?= netns
LAB_NODES ?= 4
LAB_PREFIX ?= xcm
export LAB LAB_NODES LAB_PREFIX

.PHONY: help venv unit lint lab-up lab-test lab-down lab-selftest artifacts molecule \
        test demo bench build clean

help:
	@echo "make demo   - 4-node lab (LAB=vm default for demo), site.yml, basic check"
	@echo "make test   - every test: lint, unit, lab self-tests, molecule scenarios, faults"
	@echo "make unit | lint | artifacts | molecule | bench | build"
	@echo "make lab-up | lab-test | lab-down   (LAB=netns|vm LAB_NODES=N LAB_PREFIX=p)"

venv: $(VENV)/.stamp
$(VENV)/.stamp: requirements.txt requirements-test.txt
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-test.txt
	touch $@

unit: venv
	pytest -q tests/unit

lint: venv
	tests/lint.sh

# The collection tarball (galaxy.yml build_ignore leaves development out), and what it holds.
build: venv
	ansible-galaxy collection build --force --output-path build .
	tar -tzf build/xcluster-multus-$$(sed -n 's/^version: *//p' galaxy.yml).tar.gz | grep -v '/$$'

artifacts: venv
	tests/artifacts/build-all

lab-up: venv
	tests/lab/lab up
lab-test: venv
	tests/lab/lab test
lab-down:
	tests/lab/lab down

# The lab's self-tests on a lab of its own, torn down afterwards.
lab-selftest: venv
	tests/lab/selftest

molecule: venv artifacts
	tests/molecule.sh

test: venv
	tests/run-all

# The demo uses the VM lab (net1 over ipvlan shows) unless LAB is given.
demo:
	LAB=$(if $(filter command line environment,$(origin LAB)),$(LAB),vm) scripts/demo

bench: venv artifacts
	bench/run

clean:
	rm -rf build .pytest_cache .ruff_cache
