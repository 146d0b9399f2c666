import numpy as np
from PIL import Image

from braintriage.cache import DecodedSet, decode_dataset
from braintriage.datasets import load_dataset
from braintriage.metrics import (binary_metrics, describe_per_source, per_source_metrics, threshold_for_sensitivity,
                                 threshold_for_specificity)
from braintriage.operating_point import out_of_fold_sources, out_of_fold_type_right
from braintriage.preprocess import PreprocessConfig
from braintriage.losses import cell_weights
from braintriage.splits import grouped_split
from conftest import blocks




def test_cache_round_trip_groups_near_copies_and_reports_bad_files(tmp_path):
    for folder, seeds in (("tumor", [1, 1, 2, 3]), ("no_tumor", [4, 5])):
        (tmp_path / folder).mkdir()
        for i, s in enumerate(seeds):  # seed 1 twice: a pixel-identical copy
            Image.fromarray(blocks(s, 12)).save(tmp_path / folder / f"{i}.png")
    (tmp_path / "tumor" / "bad.png").write_bytes(b"not a png")
    decoded = decode_dataset(load_dataset(tmp_path), PreprocessConfig(size=48))
    assert len(decoded) == 6 and decoded.errors == [("tumor/bad.png", decoded.errors[0][1])]
    g = dict(zip(decoded.paths, decoded.groups))
    assert g["tumor/0.png"] == g["tumor/1.png"] != g["tumor/2.png"]
    decoded.save(tmp_path / "c.npz")
    again = DecodedSet.load(tmp_path / "c.npz")
    assert (again.images == decoded.images).all() and again.fingerprint == decoded.fingerprint
    assert list(again.paths) == list(decoded.paths) and again.preprocess == PreprocessConfig(size=48)


def test_grouped_split_never_splits_a_group():
    rng = np.random.default_rng(0)
    n = 600
    groups = rng.integers(0, 150, n)
    types = groups % 4  # a group shares its type, as near-copies do
    d = DecodedSet(np.zeros((n, 1, 1), np.uint8), (types > 0).astype(int), types, np.array([str(i) for i in range(n)]),
                   np.zeros(n, np.uint64), groups, "f", PreprocessConfig())
    train, val = grouped_split(d, 0.15, seed=0)
    assert len(set(train) | set(val)) == n and not set(groups[train]) & set(groups[val])
    assert 0.08 < len(val) / n < 0.25
    assert set(types[val]) == {0, 1, 2, 3}


def test_balanced_class_weights_favour_the_minority():
    w = cell_weights(np.array([0] * 10 + [1] * 60), np.zeros(70, int), 1, balance=0.5)[0]
    assert w[0] / w[1] == 6


def test_metrics_and_sensitivity_threshold():
    y = np.array([1, 1, 1, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.7])
    m = binary_metrics(y, p, 0.5)
    assert m["confusion_matrix"] == [[1, 1], [1, 3]]
    assert (m["sensitivity"], m["specificity"], m["accuracy"]) == (0.75, 0.5, 4 / 6)
    t = threshold_for_sensitivity(y, p, target=1.0)
    assert t == 0.3 and binary_metrics(y, p, t)["sensitivity"] == 1.0
    assert threshold_for_sensitivity(y, p, target=0.5) == 0.5  # capped: never less sensitive than 0.5


def test_specificity_threshold_is_the_most_sensitive_one_that_keeps_the_target():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(40, int), np.ones(60, int)]
    p = np.r_[rng.uniform(0, 0.7, 40), rng.uniform(0.3, 1, 60)]
    for target in (0.9, 0.95, 1.0):
        t = threshold_for_specificity(y, p, target)
        assert binary_metrics(y, p, t)["specificity"] >= target
        # lowering it to the next normal's score gives up specificity below the target
        lower = p[(y == 0) & (p < t)].max()
        assert binary_metrics(y, p, lower)["specificity"] < target


def test_per_source_figures_show_a_source_the_pooled_figure_hides():
    # Source a: 4 tumors (all caught), 4 normals; source b: 4 tumors alone, 3 of them below the threshold.
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.9, 0.8, 0.95, 0.7, 0.1, 0.2, 0.3, 0.65, 0.4, 0.5, 0.55, 0.9])
    source = np.array(["a"] * 8 + ["b"] * 4)
    per = per_source_metrics(y, p, source, 0.6)
    assert binary_metrics(y, p, 0.6)["sensitivity"] == 5 / 8  # pooled
    assert per["a"]["sensitivity"] == 1.0 and per["a"]["specificity"] == 0.75 and per["a"]["normals"] == 4
    assert per["b"]["sensitivity"] == 0.25 and per["b"]["tumors"] == 4
    assert per["b"]["normals"] == 0 and per["b"]["specificity"] is None and per["b"]["specificity_ci95"] is None
    lo, hi = per["b"]["sensitivity_ci95"]
    assert lo < 0.25 < hi
    # b's tumors are ranked against a's normals: 0.9 beats all 4, 0.55 and 0.5 beat 3, 0.4 beats 3 -> 13 / 16
    assert per["b"]["roc_auc_against_all_normals"] == 13 / 16
    assert per["a"]["roc_auc_against_all_normals"] == 1.0


def test_per_source_four_class_accuracy_counts_only_images_of_known_type():
    # Rows as a cross-validation writes them: a seed-set normal called normal, a seed-set glioma called meningioma,
    # a figshare pituitary tumor called pituitary, and a Br35H tumor (type unknown) that must not count anywhere.
    def row(path, label, no_tumor, glioma, meningioma, pituitary):
        return {"path": path, "tumor": int(label != "no_tumor"), "tumor_type": label, "p_tumor": 1 - no_tumor,
                "p_no_tumor": no_tumor, "p_glioma": glioma, "p_meningioma": meningioma, "p_pituitary": pituitary}
    rows = [row("seed/n.jpg", "no_tumor", 0.7, 0.1, 0.1, 0.1), row("seed/g.jpg", "glioma", 0.1, 0.3, 0.5, 0.1),
            row("figshare/p.jpg", "pituitary", 0.0, 0.1, 0.1, 0.8), row("br35h/y.jpg", "", 0.2, 0.1, 0.6, 0.1)]
    right = out_of_fold_type_right(rows)
    assert right[:3].tolist() == [1.0, 0.0, 1.0] and np.isnan(right[3])
    y, p = np.array([r["tumor"] for r in rows]), np.array([r["p_tumor"] for r in rows])
    per = per_source_metrics(y, p, out_of_fold_sources(rows), 0.5, right)
    assert per["seed"]["typed"] == 2 and per["seed"]["type_accuracy"] == 0.5
    assert per["figshare"]["type_accuracy"] == 1.0
    assert per["br35h"]["typed"] == 0 and per["br35h"]["type_accuracy"] is None
    assert "4-class accuracy 0.500" in describe_per_source(per)[2] and "4-class" not in describe_per_source(per)[0]
    # a binary model's CV has no type columns: no four-class figure, and the per-source figures stay as they were
    assert out_of_fold_type_right([{k: v for k, v in r.items() if k in ("path", "tumor", "p_tumor")}
                                   for r in rows]) is None
    assert "typed" not in per_source_metrics(y, p, out_of_fold_sources(rows), 0.5)["seed"]
