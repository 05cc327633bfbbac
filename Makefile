# Two commands for a newcomer: `make demo` and `make test` (each runs setup).
.PHONY: setup test demo lint sanity units integration molecule bench build clean

setup:
	@scripts/setup

test: setup
	@scripts/test

demo: setup
	@scripts/demo

lint sanity units integration molecule: setup
	@scripts/test $@

bench: setup
	@.venv/bin/python -m bench

build: setup
	@.venv/bin/ansible-galaxy collection build --force --output-path build .

clean:
	rm -rf .cache build tests/output .pytest_cache .ruff_cache
