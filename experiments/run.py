"""Run experiment configs and append their numbers to the one results table, experiments/results.md.

    python experiments/run.py experiments/configs/NAME.json [MORE.json ...]   # again after an interruption: resumes
    python experiments/run.py --jobs 6 --source-cache DIR CONFIGS...          # a GPU machine without the data

A config (JSON) holds what was decided before the result: the training sources, the `braintriage train` flags,
the kind of run (`holdout_source`: leave-source-out; `folds`: grouped cross-validation; neither: one model),
and `adopt_if`, the rule that says what the result will change. The runner builds the command, runs it in
RUN_DIR = runs/NAME, and appends one row: the held-out source's numbers, the pooled out-of-fold numbers, or
the validation numbers, with the commit and the seconds it took.

A config with `"seeds": [0, 1, 2]` is one run per seed (runs/NAME-s0, ...; one row each), so that a
difference between recipes can be read against the spread between seeds of one recipe; `--seed K` runs one of
them. A distilled recipe names its teacher with the seed left open
(`"teacher": "runs/TEACHER-s{seed}/model.safetensors"`: each seed learns from the teacher run of the same
seed; `"init_from"`, the model a fine-tune starts from, likewise); a distilled cross-validation names a folder
of fold teachers (or of fold starting models), and `--only-fold K` trains one fold, so that a teacher fold and
its student fold run one after the other.
`--jobs N` runs N trainings at once, each its own process logging to runs/RUN.log (a GPU is mostly idle
under one small model). `--source-cache DIR` reads each source from DIR/FOLDER.npz, its decoded cache (same
images, same fingerprint; `braintriage train` takes such files directly): what travels to a GPU machine.

A cross-validation outlives the machine it ran on: each finished fold (runs/NAME/folds/fold-K.json, its
out-of-fold predictions and the recipe and data fingerprint they came from) is kept, gzipped, in
experiments/cv/NAME/, which is committed. Run again anywhere, the runner puts them back first, so the CV trains
only the folds still missing (a 200 px fold: 18-31 minutes on the 2-core CPU), and a finished CV's cv.json and
oof.csv, which `braintriage threshold --cv` reads, are rebuilt from them in a minute. A leave-source-out run's
holdout.json (one row of a model card's leave-source-out table) is kept the same way, as
experiments/holdout/RUN/holdout.json: `braintriage model-card --leave-source-out` reads it there after the run's
machine is gone. Beside it, scores.csv.gz holds each held-out image's P(tumor) and guard flag, from which
experiments/held_out_verdicts.py --scores counts the app's verdicts without the model.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from braintriage.evaluate import held_out_scores_csv

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results.md"
KEPT_FOLDS = ROOT / "experiments" / "cv"
KEPT_HOLDOUTS = ROOT / "experiments" / "holdout"
HEADER = ("| date | experiment | commit | kind | images (tumors) | sensitivity | specificity | ROC-AUC "
          "| guard alarms | seconds |\n|---|---|---|---|---|---|---|---|---|---|\n")


def runs_of(config: dict) -> list[tuple[str, dict]]:
    """(run name, config for that run): one per seed where the config lists seeds, else the config itself."""
    if "seeds" not in config:
        return [(config["name"], config)]
    return [(f"{config['name']}-s{seed}",
             {**config, "train": {**config["train"], "seed": seed, **models_of(config, seed)}})
            for seed in config["seeds"]]


def models_of(config: dict, seed: int) -> dict:
    """A recipe's teacher and starting model for one seed: `"teacher": "runs/NAME-s{seed}/model.safetensors"` (or
    `"init_from"`) names the run of the same seed."""
    return {key: config["train"][key].format(seed=seed) for key in ("teacher", "init_from")
            if config["train"].get(key)}


def command(config: dict, run_dir: Path, source_cache: Path | None = None, only_fold: int | None = None
            ) -> list[str]:
    """`braintriage train SOURCES... --flag value ...` from a config; a true flag stands alone, a false one is
    written `--no-flag` (every on/off option of `train` has both forms, so a default of True can be turned off)."""
    sources = config["sources"]
    if source_cache is not None:
        sources = [str(source_cache / f"{Path(s).name}.npz") for s in sources]
    cmd = [sys.executable, "-m", "braintriage", "train", *sources]
    flags = dict(config["train"])
    for key in ("holdout_source", "folds"):
        if config.get(key) is not None:
            flags[key] = config[key]
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif value is False:
            cmd.append("--no-" + flag[2:])
        elif isinstance(value, list):
            cmd += [flag, *map(str, value)]
        else:
            cmd += [flag, str(value)]
    resumable = config.get("folds") is None  # a cross-validation resumes by itself, fold by fold
    return cmd + ["--run-dir", str(run_dir), "--output", str(run_dir / "model.safetensors")] + (
        ["--resume"] if resumable else []) + (["--only-fold", str(only_fold)] if only_fold and not resumable else [])


def restore_folds(name: str, run_dir: Path) -> int:
    """Put a CV's kept folds back into its run directory (those not already there); how many."""
    restored = 0
    for kept in sorted((KEPT_FOLDS / name).glob("fold-*.json.gz")):
        target = run_dir / "folds" / kept.name.removesuffix(".gz")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(gzip.decompress(kept.read_bytes()))
            restored += 1
    return restored


def keep_folds(name: str, run_dir: Path) -> None:
    """Copy a CV's finished folds (runs/NAME/folds/fold-K.json) to experiments/cv/NAME/fold-K.json.gz."""
    for done in sorted((run_dir / "folds").glob("fold-*.json")):
        kept = KEPT_FOLDS / name / (done.name + ".gz")
        if not kept.exists() or done.stat().st_mtime > kept.stat().st_mtime:  # new, or trained again
            kept.parent.mkdir(parents=True, exist_ok=True)
            # mtime=0: the same fold gives the same bytes, so git sees no change when it is kept again
            kept.write_bytes(gzip.compress(done.read_bytes(), mtime=0))


def keep_holdout(name: str, run_dir: Path) -> Path:
    """Copy a finished leave-source-out run's holdout.json to experiments/holdout/NAME/holdout.json (its folder
    names the run, as the model card's table reads it), and each held-out image's score beside it
    (keep_holdout_scores)."""
    kept = KEPT_HOLDOUTS / name / "holdout.json"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text((run_dir / "holdout.json").read_text())
    keep_holdout_scores(name, run_dir)
    return kept


def keep_holdout_scores(name: str, run_dir: Path) -> Path | None:
    """Each held-out image's P(tumor) and guard flag, from the run's held-out evaluation, as
    experiments/holdout/NAME/scores.csv.gz (evaluate.held_out_scores_csv): held_out_verdicts.py and the model card
    read the app's verdicts off it under any reading rules once the run's model is gone with its machine. None
    where the run left no evaluation."""
    metrics = run_dir / "holdout-evaluation" / "metrics.json"
    if not metrics.exists():
        return None
    kept = KEPT_HOLDOUTS / name / "scores.csv.gz"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes(held_out_scores_csv(json.loads(metrics.read_text())["predictions"]))
    return kept


def fmt(entry: dict | float | None) -> str:
    if entry is None:
        return ""
    if isinstance(entry, dict):
        lo, hi = entry.get("ci95") or (None, None)
        value = entry["value"]
        return f"{value:.3f}" + (f" ({lo:.3f}-{hi:.3f})" if lo is not None and hi is not None else "")
    return f"{entry:.3f}"


def result_row(name: str, config: dict, run_dir: Path, seconds: float, commit: str) -> str:
    if config.get("holdout_source"):
        r = json.loads((run_dir / "holdout.json").read_text())
        kind = f"held out: {r['held_out_source']} (threshold {r['threshold']:.3f})"
        cells = [f"{r['images']} ({r['tumors']})", fmt(r.get("sensitivity")), fmt(r.get("specificity")),
                 fmt(r.get("roc_auc")), fmt(r.get("ood_alarm_rate"))]
    elif config.get("folds"):
        cv = json.loads((run_dir / "cv.json").read_text())
        at95 = cv["pooled_out_of_fold"]["at_specificity_0.95"]
        kind = f"{cv['folds']}-fold CV, pooled at specificity 0.95 (threshold {at95['threshold']:.3f})"
        cells = [f"{at95['n']} ({at95['n_tumor']})", fmt(at95["sensitivity"]), fmt(at95["specificity"]),
                 fmt(at95["roc_auc"]), ""]
    else:
        meta = json.loads((run_dir / "metadata.json").read_text())
        v = meta["validation_metrics"]
        kind = f"validation split (threshold {v['threshold']:.3f})"
        cells = [f"{v['n']} ({v['n_tumor']})", fmt(v["sensitivity"]), fmt(v["specificity"]), fmt(v["roc_auc"]), ""]
    return f"| {date.today()} | {name} | {commit} | {kind} | " + " | ".join(cells) + f" | {seconds:.0f} |\n"


def append_row(row: str) -> None:
    if not RESULTS.exists():
        RESULTS.write_text("# Experiment results\n\nOne row per run of `experiments/run.py` (its config in "
                           "`experiments/configs/`). Intervals: bootstrap 95% (guard alarms: Wilson).\n\n" + HEADER)
    with RESULTS.open("a") as f:  # one short write per row: parallel runs never interleave within a row
        f.write(row)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once (default 1)")
    parser.add_argument("--source-cache", type=Path, help="read each source from DIR/FOLDER.npz")
    parser.add_argument("--only-fold", type=int, help="cross-validations: train this fold only (kept as the others)")
    parser.add_argument("--seed", type=int, help="configs with seeds: run this seed only")
    args = parser.parse_args(argv)
    # A machine that got the working tree without .git (experiments/device.sh) is told the commit.
    commit = os.environ.get("EXPERIMENT_COMMIT") or subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    pending = [(name, config) for path in args.configs for name, config in runs_of(json.loads(Path(path).read_text()))
               if args.seed is None or "seeds" not in config or config["train"]["seed"] == args.seed]
    running: dict[str, tuple[subprocess.Popen, dict, float]] = {}
    failed = []
    # A stopped runner (timeout, kill) stops its trainings too; each resumes from its checkpoint next time.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        while pending or running:
            while pending and len(running) < args.jobs:
                name, config = pending.pop(0)
                run_dir = ROOT / "runs" / name
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / "config.json").write_text(json.dumps(config, indent=2))
                if config.get("folds") and (restored := restore_folds(name, run_dir)):
                    print(f"[{name}] {restored} finished folds put back from {KEPT_FOLDS / name}", flush=True)
                cmd = command(config, run_dir, args.source_cache, args.only_fold)
                print(f"[{name}] " + " ".join(cmd), flush=True)
                log = None if args.jobs == 1 else open(ROOT / "runs" / f"{name}.log", "w")
                running[name] = (subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT if log else None),
                                 config, time.time())
            for name, (proc, config, start) in list(running.items()):
                if config.get("folds"):
                    keep_folds(name, ROOT / "runs" / name)
                if proc.poll() is None:
                    continue
                del running[name]
                if proc.returncode != 0:
                    failed.append(name)
                    print(f"[{name}] failed (exit {proc.returncode})", flush=True)
                    continue
                if config.get("folds") and not (ROOT / "runs" / name / "cv.json").exists():
                    print(f"[{name}] fold {args.only_fold} kept in {KEPT_FOLDS / name}; no row until every fold is "
                          "done", flush=True)
                    continue
                append_row(result_row(name, config, ROOT / "runs" / name, time.time() - start, commit))
                if config.get("holdout_source"):
                    keep_holdout(name, ROOT / "runs" / name)
                print(f"[{name}] done in {time.time() - start:.0f} s; appended to {RESULTS}", flush=True)
            time.sleep(1)
    finally:
        for name, (proc, config, _) in running.items():
            proc.terminate()
            if config.get("folds"):
                keep_folds(name, ROOT / "runs" / name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
