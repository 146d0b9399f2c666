"""Training on several sources at once: sources kept per image, groups across sources, mixed type / binary
labels in one head, class and source weighting, leave-source-out."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from click.testing import CliRunner

from braintriage.augment import AugmentPolicy
from braintriage.cache import DecodedSet, decode_dataset, from_sources
from braintriage.cli import app
from braintriage.datasets import load_dataset
from braintriage.modelfile import file_digest, read_metadata
from braintriage.preprocess import PreprocessConfig
from braintriage.losses import UNTYPED_TUMOR, cell_weights, per_image_loss, reweighted
from braintriage.train import TrainConfig, TrainingSetupError, prepare_data, run_key_of, train
from conftest import blocks

NO_AUGMENT = AugmentPolicy(zoom=(1, 1), rotation_degrees=0, brightness=(1, 1))


def make_folders(root: Path, folders: dict[str, range], cell: int = 6) -> Path:
    """Image folders of distinct block images: {folder name: the block seeds to draw in it}."""
    for folder, seeds in folders.items():
        (root / folder).mkdir(parents=True)
        for s in seeds:
            Image.fromarray(blocks(s, cell)).save(root / folder / f"{s}.png")
    return root


@pytest.fixture
def three_sources(tmp_path) -> list[Path]:
    """A four-type set, a yes/no set (tumor types unknown) and a tumors-only set with two type folders.
    Block seed 0 appears in the first two: a near-copy across two collections."""
    typed = make_folders(tmp_path / "typed", {"glioma_tumor": range(0, 6), "meningioma_tumor": range(10, 16),
                                              "pituitary_tumor": range(20, 26), "no_tumor": range(30, 36)})
    yes_no = make_folders(tmp_path / "yesno", {"yes": [0, *range(41, 48)], "no": range(50, 56)})
    tumors_only = make_folders(tmp_path / "tumors", {"glioma_tumor": range(60, 66), "pituitary_tumor": range(70, 73)})
    return [typed, yes_no, tumors_only]


def test_a_folder_of_some_type_folders_is_a_tumors_only_dataset(three_sources):
    ds = load_dataset(three_sources[2])
    assert len(ds) == 9 and ds.name == "tumors" and all(s.tumor == 1 for s in ds.samples)
    assert {s.tumor_type for s in ds.samples} == {"glioma", "pituitary"}


def test_a_manifest_source_column_names_each_images_collection(tmp_path):
    make_folders(tmp_path, {"a": range(2), "b": range(2, 4)})
    with (tmp_path / "m.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "source"])
        w.writerows([["a/0.png", "glioma", "site-a"], ["a/1.png", "no", "site-a"], ["b/2.png", "yes", "site-b"],
                     ["b/3.png", "no", ""]])
    ds = load_dataset(tmp_path / "m.csv")
    assert [ds.source_of(s) for s in ds.samples] == ["site-a", "site-a", "site-b", "m"]
    decoded = decode_dataset(ds, PreprocessConfig(size=32))
    assert decoded.source.tolist() == ["site-a", "site-a", "site-b", "m"]
    decoded.save(tmp_path / "c.npz")  # the sources survive the cache file
    assert DecodedSet.load(tmp_path / "c.npz").source.tolist() == decoded.source.tolist()


def test_a_jpeg_cache_says_its_images_are_not_the_datasets_own(three_sources, tmp_path):
    """`save(jpeg_quality=Q)` (what experiments/pack_for_device.py carries to a GPU machine when PNG is too large):
    the same images up to JPEG's error, everything else kept, and a fingerprint that no longer claims the dataset."""
    decoded = decode_dataset(load_dataset(three_sources[0]), PreprocessConfig(size=32))
    decoded.save(tmp_path / "png.npz")
    decoded.save(tmp_path / "jpeg.npz", jpeg_quality=92)
    png, jpeg = DecodedSet.load(tmp_path / "png.npz"), DecodedSet.load(tmp_path / "jpeg.npz")
    assert np.array_equal(png.images, decoded.images) and png.fingerprint == decoded.fingerprint
    assert jpeg.fingerprint == decoded.fingerprint + "+jpeg92"
    error = np.abs(jpeg.images.astype(int) - decoded.images.astype(int))
    assert error.max() > 0 and error.mean() < 3
    assert jpeg.paths.tolist() == decoded.paths.tolist() and jpeg.groups.tolist() == decoded.groups.tolist()
    assert jpeg.tumor.tolist() == decoded.tumor.tolist() and jpeg.source.tolist() == decoded.source.tolist()


def test_joined_sources_keep_their_names_share_groups_and_fingerprint_all(three_sources):
    parts = [decode_dataset(load_dataset(p), PreprocessConfig(size=32)) for p in three_sources]
    joined = from_sources(parts)
    assert len(joined) == sum(len(p) for p in parts) == 24 + 14 + 9
    assert sorted(set(joined.source.tolist())) == ["tumors", "typed", "yesno"]
    assert joined.paths[0].startswith("typed/") and len(set(joined.paths.tolist())) == len(joined)
    # The same block image in two collections is one near-duplicate group, so a split never divides it.
    copies = np.flatnonzero(np.isin(joined.paths, ["typed/glioma_tumor/0.png", "yesno/yes/0.png"]))
    assert len(copies) == 2 and joined.groups[copies[0]] == joined.groups[copies[1]]
    assert joined.fingerprint not in {p.fingerprint for p in parts}
    assert from_sources(parts[::-1]).fingerprint == joined.fingerprint  # the order given does not matter
    counts = joined.source_counts()
    assert counts["yesno"] == {"images": 14, "tumor": 8, "no_tumor": 6, "tumor_type_unknown": 8,
                               "fingerprint": parts[1].fingerprint}
    assert counts["tumors"]["types"] == {"glioma": 6, "meningioma": 0, "pituitary": 3}


def test_two_sources_with_one_name_are_refused(tmp_path):
    a = make_folders(tmp_path / "x" / "data", {"yes": range(2), "no": range(2, 4)})
    b = make_folders(tmp_path / "y" / "data", {"yes": range(4, 6), "no": range(6, 8)})
    parts = [decode_dataset(load_dataset(p), PreprocessConfig(size=32)) for p in (a, b)]
    with pytest.raises(ValueError, match="share a name"):
        from_sources(parts)


def test_an_untyped_tumor_trains_the_type_head_through_p_tumor():
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.3], [0.1, 0.2, 0.3, 0.4]], requires_grad=True)
    targets = torch.tensor([UNTYPED_TUMOR, 2])
    loss = per_image_loss(logits, targets)
    p = torch.softmax(logits, 1)
    assert loss[0].item() == pytest.approx(-math.log(1 - p[0, 0].item()), rel=1e-5)
    assert loss[1].item() == pytest.approx(-math.log(p[1, 2].item()), rel=1e-5)
    loss[0].backward()  # the untyped tumor pushes "no tumor" down and leaves the split among types to the data
    assert logits.grad[0, 0] > 0 and (logits.grad[0, 1:] < 0).all()


def test_one_source_weights_are_the_balanced_class_weights():
    targets = np.array([0] * 10 + [1] * 60 + [2] * 30 + [3] * 20)
    table = cell_weights(targets, np.zeros(len(targets), int), 1, balance=0.5)
    balanced = len(targets) / (4 * np.bincount(targets))  # n / (k * count), the original study's
    assert np.allclose(table[0, :4], balanced)


def test_no_source_class_cell_dominates_the_loss():
    # class 0: 300 images in source 0, 12 in source 1; class 1: 400 in source 0; untyped tumors: 100 in source 1
    targets = np.array([0] * 312 + [1] * 400 + [UNTYPED_TUMOR] * 100)
    sources = np.array([0] * 300 + [1] * 12 + [0] * 400 + [1] * 100)
    table = cell_weights(targets, sources, 2, balance=0.5)
    w = table[sources, targets]
    assert w.mean() == pytest.approx(1.0)
    totals = {c: w[targets == c].sum() for c in (0, 1, UNTYPED_TUMOR)}
    assert max(totals.values()) == pytest.approx(min(totals.values()))  # every class the same total weight
    small, large = w[(targets == 0) & (sources == 1)].sum(), w[(targets == 0) & (sources == 0)].sum()
    assert small / large == pytest.approx(math.sqrt(12 / 300))  # a source's share grows as sqrt(count)
    equal = cell_weights(targets, sources, 2, balance=0.0)[sources, targets]  # every source alike
    assert equal[(targets == 0) & (sources == 1)].sum() == pytest.approx(equal[(targets == 0) & (sources == 0)].sum())
    by_count = cell_weights(targets, sources, 2, balance=1.0)[sources, targets]  # every image alike
    assert len(set(by_count[targets == 0].round(5).tolist())) == 1


def test_upweighted_images_count_more_within_their_class_which_keeps_its_total():
    targets = np.array([0] * 6 + [1] * 4 + [UNTYPED_TUMOR] * 3)
    weights = np.array([1.0] * 6 + [1.5] * 4 + [2.0] * 3)
    train_idx = np.arange(12)  # the last image is not trained on
    multipliers = np.ones(13)
    multipliers[[0, 6, 12]] = 4.0
    out = reweighted(weights, targets, train_idx, multipliers)
    for target in (0, 1, UNTYPED_TUMOR):
        trained = train_idx[targets[train_idx] == target]
        assert out[trained].sum() == pytest.approx(weights[trained].sum())  # how much each class counts: unchanged
    assert out[0] / out[1] == pytest.approx(4.0) and out[6] / out[7] == pytest.approx(4.0)
    assert out[10] == pytest.approx(out[11])  # nothing upweighted among the trained untyped tumors


def write_upweight(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([["path", "weight"], *rows])
    return path


def test_upweight_scales_the_named_images_and_refuses_paths_or_weights_it_cannot_use(three_sources, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    sources = [str(p) for p in three_sources]
    named = write_upweight(tmp_path / "w.csv", [["typed/no_tumor/30.png", "5"], ["yesno/yes/41.png", "3"],
                                                ["elsewhere/x.png", "2"]])
    data = prepare_data(TrainConfig(data=sources, image_size=32, upweight=str(named)), log=lambda *_: None)
    paths = data.decoded.paths.tolist()
    assert data.multipliers[paths.index("typed/no_tumor/30.png")] == 5.0
    assert data.multipliers[paths.index("yesno/yes/41.png")] == 3.0
    assert (data.multipliers == 1.0).sum() == len(paths) - 2
    train_idx = np.arange(len(paths))
    w = data.image_weights(train_idx, 0.5)
    normal = paths.index("typed/no_tumor/30.png")
    peer = paths.index("typed/no_tumor/31.png")
    assert w[normal] / w[peer] == pytest.approx(5.0)
    unweighted = TrainConfig(data=sources, image_size=32)
    plain = prepare_data(unweighted, log=lambda *_: None).image_weights(train_idx, 0.5)
    assert w[data.targets == 0].sum() == pytest.approx(plain[data.targets == 0].sum())
    # the list is read once: the resume key keeps the version that weighted the loss if the file changes after
    assert data.upweight_digest == file_digest(named)
    key = run_key_of(data, train_idx, TrainConfig(data=sources, image_size=32, upweight=str(named)), 1)
    write_upweight(named, [["typed/no_tumor/30.png", "6"]])
    assert run_key_of(data, train_idx, TrainConfig(data=sources, image_size=32, upweight=str(named)), 1) == key
    assert key != run_key_of(prepare_data(unweighted, log=lambda *_: None), train_idx, unweighted, 1)
    for rows, message in (([["elsewhere/x.png", "2"]], "none of its 1 paths is a training image"),
                          ([["typed/no_tumor/30.png", "-1"]], "line 2: the weight is not a positive number"),
                          ([["typed/no_tumor/30.png", "many"]], "line 2: the weight is not a positive number"),
                          ([["typed/no_tumor/30.png", "2"], ["typed/no_tumor/30.png", "3"]],
                           "line 3: this path is listed twice"),
                          ([], "it lists no images")):
        bad = write_upweight(tmp_path / "bad.csv", rows)
        with pytest.raises(TrainingSetupError, match=message):
            prepare_data(TrainConfig(data=sources, image_size=32, upweight=str(bad)), log=lambda *_: None)
    (tmp_path / "cols.csv").write_text("file,factor\ntyped/no_tumor/30.png,2\n")
    result = CliRunner().invoke(app, ["train", *sources, "--upweight", str(tmp_path / "cols.csv"), "--image-size",
                                      "32", "--epochs", "1", "--run-dir", str(tmp_path / "run"),
                                      "-o", str(tmp_path / "m.safetensors")])
    assert result.exit_code != 0 and "columns path,weight" in result.output and "Traceback" not in result.output


def test_auto_labels_mix_typed_and_untyped_images(three_sources, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    data = prepare_data(TrainConfig(data=[str(p) for p in three_sources], image_size=32), log=lambda *_: None)
    assert data.labels == "type" and data.source_names == ["tumors", "typed", "yesno"]
    untyped = data.targets == UNTYPED_TUMOR
    assert untyped.sum() == 8 and (data.decoded.source[untyped] == "yesno").all()
    assert set(data.targets[data.decoded.source == "yesno"].tolist()) == {0, UNTYPED_TUMOR}


def test_training_on_three_sources_records_each_and_holds_one_out(three_sources, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    cfg = TrainConfig(data=[str(p) for p in three_sources], output=str(tmp_path / "m.safetensors"),
                      run_dir=str(tmp_path / "run"), image_size=32, epochs=2, batch_size=8, val_fraction=0.25,
                      augment=NO_AUGMENT, holdout_source="yesno",
                      upweight=str(write_upweight(tmp_path / "w.csv", [["typed/no_tumor/30.png", "4"]])))
    meta = train(cfg, log=lambda *_: None)["metadata"]
    training = read_metadata(tmp_path / "m.safetensors")["training"]
    assert training["held_out_source"] == "yesno" and set(training["sources"]) == {"typed", "tumors"}
    assert training["upweighted_by"] == {"file": "w.csv", "sha256": file_digest(tmp_path / "w.csv")}
    assert training["images"] == 24 + 9 and training["sources"]["typed"]["no_tumor"] == 6
    row = json.loads((tmp_path / "run" / "holdout.json").read_text())
    assert meta["held_out_evaluation"] == row
    assert row["held_out_source"] == "yesno" and row["images"] == 14 and row["tumors"] == 8
    for name in ("sensitivity", "specificity", "roc_auc", "ood_alarm_rate"):
        lo, hi = row[name]["ci95"]
        assert lo <= row[name]["value"] <= hi
    report = json.loads((tmp_path / "run" / "holdout-evaluation" / "metrics.json").read_text())
    assert len(report["predictions"]) == 14 and all(p["path"].startswith("yesno/") for p in report["predictions"])


def test_the_cli_trains_on_several_sources_and_names_a_wrong_holdout(three_sources, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    common = ["--image-size", "32", "--epochs", "1", "--batch-size", "8", "--run-dir", str(tmp_path / "run"),
              "-o", str(tmp_path / "m.safetensors")]
    result = CliRunner().invoke(app, ["train", *map(str, three_sources), "--holdout-source", "nowhere", *common])
    assert result.exit_code == 2 and "not one of the training sources" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, ["train", *map(str, three_sources[:2]), *common])
    assert result.exit_code == 0, result.output
    training = read_metadata(tmp_path / "m.safetensors")["training"]
    assert set(training["sources"]) == {"typed", "yesno"} and training["upweighted_by"] is None


def test_the_model_card_lists_each_source_and_the_leave_source_out_rows(three_sources, tmp_path, monkeypatch):
    from braintriage.evaluate import evaluate
    from braintriage.model_card import leave_source_out_rows, model_card

    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    cfg = TrainConfig(data=[str(p) for p in three_sources], output=str(tmp_path / "m.safetensors"),
                      run_dir=str(tmp_path / "run"), image_size=32, epochs=1, batch_size=8, val_fraction=0.25,
                      augment=NO_AUGMENT, holdout_source="tumors")
    train(cfg, log=lambda *_: None)
    rows = leave_source_out_rows([tmp_path / "run" / "holdout.json"])
    report = evaluate(three_sources[1], tmp_path / "m.safetensors", output_dir=tmp_path / "eval", train_data=None,
                      n_boot=50)
    card = model_card(read_metadata(tmp_path / "m.safetensors"), report, tmp_path / "m.safetensors", rows)
    assert "| `typed` | 24 | 18 (6 / 6 / 6 / 0) | 6 |" in card
    assert "| `yesno` | 14 | 8 (0 / 0 / 0 / 8) | 6 |" in card
    assert "Held out of training: `tumors`" in card and "trained from scratch" in card
    lso = card.split("### Leave one source out")[1]
    assert "| `tumors` | run | 0 | 9 (9) |" in lso and "| n/a |" in lso  # no normals there: no specificity


def test_a_resume_of_another_run_is_refused_with_a_message_not_a_traceback(three_sources, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    common = [str(three_sources[0]), "--image-size", "32", "--batch-size", "8", "--run-dir", str(tmp_path / "run"),
              "-o", str(tmp_path / "m.safetensors"), "--checkpoint-seconds", "0", "--val-fraction", "0.25"]
    assert CliRunner().invoke(app, ["train", *common, "--epochs", "1"]).exit_code == 0
    result = CliRunner().invoke(app, ["train", *common, "--epochs", "2", "--resume"])
    assert result.exit_code == 2 and "belongs to another run" in result.output
    assert "Traceback" not in result.output


def test_calibrate_ood_refits_a_guard_on_every_source_the_model_trained_on(three_sources, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    sources = [str(p) for p in three_sources[:2]]
    common = ["--image-size", "32", "--batch-size", "8", "--epochs", "1", "--val-fraction", "0.25",
              "--run-dir", str(tmp_path / "run")]
    assert CliRunner().invoke(app, ["train", *sources, *common, "-o", str(tmp_path / "m.safetensors")]).exit_code == 0
    trained = read_metadata(tmp_path / "m.safetensors")["ood"]
    result = CliRunner().invoke(app, ["calibrate-ood", *sources, "-m", str(tmp_path / "m.safetensors"),
                                      "--val-fraction", "0.25", "-o", str(tmp_path / "refit.safetensors")])
    assert result.exit_code == 0, result.output
    refit = read_metadata(tmp_path / "refit.safetensors")["ood"]
    # The same sources, split and fit as train's own: the same guard.
    assert refit["layers"] == trained["layers"] and refit["threshold"] == pytest.approx(trained["threshold"])
    one = CliRunner().invoke(app, ["calibrate-ood", sources[0], "-m", str(tmp_path / "m.safetensors"),
                                   "--val-fraction", "0.25", "-o", str(tmp_path / "other.safetensors")])
    assert one.exit_code == 0  # one source alone is other data: a guard is still fitted, on what it was given
    # --familiar-percentile keeps the guard and turns the familiarity rule on where that share of the validation
    # normals' guard scores lie: on the same split, what the fit recorded; a refit keeps the rule at its percentile.
    only = CliRunner().invoke(app, ["calibrate-ood", *sources, "-m", str(tmp_path / "refit.safetensors"),
                                    "--val-fraction", "0.25", "--familiar-percentile", "90",
                                    "-o", str(tmp_path / "f.safetensors")])
    assert only.exit_code == 0, only.output
    kept = read_metadata(tmp_path / "f.safetensors")["ood"]
    assert kept["threshold"] == refit["threshold"] and kept["mean"] == refit["mean"]
    assert kept["familiar_percentile"] == 90
    assert kept["familiar_below"] == pytest.approx(refit["validation_normal_ratios"]["90"], rel=1e-3)
    again = CliRunner().invoke(app, ["calibrate-ood", *sources, "-m", str(tmp_path / "f.safetensors"),
                                     "--val-fraction", "0.25", "-o", str(tmp_path / "again.safetensors")])
    assert again.exit_code == 0, again.output
    assert read_metadata(tmp_path / "again.safetensors")["ood"]["familiar_below"] == pytest.approx(
        kept["familiar_below"], rel=1e-3)
