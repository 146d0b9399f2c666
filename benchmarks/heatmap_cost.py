"""What a heat map costs next to a verdict, through the clinic API: this tree and, with `--compare-with REV`, that
revision, measured the same way in one run.

    python benchmarks/heatmap_cost.py [--compare-with REV] [--rounds 3] [--output benchmarks/heatmap_cost.json]

For each server (`braintriage serve`, the bundled model, one `Testing` scan as in api_load.py), rounds alternate
verdict-only and `?heatmap=true` requests:
- server CPU time per request: one client, one request at a time (200 a round, after 20 to warm up), the server
  process's user + system time from /proc divided by the requests; the figure is the median over rounds;
- throughput under load: api_load.py's 32 clients x 25 requests, median over rounds.
The cost ratio is heat map / verdict for CPU time and verdict / heat map for throughput (the client runs on the
same cores, so throughput counts its work too). Issue 24 asks for at most 1.3.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from api_load import hardware, revision_tree, run_load, scan_bytes, serving  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_ms_per_request(base: str, pid: int, heatmap: bool, name: str, data: bytes, requests: int = 200) -> float:
    with httpx.Client(timeout=60) as http:
        def post() -> None:
            r = http.post(f"{base}/api/v1/predict", params={"heatmap": str(heatmap).lower()},
                          files={"files": (name, data, "image/jpeg")})
            if r.status_code != 200 or r.json()["results"][0]["error"] is not None:
                raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
        for _ in range(20):
            post()
        start = cpu_seconds(pid)
        for _ in range(requests):
            post()
        return (cpu_seconds(pid) - start) / requests * 1000


def measure(source: Path, rounds: int, name: str, data: bytes) -> dict:
    cpu = {False: [], True: []}
    throughput = {False: [], True: []}
    with serving(source) as (base, server):
        for _ in range(rounds):
            for heatmap in (False, True):
                cpu[heatmap].append(cpu_ms_per_request(base, server.pid, heatmap, name, data))
                load = asyncio.run(run_load(base, 32, 25, name, data, heatmap))
                if load["errors"]:
                    raise RuntimeError(f"errors under load: {load['error_examples']}")
                throughput[heatmap].append(load["throughput_requests_per_s"])
    cpu_verdict, cpu_heatmap = statistics.median(cpu[False]), statistics.median(cpu[True])
    rps_verdict, rps_heatmap = statistics.median(throughput[False]), statistics.median(throughput[True])
    return {"server_cpu_ms_per_request": {"verdict": round(cpu_verdict, 2), "heatmap": round(cpu_heatmap, 2),
                                          "ratio": round(cpu_heatmap / cpu_verdict, 3),
                                          "rounds": {"verdict": [round(v, 2) for v in cpu[False]],
                                                     "heatmap": [round(v, 2) for v in cpu[True]]}},
            "throughput_32_clients_requests_per_s": {"verdict": rps_verdict, "heatmap": rps_heatmap,
                                                     "ratio": round(rps_verdict / rps_heatmap, 3),
                                                     "rounds": {"verdict": throughput[False],
                                                                "heatmap": throughput[True]}}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compare-with", help="a git revision whose server to measure the same way")
    ap.add_argument("--output", type=Path, default=REPO / "benchmarks" / "heatmap_cost.json")
    args = ap.parse_args()
    name, data = scan_bytes()
    t = time.perf_counter()
    result = measure(REPO, args.rounds, name, data)
    if args.compare_with:
        with revision_tree(args.compare_with) as tree:
            result["old_path"] = {"revision": args.compare_with, **measure(tree, args.rounds, name, data)}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    record = {"benchmark": "heatmap_cost", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "commit": commit, "scan": name, "scan_bytes": len(data), "hardware": hardware(),
              "seconds": round(time.perf_counter() - t), **result}
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
