"""The four outcomes, the words for a probability, the uncertain band and the type display rule."""

import numpy as np
import pytest

from braintriage import verdicts
from braintriage.modelfile import _schema_problems
from braintriage.operating_point import type_display_rule, uncertain_band

BAND = (0.3, 0.9)


def test_each_outcome_at_its_edges():
    assert verdicts.verdict(None, True, BAND) == "error"
    assert verdicts.verdict(0.99, False, BAND) == "cannot_assess"  # the guard wins over any score
    assert verdicts.verdict(0.9, True, BAND) == "tumor_suspected"
    assert verdicts.verdict(0.8999, True, BAND) == "uncertain"
    assert verdicts.verdict(0.3, True, BAND) == "uncertain"
    assert verdicts.verdict(0.2999, True, BAND) == "no_tumor_detected"
    # A model file without a band: two outcomes at its threshold.
    assert [verdicts.verdict(p, True, (0.5, 0.5)) for p in (0.49, 0.5)] == ["no_tumor_detected", "tumor_suspected"]
    assert [verdicts.suspicion(p, BAND) for p in (0.95, 0.5, 0.1)] == ["high", "moderate", "low"]


def test_probabilities_never_read_as_certainty():
    assert verdicts.probability_text(0.0) == "< 1%" and verdicts.probability_text(0.004) == "< 1%"
    assert verdicts.probability_text(1.0) == "> 99%" and verdicts.probability_text(0.9999) == "> 99%"
    assert verdicts.probability_text(0.372) == "37%"


def test_a_type_is_shown_only_for_a_suspected_tumor_and_never_no_tumor():
    probs = {"no_tumor": 0.45, "glioma": 0.05, "meningioma": 0.4, "pituitary": 0.1}
    assert verdicts.shown_type("tumor_suspected", probs, 0.6) == "meningioma"  # 0.4 / 0.55 = 0.73 of tumor
    assert verdicts.shown_type("tumor_suspected", probs, 0.8) == "type uncertain"
    assert verdicts.shown_type("tumor_suspected", probs, None) == "type uncertain"  # no rule in the file
    for outcome in ("uncertain", "no_tumor_detected", "cannot_assess", "error"):
        assert verdicts.shown_type(outcome, probs, 0.1) is None


def test_the_band_holds_the_mixed_scores_and_the_threshold():
    rng = np.random.default_rng(0)
    # Normals score 0-0.6, tumors 0.4-1: mixed between 0.4 and 0.6, clear outside.
    p = np.concatenate([rng.uniform(0, 0.6, 2000), rng.uniform(0.4, 1, 2000)])
    y = np.repeat([0, 1], 2000)
    band = uncertain_band(y, p, threshold=0.5)
    assert 0.35 < band["low"] <= 0.5 <= band["high"] < 0.65
    assert band["out_of_fold"]["tumors_below"] <= 5 and band["out_of_fold"]["normals_above"] <= 5
    # A threshold outside the mixed range still lies inside the band (the band never excludes it).
    far = uncertain_band(y, p, threshold=0.8)
    assert far["low"] <= 0.8 <= far["high"]


def test_the_band_leaves_at_most_four_in_five_normals_below_it():
    rng = np.random.default_rng(2)
    # Normals 0-0.5, tumors 0.5-1: the rate rule alone would clear every normal (low edge 0.5).
    p = np.concatenate([rng.uniform(0, 0.5, 1000), rng.uniform(0.5, 1, 1000)])
    y = np.repeat([0, 1], 1000)
    band = uncertain_band(y, p, threshold=0.5)
    assert band["out_of_fold"]["normals_below"] == np.sum(p[y == 0] < band["low"]) == 800
    assert 0.39 < band["low"] < 0.41 and "0.8 of the normals" in band["rule"]
    assert uncertain_band(y, p, threshold=0.5, normals_clear=1.0)["low"] > 0.49


def test_the_type_rule_reaches_its_precision():
    rng = np.random.default_rng(1)
    names = ["glioma", "meningioma", "pituitary"]
    n = 3000
    truth = rng.integers(0, 3, n)
    confidence = rng.uniform(0.34, 1, n)
    right = rng.uniform(0, 1, n) < confidence  # the more confident, the more often right
    guess = np.where(right, truth, (truth + 1) % 3)
    probs = np.full((n, 3), 0.0)
    probs[np.arange(n), guess] = confidence
    probs[np.arange(n), (guess + 2) % 3] = 1 - confidence
    rule = type_display_rule(np.array(names)[truth], probs, names, np.ones(n), suspected_from=0.9, precision=0.9)
    shown = confidence >= rule["min_probability"]
    assert (guess[shown] == truth[shown]).mean() >= 0.9 and 0.75 < rule["min_probability"] < 0.9
    assert rule["out_of_fold"]["shown"] == shown.sum()


@pytest.mark.parametrize("band", [{"low": 0.6, "high": 0.9}, {"low": 0.1, "high": 0.4}, {"low": "x", "high": 1},
                                  [0.1, 0.9]])
def test_a_band_that_does_not_hold_the_threshold_is_refused(band):
    meta = {"threshold": 0.5, "uncertain_band": band}
    assert "uncertain_band" in [field for field, _ in _schema_problems(meta)]
    ok = {"threshold": 0.5, "uncertain_band": {"low": 0.2, "high": 0.9}}
    assert "uncertain_band" not in [field for field, _ in _schema_problems(ok)]


def test_a_study_with_unreadable_slices_is_never_called_clear():
    assert verdicts.verdict(0.1, True, BAND, complete=False) == "cannot_assess"
    assert verdicts.verdict(0.5, True, BAND, complete=False) == "cannot_assess"
    assert verdicts.verdict(0.95, True, BAND, complete=False) == "tumor_suspected"  # refer whatever is missing


@pytest.mark.dataset
def test_the_predictor_marks_a_partly_unreadable_study_cannot_assess(seed_data):
    from PIL import Image

    from braintriage.inference import Predictor
    from braintriage.preprocess import ImageReadError
    from braintriage.scans import ScanItem, Slice

    def broken():
        raise ImageReadError("truncated pixel data")

    normals = [seed_data / "Testing" / "no_tumor" / f"image({k}).jpg" for k in (1, 10, 100)]
    normal = [Slice(str(k), lambda p=p: Image.open(p).convert("L")) for k, p in enumerate(normals)]
    predictor = Predictor()
    whole, partial = predictor.predict_items([ScanItem("whole", normal, study="s1"),
                                              ScanItem("partial", normal + [Slice("4", broken)], study="s2")])
    assert whole.verdict == "no_tumor_detected"  # measured: P(tumor) 0.04, 0.007 and 0.000 on the three
    assert partial.verdict == "cannot_assess"  # the same slices and one more that could not be read
    assert partial.error == "1 of 4 slices could not be read; scored on the rest"


def test_a_low_score_on_an_unfamiliar_scan_is_not_shown_clear():
    assert verdicts.verdict(0.01, True, BAND, familiar=False) == "uncertain"
    assert verdicts.verdict(0.95, True, BAND, familiar=False) == "tumor_suspected"  # only green is withheld
    assert verdicts.verdict(0.95, False, BAND, familiar=False) == "cannot_assess"
    assert verdicts.is_familiar(0.5, 0.5) and not verdicts.is_familiar(0.51, 0.5)
    # No guard score, no familiar_below (model files before session 40), or a score not recorded: no rule.
    assert verdicts.is_familiar(None, 0.5) and verdicts.is_familiar(0.9, None) and verdicts.is_familiar(np.nan, 0.5)
    assert verdicts.of_scores([0.01, 0.01, 0.5], [False, False, False], BAND, [0.2, 0.8, 0.8], 0.5) == [
        "no_tumor_detected", "uncertain", "uncertain"]


@pytest.mark.dataset
def test_the_predictor_reads_an_unfamiliar_clear_scan_as_uncertain_with_a_note(seed_data, tmp_path):
    from braintriage.evaluate import guard_warning
    from braintriage.inference import Predictor
    from braintriage.modelfile import read_metadata, update_metadata

    normals = [str(seed_data / "Testing" / "no_tumor" / f"image({k}).jpg") for k in (1, 10, 100)]
    plain = Predictor().predict_files(normals)
    assert [r.verdict for r in plain] == ["no_tumor_detected"] * 3  # measured: P(tumor) 0.04, 0.007 and 0.000
    guard = read_metadata(Predictor().model_path)["ood"]
    ratios = [r.guard_ratio for r in plain]
    # familiar_below between the scans' own guard scores: the less familiar ones lose green, with the note.
    cut = float(np.median(ratios))
    strict = tmp_path / "strict.onnx"
    update_metadata(Predictor().model_path, strict, {"ood": {**guard, "familiar_below": cut}})
    read = Predictor(strict).predict_files(normals)
    assert [r.verdict for r in read] == ["uncertain" if q > cut else "no_tumor_detected" for q in ratios]
    assert sum(r.verdict == "uncertain" for r in read) == 1
    for r in read:
        assert r.reliable and guard_warning(r) is None  # a note, not a guard alarm
        assert (r.warning == verdicts.UNFAMILIAR_NOTE) == (r.verdict == "uncertain")
