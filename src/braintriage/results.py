"""Prediction results for people and spreadsheets: the terminal table and the CSV file."""

from __future__ import annotations

from pathlib import Path

from braintriage.csv_cells import write_csv_rows
from braintriage.inference import Prediction, Predictor

# One row per plain image or per study (DICOM series, multi-frame file, NIfTI volume): `study` names a study
# (a hash of its Study Instance UID, or the volume's file name), `slices` counts its slices and `top_slices`
# lists the most suspicious ones, most suspicious first, separated by ";".
# For a model trained on tumor types, `predicted_type` and one probability per type follow (for a study:
# those of its most suspicious slice).
# `warning` is set when the input does not look like a brain MRI slice: its prediction is not to be trusted.
CSV_COLUMNS = ["path", "study", "tumor_probability", "prediction", "slices", "top_slices", "error", "warning"]
TYPE_COLUMNS = ["predicted_type", "probability_no_tumor", "probability_glioma", "probability_meningioma",
                "probability_pituitary"]
NOTICE = "Decision support only, not a diagnosis: a suspected tumor means refer for specialist review."


def write_predictions_csv(results: list[Prediction], path: str | Path, with_types: bool = False) -> None:
    """The predictions CSV; text cells that a spreadsheet would run as formulas are neutralised (csv_cells)."""
    def row(r: Prediction) -> list:
        p = "" if r.tumor_probability is None else f"{r.tumor_probability:.6f}"
        cells = [r.path, r.study or "", p, r.prediction or "", r.slices, ";".join(r.top_slices), r.error or "",
                 r.warning or ""]
        if with_types:
            probs = r.type_probabilities or {}
            cells += [r.predicted_type or ""] + [
                f"{probs[c.removeprefix('probability_')]:.6f}" if probs else "" for c in TYPE_COLUMNS[1:]]
        return cells

    write_csv_rows(path, CSV_COLUMNS + (TYPE_COLUMNS if with_types else []), map(row, results))


def print_predictions(results: list[Prediction], predictor: Predictor) -> None:
    from rich.console import Console
    from rich.markup import escape  # a file named "x[/bold].jpg" is a name, not markup
    from rich.table import Table

    table = Table(title=f"braintriage ({predictor.metadata['architecture']}, threshold "
                        f"{predictor.threshold:.3f})", caption=NOTICE)
    studies = any(r.study for r in results)
    table.add_column("path", overflow="fold")
    if studies:
        table.add_column("study (slices; most suspicious)", overflow="fold")
    table.add_column("P(tumor)", justify="right")
    table.add_column("verdict")
    for r in results:
        study = [escape(f"{r.study} ({r.slices}; {', '.join(r.top_slices)})") if r.study else ""] if studies else []
        if r.tumor_probability is None:
            table.add_row(escape(r.path), *study, "", f"[red]error: {escape(r.error or '')}[/red]")
        else:
            verdict = ("[bold yellow]tumor suspected: refer[/bold yellow]" if r.prediction == "tumor"
                       else "no tumor detected")
            if not r.reliable:
                verdict = f"[magenta]no verdict: {escape(r.warning)}[/magenta] (model: {r.prediction})"
            elif r.warning:
                verdict += f" [magenta]({escape(r.warning)})[/magenta]"
            if r.error:
                verdict += f" [red]({escape(r.error)})[/red]"
            table.add_row(escape(r.path), *study, f"{r.tumor_probability:.3f}", verdict)
    Console().print(table)
