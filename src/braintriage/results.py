"""Prediction results for people and spreadsheets: the terminal table and the CSV file."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from braintriage import verdicts
from braintriage.csv_cells import write_csv_rows
from braintriage.inference import Prediction, Predictor

# One row per plain image or per study (DICOM series, multi-frame file, NIfTI volume): `study` names a study
# (a hash of its Study Instance UID, or the volume's file name), `slices` counts its slices and `top_slices`
# lists the most suspicious ones, most suspicious first, separated by ";".
# `verdict` is what to act on (verdicts.py): tumor_suspected, uncertain, cannot_assess (not like brain MRI:
# needs a human read; the score is then secondary), no_tumor_detected, or error. `prediction` is the plain
# call at the model's threshold, `suspicion` the score in words; `type` the tumor type where it is shown
# (suspected tumors whose type reaches the model's display rule), else "type uncertain" or empty.
# `model` names the model file (network and SHA-256 prefix), `analysed_at` the time of the analysis (UTC).
# For a model trained on tumor types, --types adds the raw `predicted_type` and one probability per type
# (for a study: those of its most suspicious slice), for those who retrain and audit models.
CSV_COLUMNS = ["path", "study", "verdict", "suspicion", "tumor_probability", "prediction", "type", "slices",
               "top_slices", "error", "warning", "model", "analysed_at"]
TYPE_COLUMNS = ["predicted_type", "probability_no_tumor", "probability_glioma", "probability_meningioma",
                "probability_pituitary"]
NOTICE = ("Decision support only, not a diagnosis: a suspected tumor means refer for specialist review; "
          + verdicts.CLEAR_CAUTION[0].lower() + verdicts.CLEAR_CAUTION[1:])


def summary(results: list[Prediction]) -> str:
    """How many scans need what, in worklist order: '2 tumor suspected, 1 uncertain, 5 no tumor detected'."""
    counts = Counter(r.verdict for r in results)
    return ", ".join(f"{counts[v]} {v.replace('_', ' ')}" for v in verdicts.WORKLIST_ORDER if counts[v])


def write_predictions_csv(results: list[Prediction], path: str | Path, predictor: Predictor,
                          with_types: bool = False) -> None:
    """The predictions CSV; text cells that a spreadsheet would run as formulas are neutralised (csv_cells)."""
    analysed_at = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def row(r: Prediction) -> list:
        p = "" if r.tumor_probability is None else f"{r.tumor_probability:.6f}"
        cells = [r.path, r.study or "", r.verdict, r.suspicion or "", p, r.prediction or "", r.shown_type or "",
                 r.slices, ";".join(r.top_slices), r.error or "", r.warning or "", predictor.model_id, analysed_at]
        if with_types:
            probs = r.type_probabilities or {}
            cells += [r.predicted_type or ""] + [
                f"{probs[c.removeprefix('probability_')]:.6f}" if probs else "" for c in TYPE_COLUMNS[1:]]
        return cells

    write_csv_rows(path, CSV_COLUMNS + (TYPE_COLUMNS if with_types else []), map(row, results))


STYLES = {verdicts.TUMOR_SUSPECTED: "bold yellow", verdicts.CANNOT_ASSESS: "magenta", verdicts.UNCERTAIN: "cyan",
          verdicts.NO_TUMOR_DETECTED: "green", verdicts.ERROR: "red"}


def verdict_cell(r: Prediction) -> str:
    """The verdict in words, styled; what else a reader must know about this row after it."""
    from rich.markup import escape  # a file named "x[/bold].jpg" is a name, not markup

    style = STYLES[r.verdict]
    text = f"[{style}]{verdicts.HEADLINES[r.verdict]}[/{style}]"
    if r.verdict == verdicts.ERROR:
        return text + f" [red]({escape(r.error or '')})[/red]"
    if r.verdict == verdicts.CANNOT_ASSESS and r.warning:
        text += f" [magenta]({escape(r.warning)})[/magenta]"
    elif r.warning:
        text += f" [magenta]({escape(r.warning)})[/magenta]"
    if r.shown_type:
        text += f"; type: {r.shown_type.replace('_', ' ')}"
    if r.verdict == verdicts.NO_TUMOR_DETECTED:
        text += f". [dim]{verdicts.CLEAR_CAUTION}[/dim]"
    if r.error:
        text += f" [red]({escape(r.error)})[/red]"
    return text


def print_predictions(results: list[Prediction], predictor: Predictor) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    low, high = predictor.band
    table = Table(title=f"braintriage ({escape(predictor.model_id)}; suspected at P >= {high:.3f}, uncertain "
                        f"from {low:.3f})", caption=NOTICE)
    studies = any(r.study for r in results)
    table.add_column("path", overflow="fold")
    if studies:
        table.add_column("study (slices; most suspicious)", overflow="fold")
    table.add_column("suspicion (P(tumor))", justify="right")
    table.add_column("verdict")
    for r in results:
        study = [escape(f"{r.study} ({r.slices}; {', '.join(r.top_slices)})") if r.study else ""] if studies else []
        score = ("" if r.tumor_probability is None else
                 f"{r.suspicion} ({verdicts.probability_text(r.tumor_probability)})")
        table.add_row(escape(r.path), *study, score, verdict_cell(r))
    console = Console()
    console.print(table)
    console.print(summary(results))
