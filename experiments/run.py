"""Run one experiment config and append its numbers to the one results table, experiments/results.md.

    python experiments/run.py experiments/configs/NAME.json      # again after an interruption: resumes

A config (JSON) holds what was decided before the result: the training sources, the `braintriage train` flags,
the kind of run (`holdout_source`: leave-source-out; `folds`: grouped cross-validation; neither: one model),
and `adopt_if`, the rule that says what the result will change. The runner builds the command, runs it in
RUN_DIR = runs/NAME, and appends one row: the held-out source's numbers, the pooled out-of-fold numbers, or
the validation numbers, with the commit and the seconds it took.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results.md"
HEADER = ("| date | experiment | commit | kind | images (tumors) | sensitivity | specificity | ROC-AUC "
          "| guard alarms | seconds |\n|---|---|---|---|---|---|---|---|---|---|\n")


def command(config: dict, run_dir: Path) -> list[str]:
    """`braintriage train SOURCES... --flag value ...` from a config; True flags stand alone."""
    cmd = [str(ROOT / ".venv/bin/braintriage"), "train", *config["sources"]]
    flags = dict(config["train"])
    for key in ("holdout_source", "folds"):
        if config.get(key) is not None:
            flags[key] = config[key]
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif isinstance(value, list):
            cmd += [flag, *map(str, value)]
        elif value is not False:
            cmd += [flag, str(value)]
    resumable = config.get("folds") is None  # a cross-validation resumes by itself, fold by fold
    return cmd + ["--run-dir", str(run_dir), "--output", str(run_dir / "model.safetensors")] + (
        ["--resume"] if resumable else [])


def fmt(entry: dict | float | None) -> str:
    if entry is None:
        return ""
    if isinstance(entry, dict):
        lo, hi = entry.get("ci95") or (None, None)
        value = entry["value"]
        return f"{value:.3f}" + (f" ({lo:.3f}-{hi:.3f})" if lo is not None and hi is not None else "")
    return f"{entry:.3f}"


def result_row(config: dict, run_dir: Path, seconds: float, commit: str) -> str:
    if config.get("holdout_source"):
        r = json.loads((run_dir / "holdout.json").read_text())
        kind = f"held out: {r['held_out_source']} (threshold {r['threshold']:.3f})"
        cells = [f"{r['images']} ({r['tumors']})", fmt(r.get("sensitivity")), fmt(r.get("specificity")),
                 fmt(r.get("roc_auc")), fmt(r.get("ood_alarm_rate"))]
    elif config.get("folds"):
        cv = json.loads((run_dir / "cv.json").read_text())
        at95 = cv["pooled_out_of_fold"]["at_specificity_0.95"]
        kind = f"{cv['folds']}-fold CV, pooled at specificity 0.95 (threshold {at95['threshold']:.3f})"
        cells = [f"{at95['n']} ({at95['n_tumor']})", fmt(at95["sensitivity"]), fmt(at95["specificity"]),
                 fmt(at95["roc_auc"]), ""]
    else:
        meta = json.loads((run_dir / "metadata.json").read_text())
        v = meta["validation_metrics"]
        kind = f"validation split (threshold {v['threshold']:.3f})"
        cells = [f"{v['n']} ({v['n_tumor']})", fmt(v["sensitivity"]), fmt(v["specificity"]), fmt(v["roc_auc"]), ""]
    return f"| {date.today()} | {config['name']} | {commit} | {kind} | " + " | ".join(cells) + f" | {seconds:.0f} |\n"


def main(path: str) -> int:
    config = json.loads(Path(path).read_text())
    run_dir = ROOT / "runs" / config["name"]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config, indent=2))
    cmd = command(config, run_dir)
    print(" ".join(cmd), flush=True)
    start = time.time()
    code = subprocess.call(cmd, cwd=ROOT)
    if code != 0:
        return code
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    if not RESULTS.exists():
        RESULTS.write_text("# Experiment results\n\nOne row per run of `experiments/run.py` (its config in "
                           "`experiments/configs/`). Intervals: bootstrap 95% (guard alarms: Wilson).\n\n" + HEADER)
    with RESULTS.open("a") as f:
        f.write(result_row(config, run_dir, time.time() - start, commit))
    print(f"appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
