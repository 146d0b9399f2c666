.PHONY: install test bundled-model
install:
	python3 -m venv .venv && .venv/bin/pip install -e '.[test]'
test:
	.venv/bin/pytest
# Retrain the bundled default model: three sources, EfficientNet-Lite0 from ImageNet, threshold from a 5-fold CV
# (about 2 hours on a 2-core CPU with bf16, resumable; minutes on a GPU; see scripts/train_bundled_model.sh)
bundled-model:
	PATH=$(CURDIR)/.venv/bin:$$PATH scripts/train_bundled_model.sh
