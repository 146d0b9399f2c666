"""The four outcomes a clinician acts on, and how a probability is put into words.

Every caller (CLI table and CSV, web API and page, evaluation) takes its verdict from here:

- `tumor_suspected`: P(tumor) at or above the top of the uncertain band: refer for specialist review.
- `cannot_assess`: the input is not like the brain MRI slices the model learned from (out-of-distribution,
  blank, a study whose slices all fail the guard), or a study with slices that could not be read and no
  suspected tumor on the rest (the missing slices may hold one): it could not be assessed and needs a human
  read. The model's score is still given, as secondary information.
- `uncertain`: P(tumor) inside the band around the threshold where, out of fold, tumors and normals were
  mixed (operating_point.uncertain_band): neither clearly high nor clearly low; a human reads it. Where a model
  file turns the familiarity rule on (its guard's `familiar_below`, `calibrate-ood --familiar-percentile`; off in
  the bundled model), also a score below the band on a scan less like the training scans than that share of the
  validation normals, short of an alarm: on collections a model never trained on, low scores hid tumors
  (docs/model.md, sessions 39-40).
- `no_tumor_detected`: below the band (and, under the familiarity rule, on a familiar scan). A clear result does
  not rule a tumor out.
- `error`: the file could not be read at all.

A model file without a band (made before there was one) has an empty band at its threshold: two outcomes.
"""

from __future__ import annotations

from typing import Iterable

TUMOR_SUSPECTED, CANNOT_ASSESS, UNCERTAIN, NO_TUMOR_DETECTED, ERROR = (
    "tumor_suspected", "cannot_assess", "uncertain", "no_tumor_detected", "error")
# Worklist order: what most needs a specialist first; a failed file is listed last (nothing was assessed).
WORKLIST_ORDER = (TUMOR_SUSPECTED, CANNOT_ASSESS, UNCERTAIN, NO_TUMOR_DETECTED, ERROR)
NEEDS_REVIEW = (TUMOR_SUSPECTED, CANNOT_ASSESS, UNCERTAIN)

HEADLINES = {
    TUMOR_SUSPECTED: "Tumor suspected: refer for specialist review",
    CANNOT_ASSESS: "Could not be assessed: needs a human read",
    UNCERTAIN: "Uncertain: needs a human read",
    NO_TUMOR_DETECTED: "No tumor detected",
    ERROR: "Could not be read",
}
CLEAR_CAUTION = "A clear result does not rule out a tumor."
UNFAMILIAR_NOTE = ("less like the scans the model learned from than most of its validation normals: a low score "
                   "here is not a clear result")
TYPE_UNCERTAIN = "type uncertain"


def verdict(tumor_probability: float | None, reliable: bool, band: tuple[float, float], complete: bool = True,
            familiar: bool = True) -> str:
    """The outcome of one scan: `band` = (low, high) from the model file (`Predictor.band`); `complete` is
    False for a study some of whose slices could not be read; `familiar` is False for a scan less like the
    training scans than the model's `familiar_below` allows (`is_familiar`)."""
    if tumor_probability is None:
        return ERROR
    if not reliable:
        return CANNOT_ASSESS
    low, high = band
    if tumor_probability >= high:
        return TUMOR_SUSPECTED  # whatever else is missing, this already needs a specialist
    if not complete:
        return CANNOT_ASSESS
    return UNCERTAIN if tumor_probability >= low or not familiar else NO_TUMOR_DETECTED


def is_familiar(guard_ratio: float | None, familiar_below: float | None) -> bool:
    """Whether a scan is familiar enough for a clear result: its guard score (in units of the alarm threshold) at
    most the model's `familiar_below`. Without either (no guard, a model file from before session 40, a score not
    recorded) every scan is."""
    return guard_ratio is None or familiar_below is None or not guard_ratio > familiar_below  # NaN: not recorded


def of_scores(tumor_probabilities: Iterable[float], guard_flagged: Iterable[bool], band: tuple[float, float],
              guard_ratios: Iterable[float | None] | None = None,
              familiar_below: float | Iterable[float | None] | None = None) -> list[str]:
    """The verdicts of plain images already scored (kept held-out scores): what `Predictor` would give each.
    `familiar_below` is one model's, or one per image where each was scored by its own guard (a CV's fold guards)."""
    p, flagged = list(tumor_probabilities), list(guard_flagged)
    ratios = list(guard_ratios) if guard_ratios is not None else [None] * len(p)
    below = list(familiar_below) if isinstance(familiar_below, Iterable) else [familiar_below] * len(p)
    return [verdict(float(q), not f, band, familiar=is_familiar(r, b)) for q, f, r, b in zip(p, flagged, ratios, below)]


def suspicion(tumor_probability: float, band: tuple[float, float]) -> str:
    """Words first: high above the band, moderate inside it, low below it."""
    low, high = band
    return "high" if tumor_probability >= high else "moderate" if tumor_probability >= low else "low"


def probability_text(p: float) -> str:
    """A percentage people read without false certainty: never "0.0%" or "100.0%"."""
    if p < 0.01:
        return "< 1%"
    if p > 0.99:
        return "> 99%"
    return f"{100 * p:.0f}%"


def shown_type(outcome: str, type_probabilities: dict[str, float] | None, min_probability: float | None
               ) -> str | None:
    """The tumor type to show: only for a suspected tumor, only the most likely *tumor* type (never
    "no tumor"), and only when its probability among the tumor types reaches the model's `min_probability`
    (operating_point.type_display_rule); otherwise "type uncertain". None where no type is shown at all."""
    if outcome != TUMOR_SUSPECTED or not type_probabilities:
        return None
    tumor_types = {k: v for k, v in type_probabilities.items() if k != "no_tumor"}
    total = sum(tumor_types.values())
    if not tumor_types or total <= 0 or min_probability is None:
        return TYPE_UNCERTAIN
    best = max(tumor_types, key=tumor_types.get)
    return best if tumor_types[best] / total >= min_probability else TYPE_UNCERTAIN
