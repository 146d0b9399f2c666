"""Grouped k-fold cross-validation of a training recipe (`train --folds K`): steps 2-4 of train.py K times, each
fold trained on the others and scored on its own held-out groups; the out-of-fold predictions of every image
(RUN_DIR/oof.csv) and the pooled summary (RUN_DIR/cv.json), from which `braintriage threshold` takes a model's
threshold. Each finished fold is kept (RUN_DIR/folds/fold-K.json), so the same command run again after an
interruption, or on another machine, trains only the missing folds.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from braintriage.atomic_files import written_atomically
from braintriage.cache import DecodedSet
from braintriage.csv_cells import write_csv_dicts
from braintriage.datasets import TUMOR_TYPES
from braintriage.hardware import hardware_name, pick_device
from braintriage.metrics import (METRIC_NAMES, binary_metrics, describe_per_source, per_source_metrics,
                                 threshold_for_specificity)
from braintriage.modelfile import read_metadata, save_model, update_metadata
from braintriage.models import tumor_probability
from braintriage.operating_point import out_of_fold_type_right
from braintriage.splits import grouped_folds, grouped_split, held_out_digest
from braintriage.train import (Fitted, Prepared, TrainConfig, TrainingSetupError, check_settings, fit, model_metadata,
                               prepare_data, recipe)


def cross_validation(cfg: TrainConfig, log=print) -> dict:
    """`train --folds K`: the recipe's data prepared as for one model, then `cross_validate`."""
    if not cfg.folds or cfg.folds < 2:
        raise TrainingSetupError("a cross-validation needs --folds of at least 2")
    if cfg.only_fold and not 1 <= cfg.only_fold <= cfg.folds:
        raise TrainingSetupError(f"--only-fold {cfg.only_fold} needs --folds of at least that many")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TrainingSetupError("--folds runs in one process; start it without torchrun")
    check_settings(cfg)
    np.random.seed(cfg.seed)
    device = pick_device(cfg.device)
    return cross_validate(cfg, prepare_data(cfg, log), device, log)


def cross_validate(cfg: TrainConfig, data: Prepared, device: torch.device, log=print) -> dict:
    """Grouped, stratified k-fold cross-validation of the recipe: each fold trains on the others and is
    scored on its held-out groups (at threshold 0.5; held-out loss; tumor-type accuracy). The out-of-fold
    predictions of all images go to RUN_DIR/oof.csv, and the pooled summary names the most sensitive
    threshold that keeps out-of-fold specificity >= 0.95. Early stopping watches the held-out fold too, so
    the numbers lean slightly optimistic. No model is written (train again without --folds for that), except
    each fold's with --keep-fold-models. Folds finished by an earlier, interrupted run of the same recipe on the
    same data are read back, not retrained (with --keep-fold-models, only those whose model is there too; with
    --fold-guards, only those that kept guard outputs); with --only-fold K only fold K trains, and the summary waits
    until every fold is done."""
    decoded = data.decoded
    run_dir = Path(cfg.run_dir)
    per_fold, oof_rows, missing = [], [], []
    for k, (train_idx, val_idx) in enumerate(grouped_folds(decoded, cfg.folds, cfg.seed)):
        done = finished_fold(run_dir, k + 1, cfg, decoded.fingerprint)
        if done is not None and serves_as_it_is(done, cfg, run_dir, k + 1):
            log(f"fold {k + 1}/{cfg.folds}: finished by an earlier run of this recipe, read from {run_dir / 'folds'}")
            per_fold.append(done["fold"])
            oof_rows.extend(done["oof_rows"])
            continue
        if cfg.only_fold and k + 1 != cfg.only_fold:
            missing.append(k + 1)
            continue
        log(f"fold {k + 1}/{cfg.folds}: {len(train_idx)} train, {len(val_idx)} held out")
        fold_cfg = fold_config(cfg, decoded, k + 1, val_idx)
        t_fold = time.time()
        fitted = fit(fold_cfg, data, train_idx, val_idx, device, desc=f"fold {k + 1}/{cfg.folds}", log=log)
        fold, fold_rows = fold_record(decoded, fitted, k + 1, val_idx, device)
        if cfg.fold_guards:
            add_guard_scores(fold, fold_rows, fold_cfg, data, fitted, train_idx, val_idx, device)
        save_fold(run_dir, fold, fold_rows, cfg, decoded.fingerprint)
        if cfg.keep_fold_models:
            save_fold_model(run_dir, fold_cfg, data, fitted, k + 1, train_idx, val_idx, time.time() - t_fold, device)
        per_fold.append(fold)
        oof_rows.extend(fold_rows)
    if missing:
        log(f"{cfg.folds - len(missing)} of {cfg.folds} folds finished (in {run_dir / 'folds'}); still to train: "
            f"{', '.join(map(str, missing))}")
        return {"folds": cfg.folds, "finished": [f["fold"] for f in per_fold], "missing": missing}
    return summarise_folds(cfg, decoded, per_fold, oof_rows, log)


def serves_as_it_is(done: dict, cfg: TrainConfig, run_dir: Path, k: int) -> bool:
    """Whether fold k, finished by an earlier run, has what this run asks for: its model (--keep-fold-models) and
    its held-out images' guard outputs (--fold-guards)."""
    return ((not cfg.keep_fold_models or fold_model_path(run_dir / "folds", k).exists())
            and (not cfg.fold_guards or "guard_validation_normal_ratios" in done["fold"]))


def summarise_folds(cfg: TrainConfig, decoded: DecodedSet, per_fold: list[dict], oof_rows: list[dict], log=print
                    ) -> dict:
    """Every fold done: the spread of each metric over the folds, the pooled out-of-fold metrics at 0.5 and at the
    threshold that keeps specificity >= 0.95 (per source too), written to RUN_DIR/cv.json and RUN_DIR/oof.csv."""
    run_dir = Path(cfg.run_dir)
    summary = {}
    for name in (*METRIC_NAMES, "held_out_loss", "type_accuracy"):
        values = np.array([f["at_0.5"].get(name, f.get(name, np.nan)) for f in per_fold], dtype=float)
        if np.isnan(values).all():
            continue
        summary[name] = {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values)),
                         "min": float(np.nanmin(values)), "max": float(np.nanmax(values))}
    y_all = np.array([r["tumor"] for r in oof_rows])
    p_all = np.array([r["p_tumor"] for r in oof_rows])
    threshold = threshold_for_specificity(y_all, p_all, 0.95)
    source_of = dict(zip(decoded.paths.astype(str).tolist(), decoded.source.astype(str).tolist()))
    pooled = {"at_0.5": binary_metrics(y_all, p_all, 0.5),
              "at_specificity_0.95": binary_metrics(y_all, p_all, threshold),
              "per_source_at_specificity_0.95": per_source_metrics(
                  y_all, p_all, np.array([source_of[r["path"]] for r in oof_rows]), threshold,
                  out_of_fold_type_right(oof_rows))}
    # A resumed run may have trained its folds on different machines; same seed, other numbers (hardware_name)
    hardware = sorted({f.get("hardware", "not recorded") for f in per_fold})
    if len(hardware) > 1:
        log(f"note: the folds were trained on different hardware: {'; '.join(hardware)}")
    result = {"folds": cfg.folds, "hardware": hardware,
              "grouping": "pHash near-duplicate groups across all sources, stratified by source and type",
              "data_fingerprint": decoded.fingerprint, "preprocess": decoded.preprocess.to_dict(),
              "config": recipe(cfg), "per_fold": per_fold, "summary_at_0.5": summary, "pooled_out_of_fold": pooled}
    (run_dir / "cv.json").write_text(json.dumps(result, indent=2))
    write_csv_dicts(run_dir / "oof.csv", oof_rows)  # paths are text a spreadsheet must not run
    for name, v in summary.items():
        log(f"{name}: {v['mean']:.3f} +/- {v['std']:.3f} (min {v['min']:.3f}, max {v['max']:.3f})")
    at95 = pooled["at_specificity_0.95"]
    log(f"pooled out-of-fold: threshold {threshold:.3f} keeps specificity {at95['specificity']:.3f} with "
        f"sensitivity {at95['sensitivity']:.3f}")
    for line in describe_per_source(pooled["per_source_at_specificity_0.95"]):
        log(f"  {line}")
    return result


def fold_record(decoded: DecodedSet, fitted: Fitted, k: int, val_idx: np.ndarray, device: torch.device
                ) -> tuple[dict, list[dict]]:
    """A trained fold's summary (metrics at 0.5, held-out loss, type accuracy) and its out-of-fold rows."""
    p, probs = (t.cpu().numpy() if t is not None else None for t in tumor_probability(fitted.val_logits))
    y = decoded.tumor[val_idx]
    fold = {"fold": k, "images": len(val_idx), "hardware": f"{hardware_name(device)}, torch {torch.__version__}",
            "best_epoch": fitted.best_row["epoch"], "held_out_loss": fitted.best_loss,
            "at_0.5": binary_metrics(y, p, 0.5)}
    typed = decoded.tumor_type[val_idx] >= 0
    if probs is not None and typed.any():
        fold["type_accuracy"] = float((probs.argmax(1)[typed] == decoded.tumor_type[val_idx][typed]).mean())
    rows = []
    for j, i in enumerate(val_idx):
        row = {"path": str(decoded.paths[i]), "fold": k, "tumor": int(decoded.tumor[i]),
               "tumor_type": TUMOR_TYPES[decoded.tumor_type[i]] if decoded.tumor_type[i] >= 0 else "",
               "p_tumor": round(float(p[j]), 6)}
        if probs is not None:
            row.update({f"p_{name}": round(float(probs[j, c]), 6) for c, name in enumerate(TUMOR_TYPES)})
        rows.append(row)
    return fold, rows


def add_guard_scores(fold: dict, oof_rows: list[dict], cfg: TrainConfig, data: Prepared, fitted: Fitted,
                     train_idx: np.ndarray, val_idx: np.ndarray, device: torch.device) -> None:
    """--fold-guards: add to each out-of-fold row the verdict-relevant guard outputs a shipped model of this fold
    would give its held-out image (guard_flagged, guard_ratio; `Predictor`'s own, through `score_decoded`), and to
    the fold record its guard's validation normals' scores (guard_validation_normal_ratios, one per half), so that
    the guard's alarm rate and the familiarity rule can be read out of fold.

    The feature model is fitted on the fold's training images, as any model's guard is on its training split. The
    alarm threshold and the normals' scores need images the model never trained on, which a fold model has only
    in its held-out fold: that is cut in two grouped halves, and each half is scored by a guard thresholded on the
    other (guard_half says which guard scored a row)."""
    from braintriage.evaluate import score_decoded
    from braintriage.guard_fit import fit_guard, guard_training_features
    from braintriage.inference import Predictor

    decoded = data.decoded
    held_out = decoded.subset(val_idx)
    first, second = grouped_split(held_out, 0.5, cfg.seed)
    by_path = {row["path"]: row for row in oof_rows}
    fold["guard_validation_normal_ratios"] = []
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "fold.safetensors"
        save_model(model, fitted.model, model_metadata(cfg, data, fitted, train_idx, val_idx, 0.0, device, 1))
        predictor = Predictor(model)
        train_pooled = guard_training_features(predictor, decoded, train_idx, cfg.seed)
        if train_pooled is None:  # an architecture without pooled features has no guard
            return
        for half, (calibration, scored) in enumerate(((first, second), (second, first))):
            guard = fit_guard(predictor, train_pooled, decoded, val_idx[calibration], cfg.seed)
            update_metadata(model, model, {"ood": guard})
            found = score_decoded(Predictor(model), held_out.subset(scored))
            for path, warning, ratio in zip(found.paths, found.warnings, found.guard_ratios):
                by_path[str(path)].update(guard_flagged=warning is not None,
                                          guard_ratio=None if ratio is None else round(float(ratio), 6),
                                          guard_half=half)
            fold["guard_validation_normal_ratios"].append(guard.get("validation_normal_ratios"))


def save_fold_model(run_dir: Path, cfg: TrainConfig, data: Prepared, fitted: Fitted, k: int, train_idx: np.ndarray,
                    val_idx: np.ndarray, seconds: float, device: torch.device) -> Path:
    """--keep-fold-models: fold k's model, RUN_DIR/folds/fold-K.safetensors, with which images it held out (a
    teacher or starting model for the same fold of another recipe's cross-validation: `fold_model`)."""
    metadata = model_metadata(cfg, data, fitted, train_idx, val_idx, seconds, device, 1)
    metadata["cv_fold"] = {"fold": k, "folds": cfg.folds, "seed": cfg.seed,
                           "held_out_digest": held_out_digest(data.decoded, val_idx)}
    path = fold_model_path(run_dir / "folds", k)
    save_model(path, fitted.model, metadata)
    return path


def fold_model_path(folds: Path, k: int) -> Path:
    """Fold k's model in a cross-validation's folds folder (RUN_DIR/folds, or a --teacher folder)."""
    return folds / f"fold-{k}.safetensors"


def fold_config(cfg: TrainConfig, decoded: DecodedSet, k: int, val_idx: np.ndarray) -> TrainConfig:
    """Fold k's recipe: a --teacher or --init-from folder replaced by its fold-K.safetensors."""
    if cfg.teacher:
        cfg = replace(cfg, teacher=str(fold_model(cfg.teacher, "teacher", decoded, k, val_idx)))
    if cfg.init_from:
        cfg = replace(cfg, init_from=str(fold_model(cfg.init_from, "starting model", decoded, k, val_idx)))
    return cfg


def fold_model(folder: str, role: str, decoded: DecodedSet, k: int, val_idx: np.ndarray) -> Path:
    """Fold k's teacher or starting model (`role`): the folder's fold-K.safetensors, which must have held out
    exactly this fold's images (one that trained on them would leak their labels)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TrainingSetupError(f"a cross-validation takes each fold's {role} from its own fold: give a folder of "
                                 "fold-K.safetensors (--keep-fold-models); one model trained on these images would "
                                 "pass the held-out folds' labels on")
    path = fold_model_path(folder, k)
    if not path.exists():
        raise TrainingSetupError(f"no {role} for fold {k}: {path} is missing (train its cross-validation with "
                                 "--keep-fold-models)")
    held_out = read_metadata(path).get("cv_fold", {}).get("held_out_digest")
    if held_out != held_out_digest(decoded, val_idx):
        raise TrainingSetupError(f"{path} held out other images than fold {k} of this run: same sources, "
                                 "--folds and --seed needed")
    return path


def save_fold(run_dir: Path, fold: dict, oof_rows: list[dict], cfg: TrainConfig, fingerprint: str) -> None:
    """Keep one finished fold (RUN_DIR/folds/fold-K.json) so that an interrupted cross-validation, run again
    with the same command, trains only the folds still missing: on a laptop one fold is 10-20 minutes."""
    (run_dir / "folds").mkdir(parents=True, exist_ok=True)
    record = {"config": recipe(cfg), "data_fingerprint": fingerprint, "fold": fold, "oof_rows": oof_rows}
    path = run_dir / "folds" / f"fold-{fold['fold']}.json"
    with written_atomically(path) as tmp:  # a run killed mid-write leaves no half fold behind
        tmp.write_text(json.dumps(record))


def finished_fold(run_dir: Path, k: int, cfg: TrainConfig, fingerprint: str) -> dict | None:
    """Fold k as a previous run of this same recipe on this same data saved it, or None if none did. A fold
    saved by another recipe or from other data is refused, not mixed in: pick a new --run-dir."""
    path = run_dir / "folds" / f"fold-{k}.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    # A setting added since the fold was saved counts as its default (what that code did).
    saved = {**json.loads(json.dumps(recipe(TrainConfig(data="")))), **record["config"]}
    if saved != json.loads(json.dumps(recipe(cfg))) or record["data_fingerprint"] != fingerprint:
        raise TrainingSetupError(f"{path} was saved by another recipe or from other data; use a new "
                                 "--run-dir or delete that folder")
    return record
