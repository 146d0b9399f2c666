"""Cross-validations side by side, per source, each at its own shipping threshold (out-of-fold specificity 0.95).

    python experiments/compare_cv.py runs/CV_RUN [runs/CV_RUN2 ...]

The pooled out-of-fold rule (sensitivity at specificity 0.95) can hold while a recipe loses one source's tumors:
a recipe whose normals score higher needs a higher threshold, and the tumors it pays with may all come from one
collection. This prints, for each run, every source's sensitivity and specificity at the run's threshold and the
ROC-AUC of its tumors against all normals (`metrics.per_source_metrics`, which `braintriage train --folds` writes
into cv.json since session 20). For runs made before that, the source is read from the out-of-fold paths, which
a multi-source run prefixes with it (`cache.from_sources`): the sources of the run's experiment config.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from braintriage.metrics import describe_per_source, per_source_metrics
from braintriage.operating_point import out_of_fold_scores, out_of_fold_sources, read_out_of_fold


def per_source(run: Path) -> tuple[float, dict]:
    cv, rows = read_out_of_fold(run)
    pooled = cv["pooled_out_of_fold"]
    threshold = pooled["at_specificity_0.95"]["threshold"]
    if "per_source_at_specificity_0.95" in pooled:
        return threshold, pooled["per_source_at_specificity_0.95"]
    config = json.loads((run / "config.json").read_text())
    names = {Path(s).name for s in config["sources"]}
    source = out_of_fold_sources(rows)
    if len(names) < 2 or not set(source.tolist()) <= names:
        raise SystemExit(f"{run}: cv.json has no per-source figures and its paths do not name its sources")
    _, y, p = out_of_fold_scores(rows)
    return threshold, per_source_metrics(y, p, source, threshold)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        threshold, figures = per_source(Path(arg))
        print(f"{arg} (threshold {threshold:.3f})")
        for line in describe_per_source(figures):
            print(f"  {line}")
