"""A bounded fuzz test of the decoders: mutated JPEG, PNG, TIFF, DICOM and NIfTI files (bytes flipped, cut,
repeated, fields overwritten) give a score or an error on their own row, never an exception, in bounded time."""

import io
import time

import nibabel as nib
import numpy as np
from PIL import Image

from braintriage.inference import Predictor
from braintriage.scans import items_from_paths
from conftest import synthetic_slice
from test_scans import make_dicom, save

MUTANTS_PER_FORMAT = 40


def seeds(tmp_path) -> dict[str, bytes]:
    out = {}
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("TIFF", "tif")):
        buf = io.BytesIO()
        Image.fromarray(synthetic_slice(96)).save(buf, format=fmt)
        out[ext] = buf.getvalue()
    out["dcm"] = open(save(make_dicom(synthetic_slice(64).astype(np.uint16) * 16), tmp_path / "seed.dcm"), "rb").read()
    volume = nib.Nifti1Image(np.stack([synthetic_slice(48, seed=k) for k in range(6)], -1), np.eye(4))
    out["nii"] = volume.to_bytes()
    return out


def mutate(blob: bytes, rng: np.random.Generator) -> bytes:
    data = bytearray(blob)
    kind = rng.integers(4)
    if kind == 0:  # flip bytes, headers included
        for i in rng.integers(0, len(data), rng.integers(1, 16)):
            data[i] = rng.integers(256)
    elif kind == 1:  # cut short
        data = data[:rng.integers(0, len(data))]
    elif kind == 2:  # repeat a chunk
        a = int(rng.integers(0, len(data)))
        data[a:a] = data[a:a + int(rng.integers(1, 512))] * int(rng.integers(1, 8))
    else:  # overwrite the first bytes past the magic number with 0xFF (sizes, counts, offsets)
        a = int(rng.integers(4, min(400, len(data))))
        data[a:a + 8] = b"\xff" * 8
    return bytes(data)


def test_mutated_files_give_rows_never_exceptions(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "fuzz"
    folder.mkdir()
    for ext, blob in seeds(tmp_path).items():
        for k in range(MUTANTS_PER_FORMAT):
            (folder / f"{ext}-{k}.{ext}").write_bytes(mutate(blob, rng))
    predictor = Predictor()
    t = time.perf_counter()
    results = predictor.predict_items(items_from_paths([folder]))
    assert time.perf_counter() - t < 120
    # Every image and volume file has its own row; the DICOM mutants share their seed's series, so those still
    # readable form one study and each unreadable one has its own row.
    plain = [r for r in results if not r.path.endswith(".dcm") and "fuzz" != r.path.rsplit("/", 1)[-1]]
    assert len(plain) >= 4 * MUTANTS_PER_FORMAT and len(results) > 4 * MUTANTS_PER_FORMAT
    for r in results:
        assert (r.error is not None) or (r.tumor_probability is not None and 0 <= r.tumor_probability <= 1), r.path
    assert sum(r.error is None for r in results) > 0 and sum(r.error is not None for r in results) > 0
