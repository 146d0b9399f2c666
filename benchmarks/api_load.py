"""Load benchmark of the clinic API: concurrent clients posting scans to POST /api/v1/predict.

    python benchmarks/api_load.py [--clients 32] [--requests 25] [--heatmap] [--output benchmarks/api_load.json]

Starts `braintriage serve` on a free loopback port in a subprocess (the bundled model), sends
clients x requests uploads of one real `Testing` scan (a synthetic slice when the dataset is absent), and
reports throughput and p50/p95/p99 latency. A request refused 503 (the server admits a few at once) is sent
again after 0.1 s; its latency counts from the first try. Any error fails the run (exit 1). Results are written with the
hardware they ran on. With `--compare-with REV` that revision's server (a temporary git worktree) is measured
the same way in the same run (`old_path`). Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCAN = Path(os.environ.get("BRAINTRIAGE_DATA", REPO.parent / "shared/data/brain-tumor-classification-mri")) \
    / "Testing/glioma_tumor/image(1).jpg"


def scan_bytes() -> tuple[str, bytes]:
    if SCAN.exists():
        return SCAN.name, SCAN.read_bytes()
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import synthetic_slice
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(synthetic_slice(512)).save(buf, format="JPEG")
    return "synthetic.jpg", buf.getvalue()


@contextmanager
def revision_tree(revision: str) -> Iterator[Path]:
    """Another revision's code checked out in a temporary git worktree (removed afterwards), so that its server
    or CLI, run with PYTHONPATH=TREE/src, is measured beside the working tree's in the same run."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), revision], cwd=REPO, check=True,
                       capture_output=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)


def hardware() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}


async def run_load(base: str, clients: int, requests: int, name: str, data: bytes, heatmap: bool) -> dict:
    latencies, errors, refused = [], [], 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal refused
        for _ in range(requests):
            t = time.perf_counter()
            try:
                while True:  # the server admits a few requests at once and answers 503 to more: try again
                    r = await http.post(f"{base}/api/v1/predict", params={"heatmap": str(heatmap).lower()},
                                        files={"files": (name, data, "image/jpeg")})
                    if r.status_code != 503:
                        break
                    refused += 1
                    await asyncio.sleep(0.1)
                ok = r.status_code == 200 and r.json()["results"][0]["error"] is None
                if not ok:
                    errors.append(f"HTTP {r.status_code}")
            except httpx.HTTPError as e:
                errors.append(repr(e))
            latencies.append(time.perf_counter() - t)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests_per_client": requests, "requests": len(latencies), "errors": len(errors),
            "refused_503_then_retried": refused,
            "error_examples": errors[:5], "seconds": round(wall, 2),
            "throughput_requests_per_s": round(len(latencies) / wall, 2),
            "latency_ms": {"p50": round(float(np.percentile(ms, 50)), 1), "p95": round(float(np.percentile(ms, 95)), 1),
                           "p99": round(float(np.percentile(ms, 99)), 1), "max": round(float(ms.max()), 1)}}


@contextmanager
def serving(source: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`braintriage serve` with the code in `source` (its src/ first on the path) on a free loopback port, until
    the block ends: (base URL, server process). An error if it does not answer /healthz within 30 s."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(source / "src")}
    server = subprocess.Popen([sys.executable, "-m", "braintriage", "serve", "--port", str(port)], cwd=source,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"the server from {source} did not start")
        yield base, server
    finally:
        server.terminate()
        server.wait(timeout=30)


def measure(source: Path, args, name: str, data: bytes) -> dict:
    """Run the load against a server with the code in `source`."""
    with serving(source) as (base, _):
        return asyncio.run(run_load(base, args.clients, args.requests, name, data, args.heatmap))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=25)
    ap.add_argument("--heatmap", action="store_true", help="ask for heat maps too")
    ap.add_argument("--output", type=Path, default=REPO / "benchmarks" / "api_load.json")
    ap.add_argument("--compare-with", help="a git revision whose server to measure the same way")
    args = ap.parse_args()
    name, data = scan_bytes()
    result = measure(REPO, args, name, data)
    if args.compare_with:
        with revision_tree(args.compare_with) as tree:
            result["old_path"] = {"revision": args.compare_with, **measure(tree, args, name, data)}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    record = {"benchmark": "api_load", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "commit": commit, "scan": name, "scan_bytes": len(data), "heatmap": args.heatmap,
              "hardware": hardware(), **result}
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
