"""What a user reads or opens is exactly the file names given: never markup, never a spreadsheet formula, never a
terminal control code."""

import csv

from PIL import Image
from click.testing import CliRunner

from braintriage.cli import app
from braintriage.csv_cells import safe_cell
from conftest import synthetic_slice


def test_formula_like_cells_are_neutralised_and_others_left_alone():
    for text in ("=HYPERLINK(\"http://x\",\"y\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert safe_cell(text) == "'" + text
    for value in ("scan.jpg", "0.5", "", 3, 0.25, None):
        assert safe_cell(value) == value


def test_predict_prints_markup_like_names_literally_and_writes_inert_csv_cells(tmp_path, monkeypatch):
    folder = tmp_path / "scans"
    (folder / "x[").mkdir(parents=True)  # with the file inside it, the path reads x[/bold].jpg
    names = ["x[/bold].jpg", "red[bold]BIG.jpg", "=HYPERLINK(1).png", "clear\x1b[2J\x07.png"]
    for name in names:
        Image.fromarray(synthetic_slice()).save(folder / name)
    out = tmp_path / "r.csv"
    monkeypatch.chdir(folder)  # relative names: the CSV cell starts with what the file name starts with
    result = CliRunner().invoke(app, ["predict", *names, "--output", str(out)], terminal_width=300)
    assert result.exit_code == 0, result.output
    for name in names[:2]:
        assert name in result.output
    assert "clear\\x1b[2J\\x07.png" in result.output and "\x1b" not in result.output and "\x07" not in result.output
    rows = list(csv.DictReader(out.open()))
    paths = sorted(r["path"] for r in rows)
    assert len(rows) == 4 and "'=HYPERLINK(1).png" in paths and "x[/bold].jpg" in paths


def test_extreme_shapes_and_foreign_formats_are_refused_from_the_header(tmp_path):
    import time
    import tracemalloc

    from braintriage.preprocess import ImageReadError, decode_image

    Image.new("L", (60000, 1)).save(tmp_path / "line.png")  # 138 bytes that pad to a 3.6-gigapixel square
    Image.new("L", (48, 3000)).save(tmp_path / "strip.tif")
    (tmp_path / "eps.jpg").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    tracemalloc.start()
    t = time.perf_counter()
    for name, words in [("line.png", "too large"), ("strip.tif", "shape of a scan"), ("eps.jpg", "not an image")]:
        try:
            decode_image(tmp_path / name)
        except ImageReadError as e:
            assert words in str(e), (name, str(e))
        else:
            raise AssertionError(f"{name} was decoded")
    assert time.perf_counter() - t < 2 and tracemalloc.get_traced_memory()[1] < 50e6
    tracemalloc.stop()


def test_unreadable_inputs_get_their_own_rows_in_plain_words(tmp_path):
    import os

    folder = tmp_path / "in"
    (folder / "empty-sub").mkdir(parents=True)
    Image.fromarray(synthetic_slice()).save(folder / "good.png")
    (folder / "zero.dcm").write_bytes(b"")
    os.symlink(folder / "loop.jpg", folder / "loop.jpg")  # a link to itself
    (tmp_path / "nothing").mkdir()
    out = tmp_path / "r.csv"
    result = CliRunner().invoke(app, ["predict", str(folder), str(tmp_path / "nothing"), str(tmp_path / "gone.jpg"),
                                      "--output", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(out.open())}
    assert rows["good.png"]["tumor_probability"] and not rows["good.png"]["error"]
    assert rows["zero.dcm"]["error"] == "empty file (0 bytes)"
    assert "symbolic link loop" in rows["loop.jpg"]["error"]
    assert rows["nothing"]["error"] == "no files found in this folder"
    assert rows["gone.jpg"]["error"] == "file not found"
    usage = CliRunner().invoke(app, ["predict", str(folder), "--axis", "5"])
    assert usage.exit_code == 2 and "Traceback" not in usage.output
