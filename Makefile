.PHONY: install test bundled-model
install:
	python3 -m venv .venv && .venv/bin/pip install -e '.[test]'
test:
	.venv/bin/pytest
# Retrain the bundled default model (a GPU makes this take under a minute; see scripts/train_bundled_model.sh)
bundled-model:
	PATH=$(CURDIR)/.venv/bin:$$PATH scripts/train_bundled_model.sh
