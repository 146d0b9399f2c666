"""Setting a model's threshold from a grouped cross-validation of its own recipe on its own data."""

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from braintriage.augment import AugmentPolicy
from braintriage.cli import app
from braintriage.crossval import cross_validation
from braintriage.inference import Predictor
from braintriage.model_card import _operating_point_lines, _verdict_lines
from braintriage.modelfile import ModelFileError, read_metadata
from braintriage.operating_point import band_low_from_cv, recipe_differences, threshold_from_cv
from braintriage.train import TrainConfig, train
from conftest import tiny_type_cache

NO_AUGMENT = AugmentPolicy(zoom=(1, 1), rotation_degrees=0, brightness=(1, 1))


@pytest.fixture(scope="module")
def model_and_cv(tmp_path_factory) -> tuple[Path, TrainConfig]:
    """A one-epoch model and a two-fold cross-validation of the same recipe on the same made-up data."""
    folder = tmp_path_factory.mktemp("op")
    cfg = TrainConfig(data=str(tiny_type_cache(folder, per_class=10)), output=str(folder / "m.safetensors"),
                      run_dir=str(folder / "run"), image_size=48, architecture="resnet18-w32", epochs=1,
                      batch_size=8, val_fraction=0.25, patience=100, seed=1, augment=NO_AUGMENT)
    train(cfg, log=lambda *_: None)
    cross_validation(dataclasses.replace(cfg, folds=2, run_dir=str(folder / "cv")), log=lambda *_: None)
    return Path(cfg.output), cfg


def write_oof(cv_dir: Path, p_normal: list[float], p_tumor: list[float]) -> None:
    """Replace the CV's out-of-fold P(tumor) with known values (two folds, alternating)."""
    rows = [{"path": f"n{i}", "fold": 1 + i % 2, "tumor": 0, "p_tumor": p} for i, p in enumerate(p_normal)]
    rows += [{"path": f"t{i}", "fold": 1 + i % 2, "tumor": 1, "p_tumor": p} for i, p in enumerate(p_tumor)]
    with (cv_dir / "oof.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_threshold_is_the_most_sensitive_one_keeping_out_of_fold_specificity(model_and_cv, tmp_path):
    model, cfg = model_and_cv
    cv_dir = Path(cfg.run_dir).parent / "cv"
    # 20 normals at 0.01 ... 0.20: specificity 0.95 allows one of them above the threshold (0.20), so the
    # threshold sits just above the second highest (0.19); tumors at 0.15 and 0.195 are found only below 0.5.
    write_oof(cv_dir, [round(0.01 * k, 2) for k in range(1, 21)], [0.15, 0.195, 0.6, 0.9])
    out = tmp_path / "m.safetensors"
    meta = threshold_from_cv(model, cv_dir, out, specificity=0.95)
    assert 0.19 < meta["threshold"] < 0.1901
    point = meta["operating_point"]
    assert point["out_of_fold"]["specificity"] == 0.95 and point["out_of_fold"]["sensitivity"] == 0.75
    assert point["out_of_fold"]["confusion_matrix"] == [[19, 1], [1, 3]]
    assert point["previous_threshold"] == read_metadata(model)["threshold"]
    assert point["cross_validation"]["folds"] == 2 and point["cross_validation"]["normals"] == 20
    # nested: fold 1's normals (0.01, 0.03, ... 0.19) at the threshold fold 2's normals set, and the other way
    # (fold 2's highest, 0.20, allows no alarm: all 10 of fold 1 right; fold 1's lets 0.20 through: 9 of 10)
    assert len(point["nested_specificity"]["fold_thresholds"]) == 2 and point["nested_specificity"]["normals"] == 20
    assert point["nested_specificity"]["normals_right"] == 19
    assert "cross-validation" in meta["threshold_rule"]
    # The runtime reads the new threshold: the same weights, a verdict at the new operating point.
    assert Predictor(out).threshold == meta["threshold"]
    assert read_metadata(out)["training"] == read_metadata(model)["training"]
    # The model card says where the threshold came from.
    card = _operating_point_lines(meta)[0]
    assert "2-fold cross-validation" in card and "(19 of 20 normals)" in card and "(1 tumors missed)" in card


def test_a_cross_validation_of_another_recipe_or_other_data_is_refused(model_and_cv, tmp_path):
    model, cfg = model_and_cv
    other = dataclasses.replace(cfg, folds=2, epochs=2, run_dir=str(tmp_path / "cv-other"))
    cross_validation(other, log=lambda *_: None)
    with pytest.raises(ModelFileError, match="another recipe: epochs: 1 \\(model\\) vs 2"):
        threshold_from_cv(model, tmp_path / "cv-other", tmp_path / "x.onnx")
    cv_json = tmp_path / "cv-other" / "cv.json"
    cv_json.write_text(cv_json.read_text().replace(read_metadata(model)["training"]["data_fingerprint"], "0" * 64))
    with pytest.raises(ModelFileError, match="other data"):
        threshold_from_cv(model, tmp_path / "cv-other", tmp_path / "x.onnx")
    with pytest.raises(ModelFileError, match="no finished cross-validation"):
        threshold_from_cv(model, tmp_path, tmp_path / "x.onnx")
    with pytest.raises(ModelFileError, match="keeps its format"):
        threshold_from_cv(model, Path(cfg.run_dir).parent / "cv", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_cli_sets_the_threshold_and_reports_a_bad_folder_in_one_line(model_and_cv, tmp_path):
    model, cfg = model_and_cv
    cv_dir = Path(cfg.run_dir).parent / "cv"
    write_oof(cv_dir, list(np.linspace(0.0, 0.3, 40)), [0.2, 0.5, 0.8])
    runner = CliRunner()
    result = runner.invoke(app, ["threshold", str(model), "--cv", str(cv_dir), "-o", str(tmp_path / "m.safetensors"),
                                 "--specificity", "0.9"])
    assert result.exit_code == 0, result.output
    assert "-> 0.2" in result.output and "nested" in result.output
    assert 0.2 < read_metadata(tmp_path / "m.safetensors")["threshold"] < 0.3
    bad = runner.invoke(app, ["threshold", str(model), "--cv", str(tmp_path), "-o", str(tmp_path / "y.safetensors")])
    assert bad.exit_code == 2 and "no finished cross-validation" in bad.output


def test_a_second_cross_validation_lowers_only_the_band_low_edge(model_and_cv, tmp_path):
    model, cfg = model_and_cv
    cv_dir = Path(cfg.run_dir).parent / "cv"
    write_oof(cv_dir, [round(0.01 * k, 2) for k in range(1, 21)], [0.15, 0.195, 0.6, 0.9])
    first = threshold_from_cv(model, cv_dir, tmp_path / "set.safetensors", specificity=0.95)
    # The second CV's normals score 0.001 ... 0.020: at most 80% of them (16) may lie under the edge, so it
    # sits at the 17th, 0.017; the threshold and the high edge are the first CV's.
    write_oof(cv_dir, [round(0.001 * k, 3) for k in range(1, 21)], [0.01, 0.6, 0.9])
    out = tmp_path / "lowered.safetensors"
    band = band_low_from_cv(tmp_path / "set.safetensors", cv_dir, out)["uncertain_band"]
    assert band["low"] == 0.017 < first["uncertain_band"]["low"]
    assert band["high"] == first["uncertain_band"]["high"]
    assert band["out_of_fold"]["normals_below"] == 16 and band["out_of_fold"]["tumors_below"] == 1
    assert band["low_edge_from"]["previous_low"] == first["uncertain_band"]["low"]
    lowered = read_metadata(out)
    assert lowered["threshold"] == first["threshold"] and lowered["operating_point"] == first["operating_point"]
    assert Predictor(out).band == (0.017, first["uncertain_band"]["high"])
    card = _verdict_lines(lowered, {})[0]  # the model card says where green starts and what it costs
    assert "from 0.017;" in card and "16 normals score below it (shown clear)" in card
    assert "validation normals" not in card  # no familiarity rule in this file
    with_rule = {**lowered, "ood": {"threshold": 3.0, "familiar_below": 0.6, "familiar_percentile": 90}}
    assert "less like the training scans than 90% of the validation normals (guard score above 0.600" in \
        _verdict_lines(with_rule, {})[0]
    # Never raised: a CV whose normals all score high leaves the edge where it was.
    write_oof(cv_dir, list(np.linspace(0.5, 0.7, 20)), [0.8, 0.9])
    again = band_low_from_cv(out, cv_dir, tmp_path / "again.safetensors")["uncertain_band"]
    assert again["low"] == 0.017
    assert again["rule"] == band["rule"] and band["rule"].count("lowered") == 1  # said once, however often lowered
    # The CLI says what moved; a model without a band is refused in one line.
    result = CliRunner().invoke(app, ["threshold", str(out), "--cv", str(cv_dir), "--band-low-only",
                                      "-o", str(tmp_path / "cli.safetensors")])
    assert result.exit_code == 0 and "band low edge 0.0170 -> 0.0170" in result.output, result.output
    assert "(at most 80% of the normals may)" in result.output
    bare = CliRunner().invoke(app, ["threshold", str(model), "--cv", str(cv_dir), "--band-low-only",
                                    "-o", str(tmp_path / "bare.safetensors")])
    assert bare.exit_code == 2 and "no uncertain band" in bare.output


def test_an_option_newer_than_the_model_file_matches_only_at_its_default():
    # The bundled model's file predates `resample` and the distillation options; a CV that records them at
    # train's defaults trained the same recipe, one that changed them did not.
    model = {"epochs": 12, "synthetic_lesions": 0.0}
    assert recipe_differences(model, {**model, "resample": "bilinear", "distill_weight": 0.5, "teacher": None}) == []
    assert recipe_differences(model, {**model, "resample": "bicubic"}) == [
        "resample: None (model) vs 'bicubic' (cross-validation)"]
    assert recipe_differences({**model, "distill_weight": 0.25}, model) == [
        "distill_weight: 0.25 (model) vs None (cross-validation)"]
    assert recipe_differences(model, {**model, "epochs": 16}) == ["epochs: 12 (model) vs 16 (cross-validation)"]
