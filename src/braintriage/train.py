"""Train a model from scratch and write a model file: the whole loop, top to bottom.

  1. decode the dataset once (the decoded cache) and keep it on the training device as uint8
  2. split off validation by near-duplicate group, stratified by tumor type (no near-copy on both sides)
  3. each step: index a batch on the device, augment it there, forward/backward with class weighting
  4. each epoch: validation loss and metrics; keep the best checkpoint; stop early when it stops improving
  5. pick the operating threshold on validation for a target sensitivity; write the model file,
     the per-epoch CSV and the training-curve plot
"""

from __future__ import annotations

import copy
import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import StratifiedGroupKFold
from tqdm import tqdm

from braintriage.augment import AugmentPolicy, augment_batch
from braintriage.cache import DecodedSet, cached_decode
from braintriage.datasets import TUMOR_TYPES, load_dataset
from braintriage.metrics import binary_metrics, threshold_for_sensitivity
from braintriage.modelfile import save_model
from braintriage.models import DEFAULT_MODEL, build_model, count_parameters, to_model_input, tumor_probability
from braintriage.preprocess import PreprocessConfig


@dataclass
class TrainConfig:
    data: str  # a dataset folder / CSV manifest, or a decoded cache file (.npz)
    output: str = "model.safetensors"
    run_dir: str = "runs/latest"  # per-epoch CSV, curves PNG, config
    architecture: str = DEFAULT_MODEL
    labels: str = "auto"  # "type": predict tumor type (P(tumor) = 1 - P(no tumor)); "binary"; "auto"
    image_size: int = 200
    epochs: int = 60
    batch_size: int = 64
    lr: float = 2e-3  # AdamW peak learning rate at batch 64; scaled linearly with batch size
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.0
    val_fraction: float = 0.15
    patience: int = 15  # epochs without a better validation loss before stopping
    target_sensitivity: float = 0.95
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    max_steps: int | None = None  # stop after this many optimizer steps (smoke tests)
    limit: int | None = None  # use only this many images, a stratified sample (smoke tests)
    augment: AugmentPolicy = field(default_factory=AugmentPolicy)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_training_data(cfg: TrainConfig, log=print) -> DecodedSet:
    preprocess = PreprocessConfig(size=cfg.image_size)
    if str(cfg.data).endswith(".npz"):
        decoded = DecodedSet.load(cfg.data)
        if decoded.preprocess != preprocess:
            raise ValueError(f"{cfg.data} was decoded with {decoded.preprocess}, not {preprocess}")
        return decoded
    return cached_decode(load_dataset(cfg.data, split="training"), preprocess, log=log)


def grouped_split(decoded: DecodedSet, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/validation indices: whole near-duplicate groups go to one side, stratified by type."""
    strata = np.where(decoded.tumor_type >= 0, decoded.tumor_type, decoded.tumor + len(TUMOR_TYPES))
    folds = StratifiedGroupKFold(n_splits=max(2, round(1 / val_fraction)), shuffle=True, random_state=seed)
    train_idx, val_idx = next(folds.split(np.zeros(len(strata)), strata, decoded.groups))
    return np.sort(train_idx), np.sort(val_idx)


def class_weights(targets: np.ndarray, num_classes: int) -> torch.Tensor:
    """'Balanced' weights n / (k * count): the minority 'no tumor' class counts as much as the rest."""
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64)
    return torch.tensor(len(targets) / (num_classes * np.maximum(counts, 1)), dtype=torch.float32)


def weighted_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, smoothing: float
                  ) -> torch.Tensor:
    logits = logits.float()
    if logits.shape[1] == 1:
        soft = targets.float() * (1 - smoothing) + 0.5 * smoothing
        per_image = F.binary_cross_entropy_with_logits(logits[:, 0], soft, reduction="none")
    else:
        per_image = F.cross_entropy(logits, targets, reduction="none", label_smoothing=smoothing)
    w = weights[targets]
    return (per_image * w).sum() / w.sum()


@torch.no_grad()
def predict_logits(model, images_u8: torch.Tensor, mean: float, std: float, batch_size: int,
                   autocast: bool) -> torch.Tensor:
    model.eval()
    out = []
    for i in range(0, len(images_u8), batch_size):
        x = to_model_input(images_u8[i:i + batch_size], mean, std)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            out.append(model(x.contiguous(memory_format=torch.channels_last)).float())
    return torch.cat(out)


def train(cfg: TrainConfig, log=print) -> dict:
    t_start = time.time()
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = pick_device(cfg.device)
    on_cuda = device.type == "cuda"
    if on_cuda:
        torch.backends.cudnn.benchmark = True

    decoded = load_training_data(cfg, log)
    if cfg.limit and cfg.limit < len(decoded):
        rng = np.random.default_rng(cfg.seed)
        decoded = decoded.subset(np.sort(rng.choice(len(decoded), cfg.limit, replace=False)))
    labels = cfg.labels
    if labels == "auto":
        labels = "type" if (decoded.tumor_type >= 0).all() else "binary"
    if labels == "type" and (decoded.tumor_type < 0).any():
        raise ValueError("--labels type needs a tumor type for every image; this dataset has binary labels only")
    targets_all = decoded.tumor_type if labels == "type" else decoded.tumor
    num_classes = len(TUMOR_TYPES) if labels == "type" else 2

    train_idx, val_idx = grouped_split(decoded, cfg.val_fraction, cfg.seed)
    log(f"{len(decoded)} images: {len(train_idx)} train, {len(val_idx)} validation "
        f"({len(np.unique(decoded.groups))} near-duplicate groups, none split); device {device}")
    mean = float(decoded.images[train_idx].mean() / 255.0)
    std = float(decoded.images[train_idx].std() / 255.0)

    # The whole dataset lives on the training device as uint8; a step only moves an index batch.
    images = torch.from_numpy(decoded.images).unsqueeze(1).to(device)
    targets = torch.from_numpy(targets_all).to(device)
    weights = class_weights(targets_all[train_idx], num_classes).to(device)
    train_ids = torch.from_numpy(train_idx).to(device)

    model = build_model(cfg.architecture, 1, num_classes if labels == "type" else 1, cfg.image_size)
    model = model.to(device, memory_format=torch.channels_last)
    log(f"{cfg.architecture}: {count_parameters(model) / 1e6:.2f}M parameters; labels: {labels}")
    step_model = torch.compile(model) if cfg.compile else model

    lr = cfg.lr * cfg.batch_size / 64
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr, fused=on_cuda)
    steps_per_epoch = max(1, len(train_idx) // cfg.batch_size)  # drop the ragged last batch
    total_steps = steps_per_epoch * cfg.epochs
    warmup = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    # Linear warm-up, then cosine decay to zero over the planned epochs.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, 0.5 * (
        1 + math.cos(math.pi * min(1.0, max(0, s - warmup) / max(1, total_steps - warmup))))))
    gen = torch.Generator(device=device).manual_seed(cfg.seed)

    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    history, best, best_loss, stale, step = [], None, float("inf"), 0, 0
    val_u8, val_tumor = images[val_idx], decoded.tumor[val_idx]
    bar = tqdm(range(cfg.epochs), desc="training", unit="epoch", dynamic_ncols=True)
    for epoch in bar:
        t_epoch = time.time()
        model.train()
        order = train_ids[torch.randperm(len(train_ids), generator=gen, device=device)]
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x = augment_batch(images[idx].float().div_(255.0), cfg.augment, gen)
            x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
            y = targets[idx]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_cuda):
                logits = step_model(x)
            loss = weighted_loss(logits, y, weights, cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach() * len(idx)
            pred = logits.argmax(1) if logits.shape[1] > 1 else (logits[:, 0] > 0).long()
            correct += (pred == y).sum()
            seen += len(idx)
            step += 1
            if cfg.max_steps and step >= cfg.max_steps:
                break

        val_logits = predict_logits(model, val_u8, mean, std, 256, on_cuda)
        val_loss = weighted_loss(val_logits, targets[val_idx], weights, 0.0).item()
        p_val = tumor_probability(val_logits)[0].cpu().numpy()
        m = binary_metrics(val_tumor, p_val, 0.5)
        row = {"epoch": epoch + 1, "step": step, "lr": schedule.get_last_lr()[0],
               "train_loss": loss_sum.item() / max(seen, 1), "train_accuracy": correct.item() / max(seen, 1),
               "val_loss": val_loss, "val_accuracy": m["accuracy"], "val_recall": m["sensitivity"],
               "val_precision": m["precision"], "val_specificity": m["specificity"],
               "seconds": time.time() - t_epoch}
        history.append(row)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_loss=f"{val_loss:.3f}",
                        val_acc=f"{m['accuracy']:.3f}", val_recall=f"{m['sensitivity']:.3f}")
        if val_loss < best_loss:
            best_loss, best, stale = val_loss, copy.deepcopy(model.state_dict()), 0
            best_row = row
        else:
            stale += 1
        if stale >= cfg.patience or (cfg.max_steps and step >= cfg.max_steps):
            log(f"stopping after epoch {epoch + 1}" + (" (no better validation loss)" if stale else ""))
            break
    bar.close()
    train_seconds = time.time() - t_start

    # Best checkpoint -> threshold for the target sensitivity on validation -> model file.
    model.load_state_dict(best)
    p_val = tumor_probability(predict_logits(model, val_u8, mean, std, 256, on_cuda))[0].cpu().numpy()
    threshold = threshold_for_sensitivity(val_tumor, p_val, cfg.target_sensitivity)
    val_metrics = binary_metrics(val_tumor, p_val, threshold)
    val_metrics["loss"] = best_loss
    val_metrics["best_epoch"] = best_row["epoch"]
    preprocess = PreprocessConfig(size=cfg.image_size)
    metadata = {
        "architecture": cfg.architecture,
        "input": {"channels": 1, "preprocess": preprocess.to_dict(),
                  "normalization": {"scale": 1 / 255, "mean": mean, "std": std}},
        "output": "softmax" if labels == "type" else "sigmoid",
        "class_names": list(TUMOR_TYPES) if labels == "type" else ["no_tumor", "tumor"],
        "positive": "P(tumor) = 1 - P(no_tumor)" if labels == "type" else "sigmoid(logit)",
        "threshold": threshold,
        "threshold_rule": f"highest threshold with validation sensitivity >= {cfg.target_sensitivity}, "
                          f"capped at 0.5",
        "training": {
            "data": Path(cfg.data).name, "data_fingerprint": decoded.fingerprint, "images": len(decoded),
            "train_images": len(train_idx), "validation_images": len(val_idx),
            "validation_split": f"grouped by pHash near-duplicates, stratified, fraction {cfg.val_fraction}",
            "epochs_run": len(history), "steps": step, "seconds": round(train_seconds, 1),
            "device": torch.cuda.get_device_name(device) if on_cuda else "cpu",
            "torch": torch.__version__,
            "config": {k: v for k, v in asdict(cfg).items() if k not in ("data", "output", "run_dir")},
        },
        "validation_metrics": val_metrics,
    }
    save_model(cfg.output, model, metadata)
    write_history(history, run_dir / "history.csv")
    (run_dir / "metadata.json").write_text(json.dumps(metadata, indent=2))
    try:
        from braintriage.reports import plot_training_curves
        plot_training_curves(run_dir / "history.csv", run_dir / "training_curves.png")
    except ImportError as e:  # matplotlib is optional where only training runs
        log(f"no training-curve plot ({e})")
    log(f"saved {cfg.output}: best epoch {best_row['epoch']}, validation loss {best_loss:.4f}, "
        f"threshold {threshold:.3f} (validation sensitivity {val_metrics['sensitivity']:.3f}, "
        f"specificity {val_metrics['specificity']:.3f}); {train_seconds:.0f} s")
    return {"metadata": metadata, "history": history}


def write_history(history: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
