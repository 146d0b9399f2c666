"""Counts behind a leave-source-out run's table row, read from its held-out evaluation: the held-out tumors
scored below P(tumor) 0.05, and each verdict's tumors and normals.

    python experiments/holdout_counts.py runs/RUN [runs/RUN2 ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def counts(run: Path) -> dict:
    metrics = json.loads((run / "holdout-evaluation" / "metrics.json").read_text())
    tumors = [p for p in metrics["predictions"] if p["tumor"] == 1 and p["tumor_probability"] is not None]
    return {"tumors": len(tumors), "tumors_below_0.05": sum(p["tumor_probability"] < 0.05 for p in tumors),
            "verdicts": metrics["verdicts"]["by_verdict"]}


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(arg, json.dumps(counts(Path(arg))))
