"""Load benchmark of the clinic API: concurrent clients posting scans to POST /api/v1/predict.

    python benchmarks/api_load.py [--clients 32] [--requests 25] [--heatmap] [--output benchmarks/api_load.json]

Starts `braintriage serve` on a free loopback port in a subprocess (the bundled model), sends
clients x requests uploads of one real `Testing` scan (a synthetic slice when the dataset is absent), and
reports throughput and p50/p95/p99 latency. Any error fails the run (exit 1). Results are written with the
hardware they ran on. Only 127.0.0.1 is contacted.
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
import time
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
    latencies, errors = [], []

    async def client(http: httpx.AsyncClient) -> None:
        for _ in range(requests):
            t = time.perf_counter()
            try:
                r = await http.post(f"{base}/api/v1/predict", params={"heatmap": str(heatmap).lower()},
                                    files={"files": (name, data, "image/jpeg")})
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
            "error_examples": errors[:5], "seconds": round(wall, 2),
            "throughput_requests_per_s": round(len(latencies) / wall, 2),
            "latency_ms": {"p50": round(float(np.percentile(ms, 50)), 1), "p95": round(float(np.percentile(ms, 95)), 1),
                           "p99": round(float(np.percentile(ms, 99)), 1), "max": round(float(ms.max()), 1)}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=25)
    ap.add_argument("--heatmap", action="store_true", help="ask for heat maps too")
    ap.add_argument("--output", type=Path, default=REPO / "benchmarks" / "api_load.json")
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "braintriage", "serve", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        name, data = scan_bytes()
        result = asyncio.run(run_load(base, args.clients, args.requests, name, data, args.heatmap))
    finally:
        server.terminate()
        server.wait(timeout=30)
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
