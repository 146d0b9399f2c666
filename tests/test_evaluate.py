import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from braintriage.cli import app
from braintriage.metrics import bootstrap_ci, calibration
from conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, require_chromium



def test_bootstrap_intervals_contain_the_estimate_and_shrink_with_data():
    rng = np.random.default_rng(0)
    small_y = rng.integers(0, 2, 60)
    small_p = np.clip(small_y * 0.3 + rng.random(60) * 0.6, 0, 1)
    big_y, big_p = np.tile(small_y, 10), np.tile(small_p, 10)
    small, big = bootstrap_ci(small_y, small_p, 0.5, 300), bootstrap_ci(big_y, big_p, 0.5, 300)
    acc = ((small_p >= 0.5) == small_y).mean()
    assert small["accuracy"][0] <= acc <= small["accuracy"][1]
    assert big["accuracy"][1] - big["accuracy"][0] < small["accuracy"][1] - small["accuracy"][0]


def test_calibration_error_is_zero_when_probabilities_match_frequencies():
    p = np.repeat([0.25, 0.75], 400)
    y = np.concatenate([np.arange(400) < 100, np.arange(400) < 300]).astype(int)
    assert calibration(y, p)["ece"] == pytest.approx(0.0, abs=1e-9)
    assert calibration(y, 1 - p)["ece"] == pytest.approx(0.5, abs=1e-9)


@pytest.fixture(scope="module")
def small_testing_set(seed_data, tmp_path_factory) -> Path:
    """A manifest of 48 Testing images: 12 of each folder."""
    manifest = tmp_path_factory.mktemp("subset") / "testing_subset.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for folder in ("glioma_tumor", "meningioma_tumor", "pituitary_tumor", "no_tumor"):
            for p in sorted((seed_data / "Testing" / folder).iterdir())[::6][:12]:
                w.writerow([p, folder])
    return manifest


@pytest.mark.dataset
def test_report_renders_in_headless_chromium(seed_data, small_testing_set, tmp_path):
    report = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["evaluate", str(small_testing_set), "--output-dir", str(tmp_path / "ev"),
                                      "--train-data", str(seed_data), "--report", str(report),
                                      "--bootstrap", "200"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["leakage"]["leaked_images"] + metrics["leakage"]["unleaked_images"] == 48
    for name in ("accuracy", "sensitivity", "roc_auc"):
        lo, hi = metrics["ci95"][name]
        assert lo <= metrics["metrics"][name] <= hi
    assert set(metrics["sensitivity_by_type"]) == {"glioma", "meningioma", "pituitary"}
    # Tumor type, on all images and again on the unleaked ones: a 4x4 confusion matrix (rows true type) that
    # accounts for every image, its diagonal is the accuracy, and per-type recall matches its rows.
    for block, n in ((metrics, 48), (metrics["unleaked"], metrics["leakage"]["unleaked_images"])):
        # Every scored image has one verdict, on all images and on the unleaked ones.
        assert sum(c["tumor"] + c["no_tumor"] for c in block["verdicts"]["by_verdict"].values()) == n
        matrix = np.array(block["type_confusion_matrix"])
        assert matrix.shape == (4, 4) and matrix.sum() == n
        assert block["type_accuracy"] == pytest.approx(np.trace(matrix) / n)
        lo, hi = block["type_accuracy_ci95"]
        assert lo <= block["type_accuracy"] <= hi
        for k, name in enumerate(block["type_labels"]):
            if matrix[k].sum():
                assert block["type_recall"][name] == pytest.approx(matrix[k, k] / matrix[k].sum())
    assert np.array(metrics["type_confusion_matrix"]).sum(axis=1).tolist() == [12, 12, 12, 12]
    for png in ("roc_curve", "pr_curve", "reliability", "confusion_matrix", "training_curves"):
        assert (tmp_path / "ev" / f"{png}.png").stat().st_size > 1000
    text = report.read_text()
    assert f"<td>tumor-type accuracy (4 classes)</td><td>{metrics['type_accuracy']:.3f} <small>" in text
    assert "http://" not in text and "https://" not in text and "<script" not in text  # self-contained

    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(report.as_uri())
        for section in ("summary", "metrics", "per-type", "confusion", "curves", "calibration", "leakage",
                        "training", "errors", "notice"):
            assert page.locator(f"#{section}").is_visible(), section
        images = page.locator("img")
        assert images.count() >= 7
        assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        assert "not a diagnosis" in page.locator("#notice").inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "evaluation-report.png"), full_page=True)
        browser.close()
    shutil.copy(report, ARTIFACTS / "evaluation-report.html")


@pytest.mark.dataset
def test_model_card_is_generated_from_measured_numbers(seed_data, small_testing_set, tmp_path):
    card = tmp_path / "CARD.md"
    result = CliRunner().invoke(app, ["model-card", "--data", str(small_testing_set), "--train-data",
                                      str(seed_data), "--output", str(card), "--output-dir", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    text = card.read_text()
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    for heading in ("## Intended use", "## Training data", "## Evaluation", "## Known failure modes and limits"):
        assert heading in text
    assert "not a diagnosis" in text and "pediatric" in text and "2D slices" in text
    assert "grayscale, padded to a square, resized to" in text  # no crop or equalisation: none recorded
    m, ci = metrics["metrics"]["accuracy"], metrics["ci95"]["accuracy"]
    assert f"| accuracy | {m:.3f} ({ci[0]:.3f}-{ci[1]:.3f}) |" in text
    t, tu = metrics["type_accuracy"], metrics["unleaked"]["type_accuracy"]
    assert f"| tumor-type accuracy (4 classes) | {t:.3f} " in text and f"| {tu:.3f} (" in text
    assert f"{metrics['leakage']['leaked_images']} of 48 test images" in text
    # How often a shown type was right, among the limits, counted from the same evaluation.
    shown, right = metrics["verdicts"]["types_shown"], metrics["verdicts"]["types_shown_right"]
    assert shown > 0 and f"Shown types were right on the test data {right} of {shown} ({right / shown:.3f})" in text
