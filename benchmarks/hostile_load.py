"""Hostile-load benchmark of the clinic API: is a normal scan still answered quickly while large studies run?

    python benchmarks/hostile_load.py [--seconds 30] [--compare-with REV] [--output benchmarks/hostile_load.json]

Starts `braintriage serve` on a free loopback port (the bundled model) and, for `--seconds`, keeps two hostile
clients busy: one posting a 176-slice NIfTI volume (256x256x176, the size of a real 3D acquisition), one a
600-frame multi-frame DICOM file, each again as soon as it is answered. Meanwhile a normal client posts one
`Testing` JPEG every 0.5 s and records how long each answer takes. Reported: the normal requests' latency
(p50, p95, p99, max), how many were refused (503), the hostile requests answered, and the server's peak
memory (VmHWM). With `--compare-with REV` the same load runs against that revision of the code too (a
temporary git worktree), so the old and the new path are measured side by side. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))
from api_load import hardware, revision_tree, scan_bytes, serving  # noqa: E402
from conftest import synthetic_slice  # noqa: E402


def nifti_volume() -> bytes:
    """A 256x256x176 .nii.gz of head-like slices (a lesion on some), as a clinic's 3D acquisition."""
    import nibabel as nib

    volume = np.stack([synthetic_slice(256, seed=k, lesion=60 < k < 90) for k in range(176)], axis=-1)
    blob = nib.Nifti1Image(volume.astype(np.uint8), np.eye(4)).to_bytes()
    return gzip.compress(blob, compresslevel=1)


def multiframe_dicom(frames: int = 600) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "MR"
    ds.NumberOfFrames, ds.Rows, ds.Columns = frames, 256, 256
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.stack([synthetic_slice(256, seed=k) for k in range(frames)]).astype(np.uint8).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def peak_memory_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(base: str, seconds: float, normal: tuple[str, bytes], hostile: list[tuple[str, bytes]]) -> dict:
    stop = time.monotonic() + seconds
    latencies, refused, hostile_done, failures = [], 0, 0, []

    async def hostile_client(name: str, data: bytes):
        nonlocal hostile_done
        async with httpx.AsyncClient(timeout=300) as client:
            while time.monotonic() < stop:
                r = await client.post(f"{base}/api/v1/predict", files=[("files", (name, data))])
                if r.status_code == 200:
                    hostile_done += 1
                elif r.status_code != 503:
                    failures.append(f"hostile {name}: {r.status_code}")
                await asyncio.sleep(0.05)

    async def normal_client():
        nonlocal refused
        await asyncio.sleep(1.0)  # let the hostile uploads start first
        async with httpx.AsyncClient(timeout=300) as client:
            while time.monotonic() < stop:
                t = time.perf_counter()
                r = await client.post(f"{base}/api/v1/predict", files=[("files", normal)])
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t)
                elif r.status_code == 503:
                    refused += 1
                else:
                    failures.append(f"normal: {r.status_code}")
                await asyncio.sleep(0.5)

    await asyncio.gather(normal_client(), *(hostile_client(n, d) for n, d in hostile))
    lat = np.array(latencies)
    pct = {f"p{q}": round(float(np.percentile(lat, q)), 3) for q in (50, 95, 99)} if len(lat) else {}
    return {"normal_answered": len(lat), "normal_refused_503": refused, "normal_latency_s": {**pct,
            "max": round(float(lat.max()), 3) if len(lat) else None},
            "normal_within_2s": round(float((lat <= 2.0).mean()), 3) if len(lat) else None,
            "hostile_answered": hostile_done, "failures": failures}


def measure(source: Path, seconds: float, normal, hostile) -> dict:
    with serving(source) as (base, server):
        result = asyncio.run(run(base, seconds, normal, hostile))
        result["server_peak_memory_mb"] = round(peak_memory_mb(server.pid))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--compare-with", help="a git revision whose server to measure the same way")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "hostile_load.json")
    args = parser.parse_args()
    normal = scan_bytes()
    hostile = [("volume.nii.gz", nifti_volume()), ("multiframe.dcm", multiframe_dicom())]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    report = {"benchmark": "hostile_load", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "hardware": hardware(), "seconds": args.seconds,
              "hostile_uploads_mb": {n: round(len(d) / 1e6, 1) for n, d in hostile},
              "paths": {f"new ({commit}, working tree)": measure(REPO, args.seconds, normal, hostile)}}
    if args.compare_with:
        with revision_tree(args.compare_with) as old:
            report["paths"][f"old ({args.compare_with})"] = measure(old, args.seconds, normal, hostile)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["paths"], indent=2))


if __name__ == "__main__":
    main()
