"""Prediction results for people and spreadsheets: the terminal table and the CSV file."""

from __future__ import annotations

import csv
from pathlib import Path

from braintriage.inference import Prediction, Predictor

CSV_COLUMNS = ["path", "tumor_probability", "prediction", "error"]
NOTICE = "Decision support only, not a diagnosis: a suspected tumor means refer for specialist review."


def write_predictions_csv(results: list[Prediction], path: str | Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in results:
            p = "" if r.tumor_probability is None else f"{r.tumor_probability:.6f}"
            writer.writerow([r.path, p, r.prediction or "", r.error or ""])


def print_predictions(results: list[Prediction], predictor: Predictor) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"braintriage ({predictor.metadata['architecture']}, threshold "
                        f"{predictor.threshold:.3f})", caption=NOTICE)
    table.add_column("path", overflow="fold")
    table.add_column("P(tumor)", justify="right")
    table.add_column("verdict")
    for r in results:
        if r.error:
            table.add_row(r.path, "", f"[red]error: {r.error}[/red]")
        else:
            verdict = ("[bold yellow]tumor suspected: refer[/bold yellow]" if r.prediction == "tumor"
                       else "no tumor detected")
            table.add_row(r.path, f"{r.tumor_probability:.3f}", verdict)
    Console().print(table)
