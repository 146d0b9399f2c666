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
Both move by 10-20% between runs on this machine, more than a millisecond of a heat map's cost, so the web app's
own work per scan is measured without the server as well:
- in-process CPU time per scan: `Predictor.predict_items` then `webapp.to_result` (the PNGs), 300 scans a round
  after 20 to warm up, verdict-only and heat map, in a fresh process per round; with `--compare-with`, rounds of
  that revision's tree (its own code and bundled model) alternate with this tree's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
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


# Runs in a fresh process with one tree's src/ on PYTHONPATH (and that tree as the working directory).
IN_PROCESS = r"""
import json, sys, time
from braintriage.inference import Predictor
from braintriage.scans import items_from_paths
from braintriage.webapp import to_result
predictor, items, n = Predictor(), items_from_paths([sys.argv[1]]), int(sys.argv[2])
def answer(heatmap):
    return [to_result(p, predictor) for p in predictor.predict_items(items, heatmap)]
def cpu_ms(heatmap):
    for _ in range(20):
        answer(heatmap)
    start = time.process_time()
    for _ in range(n):
        answer(heatmap)
    return (time.process_time() - start) / n * 1000
print(json.dumps({"verdict": cpu_ms(False), "heatmap": cpu_ms(True)}))
"""


def in_process(trees: dict[str, Path], rounds: int, scan: Path, scans: int = 300) -> dict:
    """CPU ms per scan of a verdict and of a heat map, the web app's work without the server, for each tree;
    rounds of the trees alternate (this machine's speed drifts)."""
    runs = {label: [] for label in trees}
    for _ in range(rounds):
        for label, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": str(tree / "src")}
            out = subprocess.run([sys.executable, "-c", IN_PROCESS, str(scan), str(scans)], cwd=tree, env=env,
                                 capture_output=True, text=True, check=True).stdout
            runs[label].append(json.loads(out.strip().splitlines()[-1]))
    result = {}
    for label, measured in runs.items():
        verdict = statistics.median(m["verdict"] for m in measured)
        heatmap = statistics.median(m["heatmap"] for m in measured)
        result[label] = {"verdict": round(verdict, 2), "heatmap": round(heatmap, 2),
                         "ratio": round(heatmap / verdict, 3),
                         "rounds": {k: [round(m[k], 2) for m in measured] for k in ("verdict", "heatmap")}}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compare-with", help="a git revision whose server to measure the same way")
    ap.add_argument("--output", type=Path, default=REPO / "benchmarks" / "heatmap_cost.json")
    args = ap.parse_args()
    name, data = scan_bytes()
    t = time.perf_counter()
    result = measure(REPO, args.rounds, name, data)
    with tempfile.TemporaryDirectory() as scratch:
        scan = Path(scratch) / name
        scan.write_bytes(data)
        if args.compare_with:
            with revision_tree(args.compare_with) as tree:
                result["old_path"] = {"revision": args.compare_with, **measure(tree, args.rounds, name, data)}
                both = in_process({"new": REPO, "old": tree}, args.rounds, scan)
            result["old_path"]["in_process_cpu_ms_per_scan"] = both["old"]
        else:
            both = in_process({"new": REPO}, args.rounds, scan)
        result["in_process_cpu_ms_per_scan"] = both["new"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    record = {"benchmark": "heatmap_cost", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "commit": commit, "scan": name, "scan_bytes": len(data), "hardware": hardware(),
              "seconds": round(time.perf_counter() - t), **result}
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
