"""Evaluate a model on a labelled dataset: metrics as JSON, confusion matrices as PNG.

Images are scored by the same `Predictor` that `predict` uses. A decoded cache file (.npz) is accepted too,
so a GPU machine without the dataset can evaluate; its images are already preprocessed the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix

from braintriage.datasets import TUMOR_TYPES, load_dataset
from braintriage.inference import Predictor
from braintriage.metrics import binary_metrics


def score_dataset(predictor: Predictor, data: str | Path, split: str = "testing"):
    """(paths, tumor labels, type indices (-1 unknown), P(tumor), type probabilities or None, errors)."""
    if str(data).endswith(".npz"):
        from braintriage.cache import DecodedSet

        decoded = DecodedSet.load(data)
        if decoded.preprocess != predictor.preprocess:
            raise ValueError(f"{data} was preprocessed as {decoded.preprocess}, the model needs "
                             f"{predictor.preprocess}")
        p, types = predictor.predict_arrays(decoded.images)
        return list(decoded.paths), decoded.tumor, decoded.tumor_type, p, types, list(decoded.errors)
    ds = load_dataset(data, split=split)
    results = predictor.predict_files([str(s.path) for s in ds.samples])
    ok = [i for i, r in enumerate(results) if r.error is None]
    errors = [(results[i].path, results[i].error) for i in range(len(results)) if results[i].error]
    tumor = np.array([ds.samples[i].tumor for i in ok])
    type_index = np.array([TUMOR_TYPES.index(ds.samples[i].tumor_type) if ds.samples[i].tumor_type else -1
                           for i in ok])
    p = np.array([results[i].tumor_probability for i in ok])
    types = (np.array([[results[i].type_probabilities[n] for n in predictor.class_names] for i in ok])
             if ok and results[ok[0]].type_probabilities else None)
    return [ds.relpath(ds.samples[i]) for i in ok], tumor, type_index, p, types, errors


def evaluate(data: str | Path, model_path: str | Path | None = None, split: str = "testing",
             output_dir: str | Path = "evaluation") -> dict:
    predictor = Predictor(model_path)
    paths, tumor, type_index, p, types, errors = score_dataset(predictor, data, split)
    if len(paths) == 0:
        raise ValueError(f"{data}: no readable images to evaluate")
    report = {
        "data": str(data), "split": split if not str(data).endswith(".npz") else None,
        "model": str(predictor.model_path), "model_architecture": predictor.metadata["architecture"],
        "unreadable": [{"path": a, "error": b} for a, b in errors],
        "metrics": binary_metrics(tumor, p, predictor.threshold),
        "metrics_at_0.5": binary_metrics(tumor, p, 0.5),
    }
    if types is not None and (type_index >= 0).all():
        predicted = types.argmax(1)
        report["type_accuracy"] = float((predicted == type_index).mean())
        report["type_confusion_matrix"] = confusion_matrix(type_index, predicted,
                                                           labels=range(len(TUMOR_TYPES))).tolist()
        report["type_labels"] = list(TUMOR_TYPES)
    report["predictions"] = [{"path": a, "tumor": int(t), "tumor_probability": float(q)}
                             for a, t, q in zip(paths, tumor, p)]

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    from braintriage.reports import plot_confusion_matrix

    plot_confusion_matrix(report["metrics"]["confusion_matrix"], ["no_tumor", "tumor"],
                          out / "confusion_matrix.png", f"threshold {predictor.threshold:.3f}")
    if "type_confusion_matrix" in report:
        plot_confusion_matrix(report["type_confusion_matrix"], list(TUMOR_TYPES),
                              out / "type_confusion_matrix.png", "tumor type")
    return report
