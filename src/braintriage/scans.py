"""What a clinic hands over, turned into scan items: plain images, DICOM files, series, multi-frame files,
CD folders with a DICOMDIR, and NIfTI volumes.

Every item is a list of 2D slices, each decoded on demand to an 8-bit grayscale image that then goes through
the one preprocessing path. A plain image is an item of one slice; a DICOM series or multi-frame file and a
NIfTI volume are *studies*, scored slice by slice and summarised by `inference.Predictor`.

DICOM pixels get the modality LUT (rescale slope/intercept), then the stored window (or, without one, a
robust 0.5-99.5 percentile window), then MONOCHROME1 inversion. Compressed transfer syntaxes decode through
pydicom's plugins (pylibjpeg: JPEG baseline/lossless, JPEG 2000; RLE natively); any other gets a per-file
error. Privacy: nothing from a DICOM header but the Study Instance UID is used, and that only hashed
(`study-` + 12 hex digits) unless `show_identifiers` is asked for; pydicom's own log messages are silenced,
as they can quote header values. Two header texts travel with an item for the clinic app's screen only
(`ScanItem.description`: the Series Description; `ScanItem.identifiers`: patient name and ID, only with
`show_identifiers`): the CLI, the CSV files, the page's export and the logs never show them.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import logging
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
from PIL import Image

from braintriage.preprocess import MAX_IMAGE_PIXELS, ImageReadError, decode_image

logging.getLogger("pydicom").setLevel(logging.CRITICAL)
NIFTI_SUFFIXES = (".nii", ".nii.gz")
AXIS_NAMES = ("sagittal", "coronal", "axial")  # RAS axes 0, 1, 2 after reorientation
# Work per input is bounded from the header, before any pixel is decoded. A brain MRI study has tens to a few
# hundred slices and a volume some millions of voxels (256x256x176 = 11.5M); past these a file is refused.
MAX_SLICES = 1024  # frames of a multi-frame DICOM file, or slices of a volume along its slice axis
MAX_VOLUME_VOXELS = 40_000_000


@dataclass
class Slice:
    label: str  # instance number, frame or index along the axis
    load: Callable[[], Image.Image]  # 8-bit grayscale; raises ImageReadError


@dataclass
class ScanItem:
    path: str  # the file or folder as found
    slices: list[Slice] = field(default_factory=list)
    study: str | None = None  # a study's name: hashed Study Instance UID, or the volume's file name
    error: str | None = None  # set when the item could not even be listed
    description: str | None = None  # what the study is (Series Description, or the volume's slicing): screen only
    identifiers: dict[str, str] | None = None  # patient name and ID, with show_identifiers only: screen only

    @property
    def is_study(self) -> bool:
        return self.study is not None


# ----- DICOM -----------------------------------------------------------------------------------------------

def is_dicom(head: bytes, name: str) -> bool:
    return head[128:132] == b"DICM" or name.lower().endswith((".dcm", ".dicom"))


def study_name(ds, show_identifiers: bool) -> str:
    uid = str(getattr(ds, "StudyInstanceUID", "") or "")
    if show_identifiers and uid:
        return uid
    return "study-" + hashlib.sha256(uid.encode()).hexdigest()[:12] if uid else "study-unknown"


def header_text(ds, keyword: str, limit: int = 64) -> str | None:
    """A header text for the screen: printable characters only, at most `limit` of them; None where absent or
    unreadable. Never for logs, CSV files or messages."""
    try:
        value = str(getattr(ds, keyword, "") or "")
    except Exception:  # a malformed value: shown as nothing, never quoted
        return None
    text = "".join(c for c in value if c.isprintable()).strip()[:limit]
    return text or None


def screen_fields(ds, show_identifiers: bool, default_description: str) -> dict:
    """ScanItem.description and .identifiers from a header (see the module notes on privacy)."""
    identifiers = None
    if show_identifiers:
        identifiers = {k: v for k, v in (("patient_name", header_text(ds, "PatientName")),
                                         ("patient_id", header_text(ds, "PatientID"))) if v}
    return {"description": header_text(ds, "SeriesDescription") or default_description,
            "identifiers": identifiers or None}


def _read_dicom(source: str | BinaryIO, headers_only: bool = False):
    import pydicom

    if not isinstance(source, str):
        source.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's warnings can quote header values
            return pydicom.dcmread(source, stop_before_pixels=headers_only, force=True)
    except Exception as e:
        raise ImageReadError(f"not a readable DICOM file ({type(e).__name__})") from None


def _first_number(value) -> float | None:
    """A DICOM number that may be multi-valued (several windows): the first one, or None."""
    from pydicom.multival import MultiValue

    try:
        return float(value[0] if isinstance(value, (MultiValue, list, tuple)) else value)
    except (TypeError, ValueError, IndexError):
        return None


def header_int(ds, keyword: str, default: int | None = None) -> int | None:
    """An integer header field, `default` when absent. A malformed one (text where a number belongs) is an
    ImageReadError naming the field and never quoting it: a header can hold anything, a patient ID too."""
    try:
        value = getattr(ds, keyword, None)
        return default if value is None or value == "" else int(value)
    except Exception:  # pydicom's own conversion errors quote the value: none of it goes on
        raise ImageReadError(f"malformed DICOM header: {keyword} is not a number") from None


WINDOW_SAMPLE = 1_000_000  # values a percentile window of a large file or volume is read from (an even sample)


def window_of(ds, values: Callable[[], np.ndarray]) -> tuple[float, float]:
    """The stored window (center, width), or a robust 0.5-99.5 percentile window of `values()` (modality
    values, called only when there is no stored window)."""
    c, w = _first_number(getattr(ds, "WindowCenter", None)), _first_number(getattr(ds, "WindowWidth", None))
    if c is not None and w is not None and w > 0:
        return c - w / 2, c + w / 2
    lo, hi = np.percentile(values(), [0.5, 99.5])
    return float(lo), float(hi)


def window_to_uint8(values: np.ndarray, ds, window: tuple[float, float]) -> np.ndarray:
    """Modality values -> 8 bits through `window` (low, high), MONOCHROME1 inverted."""
    lo, hi = window
    scaled = (values.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / max(hi - lo, 1e-6))
    out = np.clip(scaled, 0, 255).round().astype(np.uint8)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 255 - out  # MONOCHROME1: low values are bright
    return out


def dicom_frames(ds) -> list[np.ndarray]:
    """All frames of a dataset with pixels, as uint8 images ready for preprocessing. One window serves all
    frames of a file; it is converted a frame at a time, so a 600-frame file never holds more than its
    stored pixels and one frame in floating point."""
    from pydicom.pixels import apply_modality_lut

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = ds.pixel_array
    except Exception as e:
        name = getattr(syntax, "name", None) or str(syntax or "unknown")
        raise ImageReadError(f"DICOM pixel data in transfer syntax '{name}' cannot be decoded here "
                             f"({type(e).__name__}); JPEG baseline/lossless, JPEG 2000, RLE and "
                             "uncompressed are supported") from None
    frames_count = header_int(ds, "NumberOfFrames", 1) or 1
    samples = header_int(ds, "SamplesPerPixel", 1) or 1
    if frames_count == 1:
        pixels = pixels[None]

    def modality(a: np.ndarray) -> np.ndarray:
        if samples == 3:  # colour: luminance, like a colour JPEG
            return a @ np.array([0.299, 0.587, 0.114])
        try:
            return apply_modality_lut(a, ds)
        except Exception:
            raise ImageReadError("malformed DICOM header: RescaleSlope / RescaleIntercept or the modality LUT "
                                 "is not usable") from None

    # The percentile window reads every value of a file up to WINDOW_SAMPLE of them, else an even sample.
    step = max(1, pixels.size // WINDOW_SAMPLE)
    window = window_of(ds, lambda: modality(pixels if step == 1 else pixels.reshape(-1, *pixels.shape[3:])[::step]))
    return [window_to_uint8(modality(frame), ds, window) for frame in pixels]


def _slice_order(ds) -> tuple:
    """Sort key for the files of a series: position along the slice normal, else instance number."""
    try:
        orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
        normal = np.cross(orientation[:3], orientation[3:])
        return (0, float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])))
    except (AttributeError, ValueError, TypeError):
        return (1, _instance_number(ds, 0))  # a malformed instance number only costs the file its place


@dataclass
class _DicomSource:
    path: str  # display path
    open: Callable[[], str | BinaryIO]
    header: object = None


def _group_dicom(sources: list[_DicomSource], group_path: Callable[[list[_DicomSource]], str],
                 show_identifiers: bool, screen_identifiers: bool = False) -> list[ScanItem]:
    """Read headers, then: a multi-frame file is a study by itself; single-frame files of one series are
    one study, ordered along the slice axis. Unreadable files are items with their error."""
    items, series = [], {}
    for src in sources:
        try:
            src.header = _read_dicom(src.open(), headers_only=True)
            frames = header_int(src.header, "NumberOfFrames", 1)
            check_dicom_size(src.header, frames or 1, _source_bytes(src))
        except ImageReadError as e:
            items.append(ScanItem(src.path, error=str(e)))
            continue
        if frames and frames > 1:
            items.append(_multiframe_item(src, show_identifiers, screen_identifiers))
        else:
            key = (str(getattr(src.header, "StudyInstanceUID", "")), str(getattr(src.header, "SeriesInstanceUID", "")))
            series.setdefault(key, []).append(src)
    for members in series.values():
        members.sort(key=lambda s: _slice_order(s.header))
        slices = []
        for i, src in enumerate(members):
            slices.append(Slice(str(_instance_number(src.header, i + 1)),
                                lambda s=src: Image.fromarray(dicom_frames(_read_dicom(s.open()))[0])))
        items.append(ScanItem(group_path(members), slices, study_name(members[0].header, show_identifiers),
                              **screen_fields(members[0].header, screen_identifiers, "DICOM series")))
    return items


def _source_bytes(src: _DicomSource) -> int:
    opened = src.open()
    if isinstance(opened, str):
        return os.path.getsize(opened)
    return len(opened.getbuffer()) if isinstance(opened, io.BytesIO) else 0


# Uncompressed transfer syntaxes: their pixel data is rows x columns x frames x samples x bytes, no less.
_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


def check_dicom_size(ds, frames: int, file_bytes: int) -> None:
    """Refuse, from the header, a file whose decoding would be unbounded: more than MAX_SLICES frames, a frame
    over MAX_IMAGE_PIXELS, or (uncompressed) more frames than its bytes can hold: a 910-byte file claiming
    20,000 frames is refused here, not decoded 20,000 times."""
    rows, cols = header_int(ds, "Rows", 0) or 0, header_int(ds, "Columns", 0) or 0
    if frames > MAX_SLICES:
        raise ImageReadError(f"DICOM file claims {frames:,} frames; at most {MAX_SLICES:,} are accepted")
    if rows * cols > MAX_IMAGE_PIXELS:
        raise ImageReadError(f"DICOM image too large ({rows}x{cols} pixels; at most {MAX_IMAGE_PIXELS:,})")
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if syntax in _UNCOMPRESSED and file_bytes:
        samples = header_int(ds, "SamplesPerPixel", 1) or 1
        bits = header_int(ds, "BitsAllocated", 8) or 8
        needed = rows * cols * frames * samples * max(bits, 1) // 8
        if needed > file_bytes:
            raise ImageReadError(f"DICOM header claims {frames:,} frames of {rows}x{cols}, more pixel data than "
                                 f"the file's {file_bytes:,} bytes hold")


def _instance_number(ds, fallback: int) -> int:
    """The slice's name in a study: its InstanceNumber, or its place in the order when that is missing or
    malformed (a slice is never named with header text)."""
    try:
        return header_int(ds, "InstanceNumber", fallback)
    except ImageReadError:
        return fallback


def _multiframe_item(src: _DicomSource, show_identifiers: bool, screen_identifiers: bool = False) -> ScanItem:
    n = header_int(src.header, "NumberOfFrames", 1)
    cache: dict[str, list[np.ndarray]] = {}
    decoding = threading.Lock()  # slices are decoded on several threads: the file is decoded by one, once

    def frame(i: int) -> Image.Image:
        with decoding:
            if "frames" not in cache:  # decode the file once for all its frames
                cache["frames"] = dicom_frames(_read_dicom(src.open()))
        return Image.fromarray(cache["frames"][i])

    return ScanItem(src.path, [Slice(f"frame {i + 1}", lambda i=i: frame(i)) for i in range(n)],
                    study_name(src.header, show_identifiers),
                    **screen_fields(src.header, screen_identifiers, "multi-frame DICOM"))


def dicomdir_files(dicomdir: Path) -> list[Path]:
    """The image files a DICOMDIR (a CD's index) refers to."""
    ds = _read_dicom(str(dicomdir), headers_only=False)
    files = []
    for record in getattr(ds, "DirectoryRecordSequence", []):
        file_id = getattr(record, "ReferencedFileID", None)
        if file_id is not None and str(getattr(record, "DirectoryRecordType", "")).upper() == "IMAGE":
            parts = [file_id] if isinstance(file_id, str) else list(file_id)
            files.append(dicomdir.parent.joinpath(*parts))
    return files


# ----- NIfTI -----------------------------------------------------------------------------------------------

def nifti_item(path: str, load_image: Callable[[], object], axis: int | None) -> ScanItem:
    """A NIfTI volume, reoriented to RAS, sliced along `axis` (default: its shortest axis, the slice axis of
    a typical 2D acquisition), each slice turned the way radiologists view it."""
    import nibabel as nib

    try:
        img = load_image()
        shape = tuple(int(n) for n in img.header.get_data_shape())
    except ImageReadError as e:
        return ScanItem(path, error=str(e))
    except Exception as e:
        return ScanItem(path, error=f"not a readable NIfTI volume ({type(e).__name__})")
    try:
        check_volume_shape(shape)
    except ImageReadError as e:
        return ScanItem(path, error=str(e))
    if axis is not None and shape[axis] > MAX_SLICES or axis is None and min(shape[:3]) > MAX_SLICES:
        return ScanItem(path, error=f"NIfTI volume has more than {MAX_SLICES:,} slices")
    try:
        img = nib.as_closest_canonical(img)
        first_volume = (slice(None),) * 3 + (0,) * (len(img.shape) - 3)  # a time series: its first volume only
        data = np.asanyarray(img.dataobj[first_volume], dtype=np.float32)
    except Exception as e:
        return ScanItem(path, error=f"not a readable NIfTI volume ({type(e).__name__})")
    if data.ndim != 3:
        return ScanItem(path, error=f"NIfTI data has {data.ndim} dimensions; a 3D volume is needed")
    if axis is None:
        axis = int(np.argmin(data.shape))
    # A robust window from the finite values (an even sample of at most WINDOW_SAMPLE of them), then 8 bits a
    # slice at a time: the volume is never copied whole in floating point.
    sample = data.reshape(-1)[::max(1, data.size // WINDOW_SAMPLE)]
    finite = sample[np.isfinite(sample)]
    lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    volume = np.empty(data.shape, dtype=np.uint8)
    gain = np.float32(255.0 / max(hi - lo, 1e-6))
    for k in range(data.shape[-1]):
        plane = np.nan_to_num(data[..., k])
        volume[..., k] = np.clip((plane - np.float32(lo)) * gain, 0, 255).round()

    def view(k: int) -> Image.Image:
        # RAS array (x: right, y: anterior, z: superior). Rows: anterior or superior at the top; columns:
        # the patient's right on the viewer's left (radiological convention).
        plane = volume[(slice(None),) * axis + (k,)]  # a view: np.take would copy the whole volume per slice
        return Image.fromarray(np.ascontiguousarray(plane.T[::-1, ::-1]))

    name = Path(path).name
    study = name[:-7] if name.endswith(".nii.gz") else Path(name).stem
    return ScanItem(path, [Slice(f"{AXIS_NAMES[axis]} {k}", lambda k=k: view(k)) for k in range(volume.shape[axis])],
                    study, description=f"NIfTI volume, {AXIS_NAMES[axis]} slices")


def check_volume_shape(shape: tuple[int, ...]) -> None:
    """Refuse, from a NIfTI header, a volume that is not 3D or whose work would be unbounded: more than
    MAX_VOLUME_VOXELS voxels, or a side longer than an accepted image's."""
    voxels = int(np.prod(shape[:3], dtype=np.int64)) if shape else 0
    if len(shape) < 3 or voxels > MAX_VOLUME_VOXELS or max(shape[:3]) > MAX_IMAGE_PIXELS ** 0.5:
        raise ImageReadError(f"NIfTI volume of shape {'x'.join(map(str, shape))} refused: a 3D volume of at most "
                             f"{MAX_VOLUME_VOXELS:,} voxels is accepted")


def _load_nifti(path: str):
    import nibabel as nib  # only when a volume is given: a JPEG's triage does not wait for it

    return nib.load(path)


def _nifti_from_bytes(blob: bytes):
    """An uploaded NIfTI volume. A gzipped one is decompressed only as far as its header says it holds, and only
    after the header passed the size limits: a small .nii.gz never inflates to gigabytes in memory."""
    import nibabel as nib

    if blob[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=io.BytesIO(blob)) as f:
            header = nib.Nifti1Header.from_fileobj(io.BytesIO(f.read(348)))
            shape = header.get_data_shape()
            check_volume_shape(shape)
            volume_bytes = int(np.prod(shape[:3], dtype=np.int64)) * header.get_data_dtype().itemsize
            blob = header.binaryblock + f.read(int(header.get_data_offset()) - 348 + volume_bytes)
    return nib.Nifti1Image.from_bytes(blob)


# ----- Putting inputs together -----------------------------------------------------------------------------

def _plain(path: str, opener: Callable[[], str | BinaryIO]) -> ScanItem:
    return ScanItem(path, [Slice("1", lambda: decode_image(opener()))])


def _head(path: str) -> tuple[bytes, str | None]:
    """The first bytes of a file (enough to see a DICOM preamble), or why it cannot be read at all: said in
    plain words here, so a permission problem is never reported as a corrupt image."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except FileNotFoundError:
        return b"", "file not found"
    except PermissionError:
        return b"", "permission denied: the file cannot be read"
    except IsADirectoryError:
        return b"", "is a directory"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return b"", "symbolic link loop: the link never reaches a file"
        return b"", f"cannot be read ({e.strerror or type(e).__name__})"
    return head, (None if head else "empty file (0 bytes)")


def items_from_paths(inputs: list[str | Path], show_identifiers: bool = False, axis: int | None = None
                     ) -> list[ScanItem]:
    """Files as given and folders walked recursively (sorted, hidden files skipped), as scan items: DICOM
    files grouped into series (a DICOMDIR's referenced files too), NIfTI volumes, the rest plain images.
    A path that does not exist is kept, so it gets its own error row."""
    items: list[ScanItem] = []

    def unreadable_folder(e: OSError) -> None:  # reported on its own row, never skipped in silence
        items.append(ScanItem(str(e.filename), error=f"folder cannot be read ({e.strerror or type(e).__name__})"))

    for item in map(str, inputs):
        files = []
        if os.path.isdir(item):
            for dirpath, dirnames, filenames in os.walk(item, onerror=unreadable_folder):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                files += [os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith(".")]
            if not files and not any(it.path.startswith(item) for it in items):
                items.append(ScanItem(item, error="no files found in this folder"))
        else:
            files.append(item)
        referenced: set[str] = set()
        dicom: list[_DicomSource] = []
        for f in files:
            if os.path.basename(f).upper() == "DICOMDIR":
                try:
                    for ref in dicomdir_files(Path(f)):
                        referenced.add(os.path.normpath(str(ref)))
                        dicom.append(_DicomSource(str(ref), lambda r=str(ref): r))
                except ImageReadError as e:
                    items.append(ScanItem(f, error=f"DICOMDIR: {e}"))
        for f in files:
            if os.path.normpath(f) in referenced or os.path.basename(f).upper() == "DICOMDIR":
                continue
            head, problem = _head(f)
            if problem:
                items.append(ScanItem(f, error=problem))
            elif f.lower().endswith(NIFTI_SUFFIXES):
                items.append(nifti_item(f, lambda f=f: _load_nifti(f), axis))
            elif is_dicom(head, f):
                dicom.append(_DicomSource(f, lambda f=f: f))
            else:
                items.append(_plain(f, lambda f=f: f))
        items += _group_dicom(dicom, lambda members: _common_folder(members, item), show_identifiers)
    return items


def _common_folder(members: list[_DicomSource], given: str) -> str:
    if len(members) == 1:
        return members[0].path
    return os.path.commonpath([m.path for m in members]) or given


def items_from_uploads(uploads: list[tuple[str, bytes]], show_identifiers: bool = False,
                       axis: int | None = None, screen_identifiers: bool = False) -> list[ScanItem]:
    """Uploaded files, held in memory: DICOM files of one series become one study, as in a folder.
    `show_identifiers` names studies by their UID; `screen_identifiers` fills ScanItem.identifiers."""
    items, dicom = [], []
    for name, blob in uploads:
        if name.lower().endswith(NIFTI_SUFFIXES):
            items.append(nifti_item(name, lambda b=blob: _nifti_from_bytes(b), axis))
        elif is_dicom(blob[:132], name):
            dicom.append(_DicomSource(name, lambda b=blob: io.BytesIO(b)))
        else:
            items.append(_plain(name, lambda b=blob: io.BytesIO(b)))
    return items + _group_dicom(dicom, _upload_series_name, show_identifiers, screen_identifiers)


def _upload_series_name(members: list[_DicomSource]) -> str:
    """An uploaded series is named by its first file, and how many more it holds."""
    return members[0].path if len(members) == 1 else f"{members[0].path} (+{len(members) - 1})"
