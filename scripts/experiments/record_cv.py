"""Keep a finished cross-validation's summary in the repository: `python record_cv.py runs/NAME` writes
docs/cv-runs/NAME.json, the run's cv.json plus the pooled binary log loss of P(tumor) (from its oof.csv).
Why: runs/ is not committed (the out-of-fold predictions are 2,870 rows a run), and a fresh checkout in session
11 lost every earlier run, the baselines the CV rules compare with included; compare_cv.py and adoption.py read
these records as they read a run's cv.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from compare_cv import binary_log_loss  # beside this file

ROOT = Path(__file__).resolve().parents[2]


def record(run_dir: Path) -> Path:
    cv = json.loads((run_dir / "cv.json").read_text())
    cv["pooled_out_of_fold"]["binary_log_loss"] = round(binary_log_loss(str(run_dir / "cv.json")), 6)
    out = ROOT / "docs/cv-runs" / f"{run_dir.name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(cv, indent=1) + "\n")
    return out


if __name__ == "__main__":
    print(record(Path(sys.argv[1])))
