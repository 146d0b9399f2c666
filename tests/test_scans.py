"""DICOM (files, series, multi-frame, DICOMDIR, compressed) and NIfTI inputs, built in code, and privacy."""

import csv
import io
import re

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless, MRImageStorage, RLELossless,
                         ExplicitVRLittleEndian, generate_uid)
from click.testing import CliRunner

from braintriage.cli import app
from braintriage.inference import Predictor
from braintriage.preprocess import decode_image
from braintriage.scans import items_from_paths, nifti_item
from conftest import synthetic_slice

PHI = ("DOE", "JANE", "PID-424242", "19800101")
STUDY_UID = generate_uid()
runner = CliRunner()


def make_dicom(pixels: np.ndarray, *, series_uid: str | None = None, instance: int = 1, bits: int = 12,
               window: tuple[float, float] | None = None, slope: float = 1.0, intercept: float = 0.0,
               photometric: str = "MONOCHROME2", position: float | None = None) -> Dataset:
    """An MR image dataset with a header full of fake identifiers. pixels: (rows, cols) or (frames, rows, cols)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "DOE^JANE", "PID-424242", "19800101"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY_UID, series_uid or generate_uid()
    ds.Modality, ds.InstanceNumber = "MR", instance
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.SeriesNumber = "20260101", "120000", "1", 1
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if position is not None:
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, position]
    ds.PixelData = pixels.astype(np.uint8 if bits == 8 else np.uint16).tobytes()
    return ds


def save(ds: Dataset, path) -> str:
    ds.save_as(path, enforce_file_format=True)
    return str(path)


def assert_no_identifiers(text: str) -> None:
    for value in PHI:
        assert value not in text


def test_single_file_window_rescale_and_monochrome1(tmp_path):
    g = synthetic_slice(128, lesion=True)
    stored = g.astype(np.uint16) * 15 + 100  # 12 bits (at most 3925), offset undone by the intercept
    plain = save(make_dicom(stored, window=(1912.5, 3825), intercept=-100), tmp_path / "a.dcm")
    inverted = save(make_dicom(3825 - g.astype(np.uint16) * 15, window=(1912.5, 3825), photometric="MONOCHROME1"),
                    tmp_path / "b.dcm")
    no_window = save(make_dicom(stored), tmp_path / "c.dcm")
    a = np.asarray(items_from_paths([plain])[0].slices[0].load())
    assert np.abs(a.astype(int) - g).max() <= 1
    b = np.asarray(items_from_paths([inverted])[0].slices[0].load())
    assert np.abs(b.astype(int) - g).max() <= 1  # inverted back
    c = np.asarray(items_from_paths([no_window])[0].slices[0].load())
    assert c.min() == 0 and c.max() == 255  # the robust window spreads it


def test_series_folder_multiframe_and_plain_image_side_by_side(tmp_path):
    series = generate_uid()
    folder = tmp_path / "scans"
    folder.mkdir()
    for n, z in enumerate([3.0, 1.0, 2.0, 5.0, 4.0]):  # files out of order
        save(make_dicom(synthetic_slice(96, seed=n) * 16, series_uid=series, instance=int(z), position=z,
                        window=(2040, 4080)), folder / f"IM{n}")
    save(make_dicom(np.stack([synthetic_slice(96, seed=10 + k) * 16 for k in range(4)]), window=(2040, 4080)),
         folder / "multi.dcm")
    Image.fromarray(synthetic_slice(96)).save(folder / "photo.png")
    items = items_from_paths([folder])
    by_slices = sorted(len(it.slices) for it in items)
    assert by_slices == [1, 4, 5]
    series_item = next(it for it in items if len(it.slices) == 5)
    assert [s.label for s in series_item.slices] == ["1", "2", "3", "4", "5"]  # ordered along the axis
    assert series_item.study.startswith("study-") and series_item.path == str(folder)
    results = Predictor().predict_items(items)
    study = next(r for r in results if r.slices == 5)
    # The most suspicious 3 of the slices the verdict rests on: the guard may leave out made-up slices that do not
    # look like brain MRI (it says how many), and the top slices are never among those.
    left_out = re.fullmatch(r"(\d) of 5 slices left out: not like brain MRI", study.warning or "")
    used = 5 - int(left_out.group(1)) if left_out else 5  # none left out, or all (then all are read, unreliable)
    assert len(study.top_slices) == min(3, used) and len(study.slice_probabilities) == 5
    assert set(study.top_slices) <= set(study.slice_labels)
    assert 0 <= study.tumor_probability <= 1 and study.error is None


def test_dicomdir_cd_is_read_through_its_index(tmp_path):
    from pydicom.fileset import FileSet

    fs = FileSet()
    series = generate_uid()
    for n in range(3):
        fs.add(make_dicom(synthetic_slice(64, seed=n) * 16, series_uid=series, instance=n + 1, window=(2040, 4080)))
    fs.write(tmp_path / "cd")
    items = items_from_paths([tmp_path / "cd"])
    assert len(items) == 1 and len(items[0].slices) == 3 and items[0].error is None
    assert Predictor().predict_items(items)[0].tumor_probability is not None


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, JPEGBaseline8Bit])
def test_compressed_transfer_syntaxes_decode(tmp_path, syntax):
    g = synthetic_slice(128, lesion=True)
    if syntax == JPEGBaseline8Bit:
        ds = make_dicom(g, bits=8, window=(127.5, 255))
        buf = io.BytesIO()
        Image.fromarray(g).save(buf, format="JPEG", quality=95)
        ds.PixelData = encapsulate([buf.getvalue()])
        ds.file_meta.TransferSyntaxUID = syntax
    else:
        ds = make_dicom(g.astype(np.uint16) * 16, window=(2040, 4080))
        ds.compress(syntax)
    path = save(ds, tmp_path / "x.dcm")
    out = np.asarray(items_from_paths([path])[0].slices[0].load())
    assert np.abs(out.astype(int) - g).mean() < 2


def test_unsupported_transfer_syntax_is_a_clear_error_on_its_row(tmp_path):
    ds = make_dicom(synthetic_slice(64).astype(np.uint16))
    ds.PixelData = encapsulate([b"\xff\xd8 not decodable \xff\xd9"])
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    save(ds, tmp_path / "ls.dcm")
    Image.fromarray(synthetic_slice(64)).save(tmp_path / "fine.png")
    results = Predictor().predict_items(items_from_paths([tmp_path]))
    errors = {r.path.rsplit("/", 1)[-1]: r.error for r in results}
    assert "transfer syntax" in errors["ls.dcm"] and "JPEG-LS" in errors["ls.dcm"]
    assert errors["fine.png"] is None
    assert_no_identifiers(" ".join(str(e) for e in errors.values()))


@pytest.mark.dataset
def test_dicom_probe_scores_like_its_jpeg(seed_data, tmp_path):
    jpeg = seed_data / "Testing" / "glioma_tumor" / "image(1).jpg"
    g = np.asarray(decode_image(jpeg))
    probe = save(make_dicom(g.astype(np.uint16) * 15 + 100, window=(1912.5, 3825), intercept=-100),
                 tmp_path / "p.dcm")  # 12-bit stored values; the window maps them back onto the JPEG's 0-255
    from_jpeg, from_dicom = Predictor().predict_files([str(jpeg), probe])
    assert abs(from_jpeg.tumor_probability - from_dicom.tumor_probability) <= 0.02


def test_nifti_slicing_orientation_and_axis(tmp_path):
    volume = np.zeros((64, 48, 5), np.float32)  # x (right), y (anterior), z (superior): shortest is z
    volume[20:44, 10:40, :] = 100
    volume[60:64, 44:48, 2] = 1000  # a marker at the patient's right, anterior
    path = tmp_path / "head.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    item = nifti_item(str(path), lambda: nib.load(path), axis=None)
    assert len(item.slices) == 5 and item.slices[2].label == "axial 2" and item.study == "head"
    view = np.asarray(item.slices[2].load())
    assert view.shape == (48, 64)
    assert view[:4, :4].min() == 255  # anterior at the top, the patient's right on the viewer's left
    out = tmp_path / "n.csv"
    result = runner.invoke(app, ["predict", str(path), "--output", str(out)])
    assert result.exit_code == 0, result.output
    row = next(csv.DictReader(out.open()))
    assert row["study"] == "head" and row["slices"] == "5" and len(row["top_slices"].split(";")) == 3
    sagittal = runner.invoke(app, ["predict", str(path), "--axis", "0", "--output", str(out)])
    assert sagittal.exit_code == 0 and next(csv.DictReader(out.open()))["slices"] == "64"


def test_no_identifier_leaves_through_cli_csv_or_api(tmp_path, caplog):
    folder = tmp_path / "patient"
    folder.mkdir()
    series = generate_uid()
    for n in range(3):
        save(make_dicom(synthetic_slice(64, seed=n) * 16, series_uid=series, instance=n + 1), folder / f"{n}.dcm")
    broken = make_dicom(synthetic_slice(64).astype(np.uint16))
    broken.PixelData = b"\x00" * 10  # wrong length: an error row
    save(broken, folder / "broken.dcm")
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["predict", str(folder), "--output", str(out)])
    text = result.output + out.read_text() + caplog.text
    assert_no_identifiers(text)
    assert STUDY_UID not in text and "study-" in text
    shown = runner.invoke(app, ["predict", str(folder), "--show-identifiers", "--output", str(out)])
    assert STUDY_UID in out.read_text()
    assert_no_identifiers(shown.output + out.read_text())

    from fastapi.testclient import TestClient

    from braintriage.webapp import create_app

    files = [("files", (f"{n}.dcm", (folder / f"{n}.dcm").read_bytes(), "application/dicom")) for n in range(3)]
    r = TestClient(create_app()).post("/api/v1/predict?heatmap=true", files=files)
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == 1 and results[0]["slices"] == 3 and results[0]["study"].startswith("study-")
    assert_no_identifiers(r.text + caplog.text)
    assert STUDY_UID not in r.text


def test_malformed_header_numbers_are_per_file_errors_that_never_quote_the_field(tmp_path, caplog):
    """NumberOfFrames, InstanceNumber or RescaleSlope written as text: the file gets its own error (or, for the
    slice order, a fallback), the good file beside it is answered, and the field's text appears nowhere."""
    from pydicom.dataelem import DataElement

    secrets = {"NumberOfFrames": "PIDX9876543", "InstanceNumber": "ZZSECRET", "RescaleSlope": "ACME"}
    folder = tmp_path / "mixed"
    folder.mkdir()
    for k, (keyword, text) in enumerate(secrets.items()):
        ds = make_dicom(synthetic_slice(64, seed=k) * 16)
        tag = {"NumberOfFrames": 0x00280008, "InstanceNumber": 0x00200013, "RescaleSlope": 0x00281053}[keyword]
        ds[tag] = DataElement(tag, "LO", text)  # text where a number belongs, as a careless writer stores it
        ds.save_as(folder / f"{keyword}.dcm", enforce_file_format=True)
    Image.fromarray(synthetic_slice()).save(folder / "good.png")
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["predict", str(folder), "--output", str(out)])
    assert result.exit_code in (0, 1) and "Traceback" not in result.output, result.output
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(out.open())}
    text = result.output + out.read_text() + caplog.text
    for secret in secrets.values():
        assert secret not in text
    assert rows["good.png"]["tumor_probability"] and not rows["good.png"]["error"]
    assert "NumberOfFrames" in rows["NumberOfFrames.dcm"]["error"]
    assert "RescaleSlope" in rows["RescaleSlope.dcm"]["error"] or "rescale" in rows["RescaleSlope.dcm"]["error"]
    assert rows["InstanceNumber.dcm"]["tumor_probability"]  # a bad instance number only loses its ordering


def test_oversized_volumes_and_frame_counts_are_refused_from_the_header(tmp_path):
    """A 293 KB zero-filled 512x512x256 .nii.gz and a tiny DICOM file claiming 20,000 frames: each refused on
    its row in well under a second, the good file beside them answered, on the CLI and through uploads."""
    import time
    import tracemalloc

    big = nib.Nifti1Image(np.zeros((512, 512, 256), np.uint8), np.eye(4))
    nib.save(big, tmp_path / "zeros.nii.gz")
    claim = make_dicom(synthetic_slice(8).astype(np.uint16))
    claim.NumberOfFrames = 20000
    save(claim, tmp_path / "frames.dcm")
    Image.fromarray(synthetic_slice()).save(tmp_path / "good.png")
    uploads = [(name, (tmp_path / name).read_bytes()) for name in ("zeros.nii.gz", "frames.dcm", "good.png")]
    predictor = Predictor()
    tracemalloc.start()
    t = time.perf_counter()
    from_folder = predictor.predict_items(items_from_paths([tmp_path]))
    from braintriage.scans import items_from_uploads

    from_uploads = predictor.predict_items(items_from_uploads(uploads))
    assert time.perf_counter() - t < 10 and tracemalloc.get_traced_memory()[1] < 200e6
    tracemalloc.stop()
    for results in (from_folder, from_uploads):
        by_name = {r.path.rsplit("/", 1)[-1]: r for r in results}
        assert "refused" in by_name["zeros.nii.gz"].error
        assert "20,000 frames" in by_name["frames.dcm"].error
        assert by_name["good.png"].error is None and by_name["good.png"].tumor_probability is not None
