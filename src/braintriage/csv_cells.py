"""CSV cells that a spreadsheet shows as text, never runs.

A file named `=HYPERLINK(...)` (or any cell text starting with =, +, -, @, a tab or a carriage return) would be
taken as a formula by Excel, LibreOffice and Google Sheets when a clinician opens the results. Every CSV this
project writes passes its text cells through `safe_cell`, which prefixes such a cell with an apostrophe (the
OWASP advice: the value stays readable, the formula inert). Numbers are written as numbers.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv_rows(path: str | Path, header: list[str], rows: Iterable[list[Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([safe_cell(h) for h in header])
        for row in rows:
            writer.writerow([safe_cell(v) for v in row])


def write_csv_dicts(path: str | Path, rows: list[dict]) -> None:
    """Rows of one shape (the first row's keys are the header)."""
    header = list(rows[0])
    write_csv_rows(path, header, ([row.get(k, "") for k in header] for row in rows))
