import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from braintriage.cli import app
from braintriage.inference import Predictor
from braintriage.network import tumor_probability
from braintriage.scans import items_from_paths

runner = CliRunner()


@pytest.fixture(scope="module")
def predictor():
    return Predictor()  # the bundled model


def test_good_and_bad_files_each_get_their_row(predictor, image_folder):
    (image_folder / "notes.txt").write_text("hello")
    (image_folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    items = items_from_paths([image_folder, image_folder / "missing.png"])
    paths = [it.path for it in items]
    results = predictor.predict_items(items)
    assert [r.path for r in results] == paths
    errors = {r.path.rsplit("/", 1)[1]: r.error for r in results if r.error}
    assert set(errors) == {"notes.txt", "broken.jpg", "missing.png"}
    good = [r for r in results if not r.error]
    assert len(good) == 4
    for r in good:
        assert 0 <= r.tumor_probability <= 1
        assert r.prediction == ("tumor" if r.tumor_probability >= predictor.threshold else "no_tumor")
        assert abs(sum(r.type_probabilities.values()) - 1) < 1e-4


def test_predictions_do_not_depend_on_batching(predictor, image_folder):
    paths = [it.path for it in items_from_paths([image_folder])]
    one_by_one = [predictor.predict_files([p])[0].tumor_probability for p in paths]
    together = [r.tumor_probability for r in predictor.predict_files(paths)]
    assert np.allclose(one_by_one, together, atol=1e-5)


def test_results_come_in_input_order_as_soon_as_their_slices_are_scored(predictor):
    from PIL import Image

    from braintriage.inference import Predictor
    from braintriage.scans import ScanItem, Slice
    from conftest import synthetic_slice

    def plain(name: str, seed: int) -> ScanItem:
        return ScanItem(name, [Slice("1", lambda: Image.fromarray(synthetic_slice(seed=seed, lesion=seed % 2 == 0)))])

    study = ScanItem("study", [plain(f"s{k}", 10 + k).slices[0] for k in range(6)], study="s")
    items = [ScanItem("unlisted", error="no files found in this folder"), *(plain(f"p{k}", k) for k in range(5)),
             study, plain("last", 9)]
    small = Predictor(batch_size=4)  # 12 slices: batches of 4, the study's slices in all three
    runs, run = [], small.network.run
    small.network.run = lambda *a: (runs.append(1), run(*a))[1]
    arrived = [([r.path for r in chunk], len(runs)) for chunk in small.predict_as_ready(items)]
    # (paths, batches scored when they came): the unlisted item before any; the study after its last slice's batch
    assert arrived == [(["unlisted"], 0), (["p0", "p1", "p2", "p3"], 1), (["p4"], 2), (["study", "last"], 3)]
    streamed = {r.path: r for r in small.predict_items(items)}
    for it in items[1:]:  # the same result as the item alone, in the default batches
        alone = predictor.predict_items([it])[0]
        assert abs(streamed[it.path].tumor_probability - alone.tumor_probability) < 1e-5
        assert streamed[it.path].verdict == alone.verdict and streamed[it.path].top_slices == alone.top_slices


def test_cli_exit_codes_and_csv(image_folder, tmp_path, bundled_model_id):
    out = tmp_path / "p.csv"
    ok = runner.invoke(app, ["predict", str(image_folder), "--output", str(out), "--types"])
    assert ok.exit_code == 0, ok.output
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["path", "study", "verdict", "suspicion", "tumor_probability", "prediction", "type",
                             "slices", "top_slices", "error", "warning", "model", "analysed_at", "predicted_type",
                             "probability_no_tumor", "probability_glioma", "probability_meningioma",
                             "probability_pituitary"]
    for r in rows:
        assert r["verdict"] in ("tumor_suspected", "uncertain", "cannot_assess", "no_tumor_detected")
        assert r["model"] == bundled_model_id and r["analysed_at"].endswith("+00:00")
        probs = {t: float(r[f"probability_{t}"]) for t in ("no_tumor", "glioma", "meningioma", "pituitary")}
        assert abs(sum(probs.values()) - 1) < 1e-4 and r["predicted_type"] == max(probs, key=probs.get)
        assert abs(float(r["tumor_probability"]) - (1 - probs["no_tumor"])) < 1e-5
    assert len(rows) == 4 and all(r["prediction"] in ("tumor", "no_tumor") and not r["error"] for r in rows)
    assert rows[0]["path"].startswith(str(image_folder))

    (image_folder / "bad.png").write_bytes(b"garbage")
    bad = runner.invoke(app, ["predict", str(image_folder), "--output", str(out)])
    assert bad.exit_code == 1
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5 and sum(bool(r["error"]) for r in rows) == 1
    assert sum(r["prediction"] != "" for r in rows) == 4
    assert [r["verdict"] for r in rows if r["error"]] == ["error"]
    assert "predicted_type" not in rows[0]  # raw types only on request: the `type` column is the shown one

    missing_model = runner.invoke(app, ["predict", str(image_folder), "--model", str(tmp_path / "nope")])
    assert missing_model.exit_code == 2 and "model file not found" in missing_model.output
    assert runner.invoke(app, ["predict"]).exit_code == 2  # usage error


def test_the_terminal_table_has_one_line_per_scan_under_the_folder_they_share(image_folder, bundled_model_id):
    (image_folder / "bad.png").write_bytes(b"garbage")
    result = runner.invoke(app, ["predict", str(image_folder), str(image_folder / "gone.jpg")])
    assert result.exit_code == 1 and result.stderr == "2 of 6 rows had errors\n"
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"braintriage ({bundled_model_id}): ") and lines[1] == f"paths under {image_folder}/"
    names = ["bad.png", "scan0.jpg", "scan1.png", "scan2.bmp", "scan3.tif", "gone.jpg"]  # as listed: sorted, then
    rows = lines[3:3 + len(names)]
    assert [row.split()[0] for row in rows] == names
    assert rows[0].endswith("Could not be read (not an image file PIL can decode (JPEG, PNG, BMP, TIFF))")
    assert rows[-1].endswith("Could not be read (file not found)")
    assert all("%)  " in row for row in rows[1:-1])  # a suspicion and its P(tumor), then the verdict
    assert lines[3 + len(names)] == "4 cannot assess, 2 error"  # synthetic slices do not look like MRI
    assert lines[-1].startswith("Decision support only")
    coloured = runner.invoke(app, ["predict", str(image_folder)], color=True)  # as on a terminal
    plain = runner.invoke(app, ["predict", str(image_folder)], color=True, env={"NO_COLOR": "1"})
    assert "\x1b[35mCould not be assessed" in coloured.stdout and "\x1b" not in plain.stdout


def test_cli_evaluate_rejects_an_unknown_layout(tmp_path, image_folder):
    result = runner.invoke(app, ["evaluate", str(image_folder)])
    assert result.exit_code == 2 and "Known dataset layouts" in result.output


@pytest.mark.dataset
def test_bundled_model_meets_the_seed_study_on_testing(seed_data, tmp_path):
    """The bundled model at its own threshold must at least match the original study's best (VGG-19):
    accuracy >= 0.88 and sensitivity >= 0.85 on Testing, through `evaluate` and through `predict`."""
    result = runner.invoke(app, ["evaluate", str(seed_data / "Testing"), "--output-dir", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    m = report["metrics"]
    assert m["n"] == 394 and m["accuracy"] >= 0.88 and m["sensitivity"] >= 0.85
    assert (tmp_path / "ev" / "confusion_matrix.png").exists()

    out = tmp_path / "t.csv"
    result = runner.invoke(app, ["predict", str(seed_data / "Testing"), "--output", str(out), "--quiet"])
    assert result.exit_code == 0
    rows = list(csv.DictReader(out.open()))
    truth = np.array(["/no_tumor/" not in r["path"] for r in rows])
    said = np.array([r["prediction"] == "tumor" for r in rows])
    assert len(rows) == 394 and (said == truth).mean() >= 0.88 and said[truth].mean() >= 0.85


@pytest.mark.dataset
def test_parallel_decoding_and_scoring_give_the_sequential_path_s_probabilities(seed_data):
    """Slices are decoded on a thread pool a batch ahead of the model, and the network runs on small chunks side
    by side: the answers must be those of decoding one file after another and scoring each image alone on a
    plain ONNX Runtime session (within 1e-4), in the same order."""
    import onnxruntime as ort

    from braintriage.preprocess import decode_image, preprocess

    predictor = Predictor()
    assert predictor.network.backend.parallel_runs >= 1
    paths = [str(p) for folder in ("glioma_tumor", "no_tumor") for p in sorted((seed_data / "Testing" / folder)
                                                                              .glob("*.jpg"))[:40]]
    threaded = [r.tumor_probability for r in predictor.predict_items(items_from_paths(paths))]
    session = ort.InferenceSession(str(predictor.model_path), providers=["CPUExecutionProvider"])
    (mean, std), = predictor.network.input_normalization
    sequential = []
    for path in paths:
        x = (preprocess(decode_image(path), predictor.preprocess).astype(np.float32) / 255.0 - mean) / std
        logits = session.run(["logits"], {"image": x[None, None].astype(np.float32)})[0]
        sequential.append(tumor_probability(logits, predictor.network.temperature)[0][0])
    assert len(threaded) == 80 and np.allclose(threaded, sequential, atol=1e-4)


def test_onnx_sessions_start_from_a_fused_copy_that_answers_the_same(tmp_path, monkeypatch, seed_data):
    """The first load keeps a fused copy of the graph in the user's cache; later loads start from it with the
    same answers. A damaged copy is made again, an unwritable cache costs nothing, and the cache stays bounded."""
    import shutil

    from braintriage import inference, network
    from braintriage.preprocess import load_and_preprocess

    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    images = np.stack([load_and_preprocess(p, Predictor().preprocess)
                       for p in sorted((seed_data / "Testing" / "glioma_tumor").glob("*.jpg"))[:8]])
    copies = lambda: sorted((tmp_path / "cache" / "onnxruntime").glob("*.onnx"))  # noqa: E731
    (fused,) = copies()
    import onnx
    assert "Pad" not in {node.op_type for node in onnx.load(str(fused)).graph.node}  # folded (onnx_rewrite.py)
    first = Predictor().predict_arrays(images)[0]
    fused.write_bytes(b"not an onnx file")
    again = Predictor().predict_arrays(images)[0]
    assert fused.stat().st_size > 1_000_000 and copies() == [fused]
    assert np.allclose(first, again, atol=1e-5)
    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(fused))  # a file where the folder should be: nothing written
    assert np.allclose(Predictor().predict_arrays(images)[0], first, atol=1e-5)

    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(network, "OPTIMIZED_COPIES", 2)
    for k in range(3):
        model = tmp_path / f"model{k}.onnx"
        shutil.copy(inference.BUNDLED_MODEL, model)
        Predictor(model)
    assert len(copies()) == 2
