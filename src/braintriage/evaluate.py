"""Evaluate a model on a labelled dataset, honestly.

Every metric comes with a bootstrap 95% confidence interval; ROC, precision-recall and calibration are
measured; sensitivity is broken down by tumor type; and everything is repeated on the *unleaked* subset:
test images with no near duplicate (pHash within NEAR_DUPLICATE_DISTANCE bits) in the training data. On the
seed dataset most test images are copies of training images, so only the unleaked numbers say how the model
does on scans it has never seen the like of.

Images are scored by the same `Predictor` that `predict` uses. A decoded cache file (.npz) is accepted too.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image
from sklearn.metrics import confusion_matrix, precision_score, recall_score

from braintriage.audit import dataset_hashes, image_hashes, leaked_mask
from braintriage.csv_cells import safe_cell
from braintriage.datasets import TUMOR_TYPES, load_dataset
from braintriage.inference import Prediction, Predictor
from braintriage.metrics import binary_metrics, bootstrap_ci, bootstrap_proportion, calibration
from braintriage.modelfile import model_name
from braintriage.near_duplicates import NEAR_DUPLICATE_DISTANCE
from braintriage.preprocess import decode_image
from braintriage.scans import ScanItem, Slice

if TYPE_CHECKING:
    from braintriage.cache import DecodedSet

SEED_DATA_DEFAULT = Path("../shared/data/brain-tumor-classification-mri")
# A leave-source-out run's per-image held-out scores, kept beside its holdout.json (experiments/holdout/RUN/):
# enough to count the verdicts any reading rules give, after the run's model is gone.
HELD_OUT_SCORE_COLUMNS = ("path", "tumor", "p_tumor", "guard_flagged", "guard_ratio")


@dataclass
class Scored:
    paths: list[str]
    tumor: np.ndarray  # 1 = tumor
    type_index: np.ndarray  # index into TUMOR_TYPES, -1 unknown
    p_tumor: np.ndarray
    type_probs: np.ndarray | None
    phash: np.ndarray  # uint64, for the leakage check
    errors: list[tuple[str, str]]
    grayscale: Callable[[int], np.ndarray]  # image i as uint8, for thumbnails
    warnings: list[str | None]  # out-of-distribution guard's alarm, per image
    verdicts: list[str]  # verdicts.py outcome, per image
    shown_types: list[str | None]  # the type a reader is shown (suspected tumors only), per image
    guard_ratios: list[float | None]  # the guard's score in units of its threshold, per image (None: no guard)


def score_dataset(predictor: Predictor, data: str | Path, split: str = "testing") -> Scored:
    if str(data).endswith(".npz"):
        from braintriage.cache import DecodedSet

        return score_decoded(predictor, DecodedSet.load(data), str(data))
    ds = load_dataset(data, split=split)
    results = predictor.predict_files([str(s.path) for s in ds.samples])
    ok = [i for i, r in enumerate(results) if r.error is None]
    samples = [ds.samples[i] for i in ok]
    types = (np.array([[results[i].type_probabilities[n] for n in predictor.class_names] for i in ok])
             if ok and results[ok[0]].type_probabilities else None)
    return Scored(
        paths=[ds.relpath(s) for s in samples],
        tumor=np.array([s.tumor for s in samples], dtype=int),
        type_index=np.array([TUMOR_TYPES.index(s.tumor_type) if s.tumor_type else -1 for s in samples], dtype=int),
        p_tumor=np.array([results[i].tumor_probability for i in ok]),
        type_probs=types,
        phash=image_hashes([s.path for s in samples]),
        errors=[(ds.relpath(ds.samples[i]), r.error) for i, r in enumerate(results) if r.error],
        grayscale=lambda i: np.asarray(decode_image(samples[i].path)),
        warnings=[guard_warning(results[i]) for i in ok],
        verdicts=[results[i].verdict for i in ok],
        shown_types=[results[i].shown_type for i in ok],
        guard_ratios=[results[i].guard_ratio for i in ok],
    )


def score_decoded(predictor: Predictor, decoded: "DecodedSet", name: str = "the decoded set") -> Scored:
    """`score_dataset` for images already decoded and preprocessed (a cache, or a split of one): each array goes
    through the same scoring (and guard) as a file would, once."""
    if len(predictor.network.input_names) > 1:
        raise ValueError(f"{name}: a cache holds one preprocessing, and this ensemble reads each scan with each "
                         "member's own; evaluate it on the image folder")
    if decoded.preprocess != predictor.preprocess:
        raise ValueError(f"{name} was preprocessed as {decoded.preprocess}, the model needs {predictor.preprocess}")
    items = [ScanItem(str(path), [Slice("1", lambda a=a: Image.fromarray(a))])
             for path, a in zip(decoded.paths, decoded.images)]
    results = predictor.predict_items(items)
    types = (np.array([[r.type_probabilities[n] for n in predictor.class_names] for r in results])
             if results and results[0].type_probabilities else None)
    return Scored(list(decoded.paths), decoded.tumor, decoded.tumor_type,
                  np.array([r.tumor_probability for r in results]), types, decoded.phash,
                  list(decoded.errors), lambda i: decoded.images[i], [guard_warning(r) for r in results],
                  [r.verdict for r in results], [r.shown_type for r in results],
                  [r.guard_ratio for r in results])


def guard_warning(r: Prediction) -> str | None:
    """The guard's warning of a plain image, or None where it was assessed (a familiarity note is not an alarm)."""
    return None if r.reliable else r.warning


def verdict_counts(s: Scored, mask: np.ndarray | None = None) -> dict:
    """Tumors and normals per outcome (how many land in the uncertain band, how many tumors a clear card
    would show), and how often a shown tumor type was right where the true type is known; over the images
    `mask` selects (all by default)."""
    from braintriage import verdicts

    keep = np.ones(len(s.verdicts), dtype=bool) if mask is None else mask
    rows = [(v, t, st, k) for v, t, st, k, m in zip(s.verdicts, s.tumor, s.shown_types, s.type_index, keep) if m]
    counts = {v: {"tumor": sum(1 for x, t, _, _ in rows if x == v and t == 1),
                  "no_tumor": sum(1 for x, t, _, _ in rows if x == v and t == 0)}
              for v in verdicts.WORKLIST_ORDER if v != verdicts.ERROR}
    shown = [(st, TUMOR_TYPES[k]) for _, _, st, k in rows if st and st != verdicts.TYPE_UNCERTAIN and k > 0]
    return {"by_verdict": counts, "types_shown": len(shown), "types_shown_right": sum(a == b for a, b in shown),
            "type_uncertain": sum(st == verdicts.TYPE_UNCERTAIN for _, _, st, _ in rows)}


def default_train_data(data: str | Path) -> Path | None:
    """The training data that goes with `data`: the seed root's Training split, or the seed dataset
    ($BRAINTRIAGE_DATA, else ../shared/data/...) when `data` is not part of a seed-layout tree."""
    p = Path(data)
    if (p / "Training").is_dir():
        return p
    if (p.parent / "Training").is_dir() and p.resolve() != (p.parent / "Training").resolve():
        return p.parent / "Training"
    seed = Path(os.environ.get("BRAINTRIAGE_DATA", SEED_DATA_DEFAULT))
    return seed if (seed / "Training").is_dir() else None


def subset_metrics(s: Scored, mask: np.ndarray, threshold: float, n_boot: int) -> dict:
    y, p, t = s.tumor[mask], s.p_tumor[mask], s.type_index[mask]
    out = {"metrics": binary_metrics(y, p, threshold), "ci95": bootstrap_ci(y, p, threshold, n_boot)}
    out["sensitivity_by_type"] = {}
    for k, name in enumerate(TUMOR_TYPES):
        m = (t == k) & (y == 1)
        if name != "no_tumor" and m.any():
            hits = p[m] >= threshold
            out["sensitivity_by_type"][name] = {"n": int(m.sum()), "value": float(hits.mean()),
                                                "ci95": bootstrap_proportion(hits, n_boot)}
    if s.type_probs is not None and (t >= 0).all():
        out.update(type_metrics(t, s.type_probs[mask].argmax(1), n_boot))
    return out


def type_metrics(true: np.ndarray, predicted: np.ndarray, n_boot: int) -> dict:
    """Four-class scores of a tumor-type model: accuracy with its bootstrap interval, recall and precision
    per type, and the confusion matrix (rows: true type, columns: predicted, in TUMOR_TYPES order)."""
    labels = range(len(TUMOR_TYPES))
    recall = recall_score(true, predicted, labels=labels, average=None, zero_division=np.nan)
    precision = precision_score(true, predicted, labels=labels, average=None, zero_division=np.nan)
    return {"type_accuracy": float((predicted == true).mean()),
            "type_accuracy_ci95": bootstrap_proportion(predicted == true, n_boot),
            "type_recall": dict(zip(TUMOR_TYPES, map(float, recall))),
            "type_precision": dict(zip(TUMOR_TYPES, map(float, precision))),
            "type_confusion_matrix": confusion_matrix(true, predicted, labels=labels).tolist(),
            "type_labels": list(TUMOR_TYPES)}


def evaluate(data: str | Path, model_path: str | Path | None = None, split: str = "testing",
             output_dir: str | Path = "evaluation", train_data: str | Path | None = None,
             report_html: str | Path | None = None, n_boot: int = 1000) -> dict:
    predictor = Predictor(model_path)
    s = score_dataset(predictor, data, split)
    if len(s.paths) == 0:
        raise ValueError(f"{data}: no readable images to evaluate")
    threshold = predictor.threshold
    everything = np.ones(len(s.paths), dtype=bool)
    report = {
        "data": str(data), "split": None if str(data).endswith(".npz") else split,
        "model": str(predictor.model_path), "model_architecture": model_name(predictor.metadata),
        "unreadable": [{"path": a, "error": b} for a, b in s.errors],
        **subset_metrics(s, everything, threshold, n_boot),
        "metrics_at_0.5": binary_metrics(s.tumor, s.p_tumor, 0.5),
        "calibration": calibration(s.tumor, s.p_tumor),
        "ood_guard": None if not predictor.ood else {
            "threshold": predictor.ood["threshold"], "flagged": int(sum(w is not None for w in s.warnings)),
            "false_alarm_rate": float(np.mean([w is not None for w in s.warnings]))},
    }
    train_data = train_data or default_train_data(data)
    leaked = None
    if train_data is not None:
        leaked, nearest = leaked_mask(s.phash, dataset_hashes(train_data))
        report["leakage"] = {
            "train_data": str(train_data), "max_hamming_distance": NEAR_DUPLICATE_DISTANCE,
            "leaked_images": int(leaked.sum()), "unleaked_images": int((~leaked).sum()),
            "leaked_at_distance_0": int((nearest == 0).sum()),
        }
        report["unleaked"] = subset_metrics(s, ~leaked, threshold, n_boot) if (~leaked).any() else None
        if report["ood_guard"]:
            flagged = np.array([w is not None for w in s.warnings])
            report["ood_guard"]["unleaked_false_alarm_rate"] = float(flagged[~leaked].mean()) if (~leaked).any() \
                else None
    report["verdicts"] = verdict_counts(s)
    if report.get("unleaked"):
        report["unleaked"]["verdicts"] = verdict_counts(s, ~leaked)
    report["predictions"] = [
        {"path": a, "tumor": int(t), "tumor_probability": float(q), "verdict": s.verdicts[i],
         "type_shown": s.shown_types[i], "guard_flagged": s.warnings[i] is not None,
         "guard_ratio": s.guard_ratios[i],
         **({"leaked": bool(leaked[i])} if leaked is not None else {})}
        for i, (a, t, q) in enumerate(zip(s.paths, s.tumor, s.p_tumor))]

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    from braintriage import reports

    figures = reports.evaluation_figures(report, s.tumor, s.p_tumor, predictor.metadata)
    for name, png in figures.items():
        (out / f"{name}.png").write_bytes(png)
    if report_html:
        from braintriage.report_html import write_report

        write_report(report_html, report, figures, predictor.metadata, worst_errors(s, threshold))
    return report


def worst_errors(s: Scored, threshold: float, n: int = 6) -> dict[str, list[dict]]:
    """The most confident mistakes: tumors scored lowest (false negatives), normals scored highest."""
    fn = [i for i in np.argsort(s.p_tumor) if s.tumor[i] == 1 and s.p_tumor[i] < threshold][:n]
    fp = [i for i in np.argsort(-s.p_tumor) if s.tumor[i] == 0 and s.p_tumor[i] >= threshold][:n]

    def rows(ids):
        return [{"path": s.paths[i], "tumor_probability": float(s.p_tumor[i]), "image": s.grayscale(i)} for i in ids]

    return {"false_negatives": rows(fn), "false_positives": rows(fp)}


def held_out_scores_csv(predictions: list[dict]) -> bytes:
    """An evaluation's predictions (metrics.json) as the gzipped held-out scores file; mtime 0, so the same scores
    give the same bytes."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(HELD_OUT_SCORE_COLUMNS)
    for row in predictions:
        # Evaluations before guard_flagged was recorded: a plain image cannot be assessed only when flagged.
        flagged = row.get("guard_flagged", row.get("verdict") == "cannot_assess")
        ratio = row.get("guard_ratio")  # evaluations before it was recorded, or a model without a guard: blank
        writer.writerow((safe_cell(row["path"]), row["tumor"], f"{row['tumor_probability']:.6g}", int(flagged),
                         "" if ratio is None else f"{ratio:.6g}"))
    return gzip.compress(text.getvalue().encode(), mtime=0)


def read_held_out_scores(path: str | Path) -> dict[str, np.ndarray]:
    """A kept held-out scores file: each image's path (relative to the data folder), P(tumor), whether it is a
    tumor, whether the guard flagged it, and the guard's score in units of its threshold (NaN in files kept before
    it was recorded)."""
    with gzip.open(path, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    return {"path": np.array([r["path"] for r in rows]),
            "p_tumor": np.array([float(r["p_tumor"]) for r in rows]),
            "tumor": np.array([r["tumor"] == "1" for r in rows]),
            "guard_flagged": np.array([r["guard_flagged"] == "1" for r in rows]),
            "guard_ratio": np.array([float(r.get("guard_ratio") or "nan") for r in rows])}
