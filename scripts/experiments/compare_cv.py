"""Compare two grouped cross-validations of recipes on the same folds: `python compare_cv.py BASE/cv.json
CANDIDATE/cv.json`. Prints per-fold held-out loss, specificity and sensitivity at 0.5 and tumor-type
accuracy side by side, how many folds the candidate's held-out loss is lower in, and the pooled out-of-fold
numbers (with the binary log loss of P(tumor), from the oof.csv beside each cv.json); the adoption rules in
the experiment scripts are read off this table. With one cv.json (`python compare_cv.py CANDIDATE/cv.json`, for
when the baseline's run folder is not on this machine) it prints that run's numbers alone."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from sklearn.metrics import log_loss


def load(path: str) -> dict:
    return json.loads(open(path).read())


def binary_log_loss(cv_json: str) -> float:
    """Mean binary cross-entropy of the out-of-fold P(tumor): how well the tumor verdict itself is scored.
    Read from the record if it holds it (docs/cv-runs/, record_cv.py), else computed from oof.csv beside it."""
    recorded = load(cv_json)["pooled_out_of_fold"].get("binary_log_loss")
    if recorded is not None:
        return recorded
    with (Path(cv_json).parent / "oof.csv").open() as f:
        rows = list(csv.DictReader(f))
    return log_loss([int(r["tumor"]) for r in rows], [float(r["p_tumor"]) for r in rows], labels=[0, 1])


def show_one(path: str) -> None:
    run = load(path)
    print("fold | held-out loss | specificity at 0.5 | sensitivity at 0.5 | type acc | best epoch")
    for f in run["per_fold"]:
        print(f"{f['fold']} | {f['held_out_loss']:.3f} | {f['at_0.5']['specificity']:.3f} | "
              f"{f['at_0.5']['sensitivity']:.3f} | {f.get('type_accuracy', float('nan')):.3f} | "
              f"{f.get('best_epoch', '?')}")
    print(f"mean held-out loss {run['summary_at_0.5']['held_out_loss']['mean']:.4f}")
    for key in ("at_0.5", "at_specificity_0.95"):
        p = run["pooled_out_of_fold"][key]
        print(f"pooled {key}: threshold {p['threshold']:.3f}; specificity {p['specificity']:.3f} "
              f"{p['confusion_matrix'][0]}; sensitivity {p['sensitivity']:.3f} {p['confusion_matrix'][1]}")
    print(f"pooled binary log loss of P(tumor): {binary_log_loss(path):.4f}")


def main(base_path: str, candidate_path: str) -> None:
    base, cand = load(base_path), load(candidate_path)
    if base["data_fingerprint"] != cand["data_fingerprint"] or base["folds"] != cand["folds"]:
        sys.exit("not the same data and folds: not comparable")
    print("fold | held-out loss base -> cand | specificity base -> cand | sensitivity base -> cand | type acc")
    lower = 0
    for b, c in zip(base["per_fold"], cand["per_fold"]):
        lower += c["held_out_loss"] < b["held_out_loss"]
        print(f"{b['fold']} | {b['held_out_loss']:.3f} -> {c['held_out_loss']:.3f} | "
              f"{b['at_0.5']['specificity']:.3f} -> {c['at_0.5']['specificity']:.3f} | "
              f"{b['at_0.5']['sensitivity']:.3f} -> {c['at_0.5']['sensitivity']:.3f} | "
              f"{b.get('type_accuracy', float('nan')):.3f} -> {c.get('type_accuracy', float('nan')):.3f}")
    base_mean, cand_mean = (r["summary_at_0.5"]["held_out_loss"]["mean"] for r in (base, cand))
    print(f"held-out loss lower in {lower} of {len(base['per_fold'])} folds; mean {base_mean:.4f} -> "
          f"{cand_mean:.4f}")
    for key in ("at_0.5", "at_specificity_0.95"):
        b, c = base["pooled_out_of_fold"][key], cand["pooled_out_of_fold"][key]
        print(f"pooled {key}: threshold {b['threshold']:.3f} -> {c['threshold']:.3f}; specificity "
              f"{b['specificity']:.3f} -> {c['specificity']:.3f} {b['confusion_matrix'][0]} -> "
              f"{c['confusion_matrix'][0]}; sensitivity {b['sensitivity']:.3f} -> {c['sensitivity']:.3f}")
    print(f"pooled binary log loss of P(tumor): {binary_log_loss(base_path):.4f} -> "
          f"{binary_log_loss(candidate_path):.4f}")


if __name__ == "__main__":
    if len(sys.argv) == 2:
        show_one(sys.argv[1])
    else:
        main(*sys.argv[1:3])
