.PHONY: install test bundled-model model-card
install:
	python3 -m venv .venv && .venv/bin/pip install -e '.[test]'
test:
	.venv/bin/pytest
# Retrain the bundled default model: three sources, EfficientNet-Lite0 from ImageNet, threshold from a 5-fold CV
# (about 2 hours on a 2-core CPU with bf16, resumable; minutes on a GPU; see scripts/train_bundled_model.sh)
bundled-model:
	PATH=$(CURDIR)/.venv/bin:$$PATH scripts/train_bundled_model.sh
# The bundled model's card: `Testing` (reported, never tuned on; unleaked against the seed `Training`) and the
# leave-source-out runs of its recipe (all-lite0-160-lesions0.9-copies-from6-frozen3-select-lesioned-verdicts) whose
# rows experiments/run.py kept, each source held out; Br35H's runs also read at the threshold its CV without Br35H
# chooses (the folds kept in experiments/cv/)
LESIONS = lite0-160-lesions0.9-copies-from6-frozen3-select-lesioned
MODEL_CARD_RUNS = $(foreach pattern,lso-br35h-$(LESIONS)-kept-s* lso-seed-$(LESIONS) lso-seed-$(LESIONS)-seeds-s* \
	lso-figshare-$(LESIONS) lso-figshare-$(LESIONS)-seeds-s*,$(wildcard experiments/holdout/$(pattern)/holdout.json))
model-card:
	.venv/bin/braintriage model-card --train-data ../shared/data/brain-tumor-classification-mri \
		$(foreach f,$(MODEL_CARD_RUNS),--leave-source-out $(f)) \
		--cv-without-source experiments/cv/cv5-seed-figshare-$(LESIONS)
