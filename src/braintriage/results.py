"""Prediction results for people and spreadsheets: the terminal table (printed as results come) and the CSV
file."""

from __future__ import annotations

import os
import re
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import click

from braintriage import verdicts
from braintriage.csv_cells import write_csv_rows
from braintriage.inference import Prediction, Predictor
from braintriage.scans import ScanItem

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


# click.style arguments: the verdict's colour; NO_COLOR (no-color.org) turns colour off, as a pipe does.
STYLES = {verdicts.TUMOR_SUSPECTED: {"fg": "yellow", "bold": True}, verdicts.CANNOT_ASSESS: {"fg": "magenta"},
          verdicts.UNCERTAIN: {"fg": "cyan"}, verdicts.NO_TUMOR_DETECTED: {"fg": "green"},
          verdicts.ERROR: {"fg": "red"}}
# Control characters (an escape sequence in a file name would drive the terminal) and bidirectional overrides
# (which reorder what follows them on screen) are shown as their escapes.
UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
PATH_COLUMN_MAX = 48  # wider paths push their own line's other columns right, not every line's
SCORE_COLUMN = "suspicion (P(tumor))"


def triage(predictor: Predictor, items: list[ScanItem], table: bool) -> list[Prediction]:
    """Score `items`; with `table`, print each batch's rows on the terminal while the next batch is scored."""
    results: list[Prediction] = []
    paths, printer = [it.path for it in items], None
    for finished in predictor.predict_as_ready(items):
        results += finished
        if table:  # the table starts once the model has: its header (the model's digest) holds up no batch
            printer = printer or TerminalTable(predictor, paths)
            printer.add(finished)
    if table:
        (printer or TerminalTable(predictor, paths)).close(results)
    return results


class TerminalTable:
    """One line per image or study, in input order, printed as results come: the path (under the folder the
    paths share, named once above), the suspicion and the verdict, with what else a reader must know after it.
    Lines are never cut: a long one wraps on the terminal. Control characters are printed as their escapes
    (`printable`). Plain click, not Rich: Rich's import and layout took a tenth of a 394-scan run."""

    def __init__(self, predictor: Predictor, paths: list[str]):
        self.color = False if os.environ.get("NO_COLOR") else None  # None: colour on a terminal only
        self.folder = shared_folder(paths)
        self.path_width = min(PATH_COLUMN_MAX, max((len(self.shown_path(p)) for p in paths), default=4))
        low, high = predictor.band
        header = [click.style(f"braintriage ({predictor.model_id}): tumor suspected at P >= {high:.3f}, "
                              f"uncertain from {low:.3f}", bold=True)]
        if self.folder:
            header.append(f"paths under {printable(self.folder)}{os.sep}")
        header.append(click.style(f"{'path'.ljust(self.path_width)}  {SCORE_COLUMN}  verdict", bold=True))
        click.echo("\n".join(header), color=self.color)

    def shown_path(self, path: str) -> str:
        return printable(path[len(self.folder) + len(os.sep):] if self.folder else path)

    def add(self, results: list[Prediction]) -> None:
        click.echo("\n".join(map(self.line, results)), color=self.color)

    def line(self, r: Prediction) -> str:
        score = "" if r.tumor_probability is None else \
            f"{r.suspicion} ({verdicts.probability_text(r.tumor_probability)})"
        verdict = "".join(click.style(text, **style) if style else text for text, style in verdict_parts(r))
        return f"{self.shown_path(r.path).ljust(self.path_width)}  {score.rjust(len(SCORE_COLUMN))}  {verdict}"

    def close(self, results: list[Prediction]) -> None:
        click.echo(summary(results) + "\n" + click.style(NOTICE, dim=True), color=self.color)


def printable(text: str) -> str:
    """`text` with each control character written as its escape: "a\\x1b[2J.png", not a cleared screen."""
    return UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], text)


def shared_folder(paths: list[str]) -> str:
    """The folder every path is under, as the paths spell it ("" for one path, or none shared)."""
    if len(paths) < 2:
        return ""
    try:
        folder = os.path.commonpath([os.path.dirname(p) for p in paths])
    except ValueError:  # absolute and relative paths mixed
        return ""
    if folder in ("", os.sep) or not all(p.startswith(folder + os.sep) for p in paths):
        return ""
    return folder


def verdict_parts(r: Prediction) -> list[tuple[str, dict]]:
    """The verdict in words, then what else a reader must know about this row: (text, click.style arguments)."""
    red, magenta, dim = {"fg": "red"}, {"fg": "magenta"}, {"dim": True}
    parts = [(verdicts.HEADLINES[r.verdict], STYLES[r.verdict])]
    if r.verdict == verdicts.ERROR:
        return parts + [(f" ({printable(r.error or '')})", red)]
    if r.warning:
        parts.append((f" ({printable(r.warning)})", magenta))
    if r.shown_type:
        parts.append((f"; type: {r.shown_type.replace('_', ' ')}", {}))
    if r.verdict == verdicts.NO_TUMOR_DETECTED:
        parts.append((f". {verdicts.CLEAR_CAUTION}", dim))
    if r.error:
        parts.append((f" ({printable(r.error)})", red))
    if r.study:
        study = f"; study {r.study} ({r.slices} slices; most suspicious {', '.join(r.top_slices)})"
        parts.append((printable(study), dim))
    return parts
