"""Train a model and write a model file: the whole loop, top to bottom.

  1. decode each training source once (the decoded cache), join them (each image keeps its source), and keep
     them on the training device as uint8
  2. split off validation by near-duplicate group (across sources), stratified by source and tumor type (no
     near-copy on both sides)
  3. each step: index a batch on the device, augment it there, forward/backward with class and source
     weighting; images with a tumor type train the type head, tumor / no-tumor images train it through
     P(tumor) = 1 - P(no tumor)
  4. each epoch: validation loss and metrics; keep the best checkpoint; stop early when it stops improving
     (with --ema-decay, of a moving average of the weights instead of the weights themselves)
  5. pick the operating threshold on validation for a target sensitivity; write the model file,
     the per-epoch CSV and the training-curve plot
`--folds K` (crossval.py) runs steps 2-4 K times on grouped folds instead.
`--holdout-source NAME` trains without one source and then evaluates the model on it (leave-source-out).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from braintriage.atomic_files import written_atomically
from braintriage.augment import AugmentPolicy, augment_batch
from braintriage.cache import DecodedSet, cached_decode, from_sources
from braintriage.cpu_memory import keep_freed_memory
from braintriage.csv_cells import write_csv_dicts
from braintriage.datasets import TUMOR_TYPES, DatasetLayoutError, load_dataset
from braintriage.distill import Teacher, distillation_loss, resized_views
from braintriage.guard_fit import calibrate_ood
from braintriage.hardware import hardware_name, native_bf16, pick_device
from braintriage.losses import UNTYPED_TUMOR, cell_weights, correct_predictions, reweighted, weighted_loss
from braintriage.metrics import binary_metrics, threshold_for_sensitivity, wilson_interval
from braintriage.modelfile import describe_model_file, read_metadata, save_model
from braintriage.pretrained import weights_package
from braintriage.style_mixing import mix_styles_in_training
from braintriage.synthetic_lesions import add_lesions
from braintriage.models import (DEFAULT_MODEL, FIXED_SIZE_MODELS, build_model, count_parameters, freeze_early_layers,
                                normalised_views, to_model_input, tumor_probability)
from braintriage.preprocess import PreprocessConfig
from braintriage.splits import grouped_split
from braintriage.warm_start import source_leak, starting_weights, validation_split_leak


class TrainingSetupError(ValueError):
    """A training run refused for what it was asked (a checkpoint or fold of another run, a mismatched cache):
    the command line shows the message, never a traceback."""


@dataclass
class TrainConfig:
    data: str | list[str]  # dataset folder(s) / CSV manifest(s) / decoded cache file(s) (.npz): the sources
    output: str = "model.safetensors"
    run_dir: str = "runs/latest"  # per-epoch CSV, curves PNG, config
    architecture: str = DEFAULT_MODEL
    pretrained: bool = False  # start from the architecture's packaged ImageNet weights (pretrained.py)
    backbone_lr_scale: float = 1.0  # the backbone's learning rate relative to the head's (fine-tuning: < 1)
    source_balance: float = 0.5  # within a class, source s weighs count_s ** this in total (1: by count, 0: equal)
    holdout_source: str | None = None  # train without this source, then evaluate on it
    labels: str = "auto"  # "type": predict tumor type (P(tumor) = 1 - P(no tumor)); "binary"; "auto"
    image_size: int = 200
    crop_to_head: bool = False  # preprocessing: crop each image to the head's bounding box first
    equalize: bool = False  # preprocessing: histogram-equalise each image's foreground
    resample: str = "bilinear"  # preprocessing: the filter that resizes each image (bilinear or bicubic)
    start_size: int | None = None  # progressive resizing: early epochs train at this size, growing to image_size
    resize_ramp: tuple[float, float] = (0.3, 0.55)  # with start_size: the share of the epochs done when the size
    #                                                starts to grow, and when it reaches image_size
    epochs: int = 60  # 0 with init_from: that model as it is, validated and written at this run's input size
    batch_size: int = 64
    lr: float = 2e-3  # AdamW peak learning rate at batch 64; scaled linearly with batch size
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.0
    ema_decay: float | None = None  # validate and keep an exponential moving average of the weights (e.g. 0.998)
    val_fraction: float = 0.15
    patience: int = 15  # epochs without a better validation loss before stopping
    target_sensitivity: float = 0.95
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # "bf16", "fp32", or "auto": bf16 where the hardware computes it natively
    compile: bool = False
    calibrate: bool = False  # fit a temperature on validation logits (calibrated probabilities)
    resume: bool = False  # continue from run_dir/checkpoint.pt
    checkpoint_seconds: float = 30.0  # write the checkpoint after an epoch once this long has passed since the last
    exclude_leaked: str | None = None  # drop training images that near-duplicate this test dataset
    folds: int | None = None  # grouped k-fold cross-validation instead of training one model
    only_fold: int | None = None  # with folds: train this fold (1-based) only; the others as far as finished
    keep_fold_models: bool = False  # with folds: write each fold's model, RUN_DIR/folds/fold-K.safetensors
    fold_guards: bool = False  # with folds: keep each held-out image's guard outputs (crossval.add_guard_scores)
    max_steps: int | None = None  # stop after this many optimizer steps (smoke tests)
    limit: int | None = None  # use only this many images, a stratified sample (smoke tests)
    augment: AugmentPolicy = field(default_factory=AugmentPolicy)
    synthetic_lesions: float = 0.0  # probability that a no-tumor training image gets a painted mass and becomes
    #                                 a tumor of unknown type (synthetic_lesions.py); 0 = off
    lesion_copies: bool = False  # the painted images join the batch as copies; their normals stay normals
    lesions_from_epoch: int = 0  # paint only from this epoch on: the scans first, the painted masses last
    infiltrative_lesions: float = 0.0  # the share of painted masses drawn as infiltrative zones that keep the
    #                                    anatomy under them, with mass effect (synthetic_lesions.py); 0 = none
    style_mixing: float = 0.0  # probability that a training step mixes its images' early feature styles
    #                            (style_mixing.py, MixStyle); 0 = off
    frozen_blocks: int | None = None  # pretrained EfficientNet-Lite: its stem and first N blocks stay as loaded
    #                                  (no backward through the largest maps: a cheaper CPU step); None = none
    teacher: str | None = None  # a trained model file whose soft predictions are learned too (distill.py)
    distill_weight: float = 0.5  # the teacher's share of the loss; the labels keep the rest
    distill_temperature: float = 2.0  # both models' probabilities are softened by this before they are compared
    distill_painted: bool = True  # False: painted lesion copies learn their label only, not the teacher's view
    distill_until_epoch: int | None = None  # learn the teacher's view only in the epochs before this one (from 0)
    init_from: str | None = None  # start from this trained model file's weights (warm_start.py); with folds, a
    #                               folder of fold-K.safetensors, one per fold
    upweight: str | None = None  # a CSV path,weight: these training images' loss weights times `weight`, each class
    #                              keeping its total (e.g. an earlier CV's out-of-fold mistakes: "just train twice")


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision not in ("auto", "bf16", "fp32"):
        raise TrainingSetupError(f"precision must be auto, bf16 or fp32, not {precision!r}")
    return precision == "bf16" or (precision == "auto" and native_bf16(device))


# Progressive resizing (as in fast ImageNet/CIFAR trainers): small images are cheap, so the epochs before
# resize_ramp[0] (a share of all epochs) train at start_size, the size grows linearly until resize_ramp[1], and
# the last epochs train at full size so the network settles at the resolution it is validated and used at.
# `braintriage train` does this by default for a network from random weights, from DEFAULT_START_SIZE over
# (0.3, 0.55): on the 2-core AMD EPYC in fp32 the default resnet18-w32 trained at 1.68x the rate of the code issue
# 24 was filed on and validated within the full-size run's bounds on the same split, seeds 0-2 (sessions 32-33;
# rules and figures in experiments/configs/all-resnet18-w32-200-start96-ramp0.3-0.55.json and docs/model.md).
# Fine-tuning keeps the full size: from 96 px (over 0.5-0.9) a pretrained lesion recipe lost held-out ROC-AUC
# 0.966 -> 0.897.
DEFAULT_START_SIZE = 96


def default_start_size(architecture: str, pretrained: bool, teacher: str | None, init_from: str | None = None
                       ) -> int | None:
    """`train`'s progressive-resizing start when none is given: DEFAULT_START_SIZE for a network from random
    weights; none for pretrained weights or a trained model's (--init-from), a distillation (the teacher sees
    full-size images) or a network that takes one input size."""
    if pretrained or teacher or init_from or architecture in FIXED_SIZE_MODELS:
        return None
    return DEFAULT_START_SIZE


def train_size_at(epoch: int, cfg: TrainConfig) -> int:
    if not cfg.start_size or cfg.start_size >= cfg.image_size:
        return cfg.image_size
    grow_from, full_from = cfg.resize_ramp
    progress = (epoch / max(1, cfg.epochs) - grow_from) / (full_from - grow_from)
    size = cfg.start_size + (cfg.image_size - cfg.start_size) * min(1.0, max(0.0, progress))
    return min(cfg.image_size, round(size / 16) * 16) if progress < 1 else cfg.image_size


def preprocess_config(cfg: TrainConfig) -> PreprocessConfig:
    """How images become model inputs; stored in the model file, so the runtime does the same."""
    return PreprocessConfig(size=cfg.image_size, crop_to_head=cfg.crop_to_head, equalize=cfg.equalize,
                            resample=cfg.resample)


def data_sources(cfg: TrainConfig) -> list[str]:
    return [cfg.data] if isinstance(cfg.data, (str, Path)) else [str(d) for d in cfg.data]


def load_training_data(cfg: TrainConfig, log=print, preprocess: PreprocessConfig | None = None) -> DecodedSet:
    """Every training source decoded (from the cache where it was decoded before) and joined into one set, as
    the model's preprocessing takes them (or as `preprocess` does)."""
    preprocess = preprocess or preprocess_config(cfg)
    parts = []
    for data in data_sources(cfg):
        if str(data).endswith(".npz"):
            decoded = DecodedSet.load(data)
            if decoded.preprocess != preprocess:
                raise TrainingSetupError(f"{data} was decoded with {decoded.preprocess}, not {preprocess}")
        else:
            decoded = cached_decode(load_dataset(data, split="training"), preprocess, log=log)
        parts.append(decoded)
    return from_sources(parts)


def optimizer_step(step_model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                   y: torch.Tensor, w: torch.Tensor, smoothing: float, bf16: bool,
                   teacher_logits: torch.Tensor | None = None, distill: tuple[float, float] = (0.0, 1.0)
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on the augmented batch x with weighted loss; with `teacher_logits`, a share
    distill[0] of the loss is distillation at temperature distill[1]; returns (loss, correct), detached."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = step_model(x)
    loss = weighted_loss(logits, y, w, smoothing)
    if teacher_logits is not None:  # the teacher's logits are those of the batch's first rows (distill_painted)
        share, temperature = distill
        taught = len(teacher_logits)
        loss = (1 - share) * loss + share * distillation_loss(logits[:taught], teacher_logits, w[:taught], temperature)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), correct_predictions(logits.detach(), y)


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


def augmented_input(images_u8: torch.Tensor, policy: AugmentPolicy, gen: torch.Generator, size: int,
                    mean: float, std: float) -> torch.Tensor:
    """A uint8 batch on the device -> augmented at `size`, normalised, channels-last: what the BatchNorm
    re-estimation feeds the network (as a training step without lesions would)."""
    return normalised_views(augment_batch(images_u8.float().div_(255.0), policy, gen, size), mean, std)


def training_batch(images_u8: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, cfg: "TrainConfig",
                   gen: torch.Generator, size: int, mean: float, std: float, tumor_target: int,
                   tumor_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(network input, targets, loss weights) of one training batch: `training_views`, normalised."""
    views, targets, weights = training_views(images_u8, targets, weights, cfg, gen, size, tumor_target, tumor_weight)
    return normalised_views(views, mean, std), targets, weights


def training_views(images_u8: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, cfg: "TrainConfig",
                   gen: torch.Generator, size: int, tumor_target: int, tumor_weight: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(augmented views in [0, 1] at `size`, targets, loss weights) of one training batch: synthetic lesions
    painted into some no-tumor images (with --synthetic-lesions; they become tumors), then the augmentation."""
    if cfg.synthetic_lesions <= 0:  # draws nothing extra: runs without lesions are what they were
        return augment_batch(images_u8.float().div_(255.0), cfg.augment, gen, size, targets != 0), targets, weights
    images, targets, weights = add_lesions(images_u8.float().div_(255.0), targets, weights, cfg.synthetic_lesions,
                                           tumor_target, tumor_weight, gen, as_copies=cfg.lesion_copies,
                                           infiltrative=cfg.infiltrative_lesions)
    return augment_batch(images, cfg.augment, gen, size, targets != 0), targets, weights


@torch.no_grad()
def reestimate_batchnorm(model: torch.nn.Module, images_u8: torch.Tensor, mean: float, std: float,
                         policy: AugmentPolicy, size: int, batch_size: int, autocast: bool, seed: int) -> None:
    """Recompute BatchNorm statistics for the model's current weights (SWA's `update_bn`, batched on the
    device and under autocast). An average of weights needs this: the averaged running statistics of many
    different networks, at the smaller sizes of progressive resizing too, are not the averaged network's own.
    The same images and augmentation draws every call (a fixed seed), so runs stay reproducible."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    was_training = model.training
    model.train()
    gen = torch.Generator(device=images_u8.device).manual_seed(seed)
    # Dropout draws here must not shift the training run's random stream.
    with torch.random.fork_rng(devices=[images_u8.device] if images_u8.is_cuda else []):
        for i in range(0, len(images_u8), batch_size):
            x = augmented_input(images_u8[i:i + batch_size], policy, gen, size, mean, std)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
                model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)


@dataclass
class Prepared:
    decoded: DecodedSet
    labels: str  # "type" or "binary"
    targets: np.ndarray  # training target per image (UNTYPED_TUMOR: a tumor of unknown type)
    num_classes: int
    excluded_leaked: int
    source_ids: np.ndarray  # index into source_names, per image
    source_names: list[str]
    held_out: DecodedSet | None = None  # the --holdout-source images, kept out of training
    teacher_images: np.ndarray | None = None  # --teacher: the images at its input size, in `decoded`'s order
    multipliers: np.ndarray | None = None  # --upweight: a loss-weight multiplier per image, in `decoded`'s order
    upweight_digest: str | None = None  # --upweight: the SHA-256 of the list as it was read (resume key, metadata)

    def image_weights(self, train_idx: np.ndarray, balance: float) -> np.ndarray:
        """A loss weight per image (all of them), from the class and source counts of train_idx, times any
        --upweight multipliers."""
        table = cell_weights(self.targets[train_idx], self.source_ids[train_idx], len(self.source_names), balance)
        weights = table[self.source_ids, self.targets]
        if self.multipliers is None:
            return weights
        return reweighted(weights, self.targets, train_idx, self.multipliers)


def upweight_multipliers(path: str, decoded: DecodedSet, log=print) -> tuple[np.ndarray, str]:
    """--upweight's CSV (columns path,weight; paths as the training set names them, e.g. a CV's oof.csv) as a
    multiplier per image of `decoded`, 1 where it is not listed, and the SHA-256 of the bytes it was read from
    (read once, so the resume key and the model's metadata name the version that weighted the loss, even if the
    file changes during the run). Refused when no listed path is among the images (paths of another form), a
    path is listed twice (which weight was meant?) or a weight is not a positive number."""
    try:
        raw = Path(path).read_bytes()
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8"), newline=""))
        columns, rows = reader.fieldnames or [], list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise TrainingSetupError(f"--upweight {path}: cannot read it ({e.__class__.__name__})") from None
    if not {"path", "weight"} <= set(columns):
        raise TrainingSetupError(f"--upweight {path}: a CSV with the columns path,weight is needed")
    if not rows:
        raise TrainingSetupError(f"--upweight {path}: it lists no images")
    index = {p: i for i, p in enumerate(decoded.paths.tolist())}
    multipliers = np.ones(len(decoded), np.float64)
    found, seen = 0, set()
    for line, row in enumerate(rows, start=2):
        try:
            weight = float(row["weight"])
        except (TypeError, ValueError):
            weight = float("nan")
        if not (np.isfinite(weight) and weight > 0):
            raise TrainingSetupError(f"--upweight {path}, line {line}: the weight is not a positive number")
        if row["path"] in seen:
            raise TrainingSetupError(f"--upweight {path}, line {line}: this path is listed twice")
        seen.add(row["path"])
        if row["path"] in index:
            multipliers[index[row["path"]]] = weight
            found += 1
    if not found:
        raise TrainingSetupError(f"--upweight {path}: none of its {len(rows)} paths is a training image (paths are "
                                 "named as in a CV's oof.csv, e.g. SOURCE/CLASS/FILE.jpg)")
    log(f"--upweight: {found} of the {len(rows)} listed images are here, their loss weights scaled "
        f"(each class keeps its total)")
    return multipliers, hashlib.sha256(raw).hexdigest()


def prepare_data(cfg: TrainConfig, log=print) -> Prepared:
    decoded = load_training_data(cfg, log)
    held_out = None
    if cfg.holdout_source:
        names = sorted(set(decoded.source.tolist()))
        if cfg.holdout_source not in names:
            raise DatasetLayoutError(f"--holdout-source {cfg.holdout_source!r} is not one of the training "
                                     f"sources ({', '.join(names)})")
        out = decoded.source == cfg.holdout_source
        held_out, decoded = decoded.subset(np.flatnonzero(out)), decoded.subset(np.flatnonzero(~out))
        log(f"holding out {len(held_out)} images of {cfg.holdout_source}: trained on without them, evaluated "
            "on them after")
    excluded = 0
    if cfg.exclude_leaked:
        from braintriage.audit import dataset_hashes, leaked_mask

        leaked, _ = leaked_mask(decoded.phash, dataset_hashes(cfg.exclude_leaked, split="testing"))
        excluded = int(leaked.sum())
        decoded = decoded.subset(np.flatnonzero(~leaked))
        log(f"excluded {excluded} training images that near-duplicate images of {cfg.exclude_leaked}")
    if cfg.limit and cfg.limit < len(decoded):
        rng = np.random.default_rng(cfg.seed)
        decoded = decoded.subset(np.sort(rng.choice(len(decoded), cfg.limit, replace=False)))
    typed_tumors = ((decoded.tumor == 1) & (decoded.tumor_type > 0)).any()
    labels = cfg.labels
    if labels == "auto":  # the type head wherever some tumors have their type; the others train P(tumor)
        labels = "type" if typed_tumors else "binary"
    if labels == "type" and not typed_tumors:
        raise TrainingSetupError("--labels type needs tumor types for some images; these datasets have tumor / "
                                 "no tumor labels only")
    if labels == "type":
        targets = np.where(decoded.tumor_type >= 0, decoded.tumor_type,
                           np.where(decoded.tumor == 1, UNTYPED_TUMOR, 0))
    else:
        targets = decoded.tumor
    source_names = sorted(set(decoded.source.tolist()))
    source_ids = np.searchsorted(source_names, decoded.source)
    multipliers, upweight_digest = upweight_multipliers(cfg.upweight, decoded, log) if cfg.upweight else (None, None)
    return Prepared(decoded, labels, targets.astype(np.int64), len(TUMOR_TYPES) if labels == "type" else 2,
                    excluded, source_ids, source_names, held_out,
                    teacher_images_for(cfg, decoded, log) if cfg.teacher else None, multipliers, upweight_digest)


def teacher_images_for(cfg: TrainConfig, decoded: DecodedSet, log=print) -> np.ndarray | None:
    """--teacher: the training images as the teacher's preprocessing makes them, in `decoded`'s order; None
    where that is the student's own."""
    teacher = Path(cfg.teacher)
    if teacher.is_dir():  # one teacher per fold (crossval.fold_model), all with the same preprocessing
        teacher = next(iter(sorted(teacher.glob("fold-*.safetensors"))), None)
        if teacher is None:
            raise TrainingSetupError(f"{cfg.teacher} holds no fold-K.safetensors teachers")
    preprocess = PreprocessConfig.from_dict(read_metadata(teacher)["input"]["preprocess"])
    if preprocess == decoded.preprocess:
        return None
    if any(str(d).endswith(".npz") for d in data_sources(cfg)):
        raise TrainingSetupError(f"the teacher takes {preprocess.key()} images, these caches hold "
                                 f"{decoded.preprocess.key()}: give the dataset folders, decoded again for it")
    log(f"decoding the sources again as the teacher takes them ({preprocess.key()})")
    teacher_set = load_training_data(cfg, log, preprocess)
    position = {path: i for i, path in enumerate(teacher_set.paths.tolist())}
    return teacher_set.images[[position[path] for path in decoded.paths.tolist()]]


@dataclass
class Fitted:
    model: torch.nn.Module  # best checkpoint loaded, on the training device
    history: list[dict]
    best_row: dict
    best_loss: float
    val_logits: torch.Tensor  # of the best checkpoint
    mean: float
    std: float
    steps: int
    last_val_logits: torch.Tensor  # of the last epoch run (the same as val_logits when it was the best)
    trained_with: dict  # files_trained_with: the teacher and starting model, as they were when the run began


def save_checkpoint(path: Path, state: dict) -> None:
    """A run killed while writing leaves the previous checkpoint."""
    with written_atomically(path) as tmp:
        torch.save(state, tmp)


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_distributed(cfg: TrainConfig) -> tuple[Distributed, torch.device]:
    """Join the process group torchrun describes in the environment: NCCL on GPUs, gloo on CPUs.
    Multi-node jobs come from torchrun's own flags (--nnodes, --rdzv-endpoint)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(cfg.device)
    if world == 1:
        return Distributed(), device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size()), device


BN_SAMPLE = 512  # training images that re-estimate an averaged model's BatchNorm statistics


def parameter_groups(model: torch.nn.Module, lr: float, cfg: TrainConfig) -> list[dict]:
    """AdamW groups: weight decay on weights, not on biases and norms; a fine-tuned backbone at
    lr * backbone_lr_scale (the new head learns at lr), so the pretrained features move slowly."""
    head = {id(p) for p in model.head.parameters()} if hasattr(model, "head") else set()
    groups = []
    for in_head in (False, True):
        scale = 1.0 if in_head else cfg.backbone_lr_scale
        params = [p for p in model.parameters() if (id(p) in head) == in_head and p.requires_grad]
        for decay in (True, False):
            chosen = [p for p in params if (p.ndim > 1) == decay]
            if chosen:
                groups.append({"params": chosen, "weight_decay": cfg.weight_decay if decay else 0.0,
                               "lr": lr * scale})
    return groups


@dataclass
class Progress:
    """Where a run stands after an epoch: what a checkpoint keeps beside the weights and optimizer."""
    history: list[dict] = field(default_factory=list)
    best: dict | None = None  # state_dict of the best epoch's (validated) model
    best_loss: float = float("inf")
    best_row: dict | None = None
    stale: int = 0  # whole-recipe epochs since the best
    step: int = 0
    epoch: int = 0  # epochs finished
    best_whole_recipe: bool = False  # whether the kept epoch trained with the whole recipe

    def record(self, val_loss: float, state: dict, row: dict, whole_recipe: bool) -> None:
        """Keep the best-validated weights among the epochs trained with the whole recipe: at full size, and
        with synthetic lesions where the recipe paints them only from some epoch on. Validation holds no painted
        lesions, so an epoch before they start can score best there without having learned them: seed 1 of the
        200 px leave-Br35H-out run kept its epoch 6 of 12, the last without lesions, and found 0.683 of the
        held-out tumors (seed 0 kept epoch 10: 0.909; session 27). An earlier epoch is kept only until the
        first whole-recipe one. Only whole-recipe epochs count toward patience: counting small-image epochs
        stopped a 60-epoch run at epoch 19 on its epoch-3 weights (session 25)."""
        self.history.append(row)
        first_whole = whole_recipe and not self.best_whole_recipe
        if first_whole or (whole_recipe == self.best_whole_recipe and val_loss < self.best_loss):
            self.best_loss, self.best, self.best_row, self.stale = val_loss, copy.deepcopy(state), row, 0
            self.best_whole_recipe = whole_recipe
        else:
            self.stale = self.stale + 1 if whole_recipe else 0


def lesions_paused(epoch: int, cfg: "TrainConfig") -> bool:
    """Whether this epoch (from 0) trains without the recipe's synthetic lesions (--lesions-from-epoch)."""
    return bool(cfg.synthetic_lesions) and epoch < cfg.lesions_from_epoch


def recipe_at(epoch: int, cfg: "TrainConfig") -> "TrainConfig":
    """The recipe as this epoch (from 0) trains it: without painted lesions before --lesions-from-epoch, without
    the teacher from --distill-until-epoch on."""
    if lesions_paused(epoch, cfg):
        cfg = replace(cfg, synthetic_lesions=0.0)
    if cfg.distill_until_epoch is not None and epoch >= cfg.distill_until_epoch:
        cfg = replace(cfg, distill_weight=0.0)
    return cfg


def trains_whole_recipe(epoch: int, cfg: "TrainConfig") -> bool:
    """Whether this epoch (from 0) trains with every part of the recipe: full size, and lesions if any."""
    return train_size_at(epoch, cfg) == cfg.image_size and not lesions_paused(epoch, cfg)


@dataclass
class TrainingData:
    """What training steps draw from: the whole dataset on the device as uint8, and how a batch is made."""
    images: torch.Tensor  # (N, 1, H, W) uint8
    targets: torch.Tensor
    weights: torch.Tensor  # loss weight per image
    mean: float
    std: float
    tumor_target: int  # the target a synthetic lesion gives (a tumor of unknown type)
    tumor_weight: float  # and its loss weight: the training tumors' average
    teacher: Teacher | None = None  # --teacher: its logits on each batch are learned too
    teacher_images: torch.Tensor | None = None  # the same images at the teacher's input size (None: `images`)

    def batch(self, idx: torch.Tensor, cfg: "TrainConfig", gen: torch.Generator, size: int):
        """(network input, targets, loss weights, the teacher's logits or None) of one training batch."""
        if self.teacher is None:
            return (*training_batch(self.images[idx], self.targets[idx], self.weights[idx], cfg, gen, size,
                                    self.mean, self.std, self.tumor_target, self.tumor_weight), None)
        # The teacher sees each augmented view (lesions painted first) at its own size, the student the same
        # view made smaller: one draw of the random stream serves both.
        images = self.images if self.teacher_images is None else self.teacher_images
        views, targets, weights = training_views(images[idx], self.targets[idx], self.weights[idx], cfg, gen,
                                                 self.teacher.size, self.tumor_target, self.tumor_weight)
        x = normalised_views(resized_views(views, size), self.mean, self.std)
        if cfg.distill_weight == 0:  # an epoch after --distill-until-epoch: the same views, the labels alone
            return x, targets, weights, None
        # Lesion copies come after the batch's own images: without distill_painted they learn their label only.
        taught = views if cfg.distill_painted else views[:len(idx)]
        return x, targets, weights, self.teacher.logits(taught)


@dataclass
class Validation:
    """The validation split on the device, and how a model is scored on it after each epoch."""
    images: torch.Tensor  # (N, 1, H, W) uint8, at full size
    targets: torch.Tensor
    weights: torch.Tensor
    tumor: np.ndarray  # 1 = tumor, for the binary metrics
    bn_images: torch.Tensor | None  # training images that re-estimate an averaged model's BatchNorm (EMA only)
    mean: float
    std: float
    batch_size: int
    autocast: bool

    def logits(self, model: torch.nn.Module) -> torch.Tensor:
        return predict_logits(model, self.images, self.mean, self.std, self.batch_size, self.autocast)

    def score(self, model: torch.nn.Module, cfg: "TrainConfig") -> tuple[torch.Tensor, float, dict]:
        """(logits, loss, metrics at 0.5) of the model as it would be saved."""
        if self.bn_images is not None:
            reestimate_batchnorm(model, self.bn_images, self.mean, self.std, cfg.augment, cfg.image_size,
                                 self.batch_size, self.autocast, cfg.seed)
        logits = self.logits(model)
        loss = weighted_loss(logits, self.targets, self.weights, 0.0).item()
        return logits, loss, binary_metrics(self.tumor, tumor_probability(logits)[0].cpu().numpy(), 0.5)


def validation_on(train_data: TrainingData, decoded: DecodedSet, train_idx: np.ndarray, val_idx: np.ndarray,
                  cfg: "TrainConfig", with_ema: bool, batch_size: int, autocast: bool) -> Validation:
    bn_images = None
    if with_ema:
        bn_ids = np.sort(np.random.default_rng(cfg.seed).permutation(train_idx)[:BN_SAMPLE])
        bn_images = train_data.images[torch.from_numpy(bn_ids).to(train_data.images.device)]
    return Validation(train_data.images[val_idx], train_data.targets[val_idx], train_data.weights[val_idx],
                      decoded.tumor[val_idx], bn_images, train_data.mean, train_data.std, batch_size, autocast)


# history.csv's validation columns: (column suffix, binary_metrics key)
VALIDATION_COLUMNS = (("accuracy", "accuracy"), ("recall", "sensitivity"), ("precision", "precision"),
                      ("specificity", "specificity"), ("roc_auc", "roc_auc"))


def history_row(epoch: int, step: int, lr: float, size: int, train_loss: float, train_accuracy: float,
                val_loss: float, metrics: dict, seconds: float) -> dict:
    """One line of history.csv: an epoch (1-based; 0 for a model validated as it is) and its validation."""
    return {"epoch": epoch, "step": step, "lr": lr, "train_size": size, "train_loss": train_loss,
            "train_accuracy": train_accuracy, "val_loss": val_loss,
            **{f"val_{name}": metrics[key] for name, key in VALIDATION_COLUMNS}, "seconds": seconds}


def optimizer_and_schedule(model: torch.nn.Module, cfg: TrainConfig, world: int, steps_per_epoch: int,
                           on_cuda: bool) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW at cfg.lr scaled linearly with the global batch (cfg.lr is for 64 images), linear warm-up over
    cfg.warmup_epochs, then cosine decay to zero over the planned epochs."""
    lr = cfg.lr * (cfg.batch_size * world) / 64
    optimizer = torch.optim.AdamW(parameter_groups(model, lr, cfg), lr=lr, fused=on_cuda)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, 0.5 * (
        1 + math.cos(math.pi * min(1.0, max(0, s - warmup) / max(1, total_steps - warmup))))))
    return optimizer, schedule


def files_trained_with(cfg: TrainConfig) -> dict:
    """The teacher and the starting model a run trains with (file, SHA-256, architecture, input size), read once as
    it starts: its resume key and its model file's metadata then name the same file, even one replaced meanwhile."""
    return {"teacher": describe_model_file(cfg.teacher) if cfg.teacher else None,
            "initialised_from": describe_model_file(cfg.init_from) if cfg.init_from else None}


def run_key_of(data: Prepared, train_idx: np.ndarray, cfg: TrainConfig, world: int,
               trained_with: dict | None = None) -> str:
    """What makes a run the same run, for --resume: the same images in the same split, trained the same way
    (`trained_with`: files_trained_with(cfg), read again when not given)."""
    trained_with = trained_with or files_trained_with(cfg)
    decoded = data.decoded
    split_hash = hashlib.sha256(train_idx.tobytes()).hexdigest()[:16]
    run_key = f"{decoded.fingerprint}:{split_hash}:{cfg.epochs}:{cfg.batch_size}:{cfg.seed}:{world}"
    run_key += f":ema {cfg.ema_decay}" if cfg.ema_decay else ""
    run_key += f":lesions {cfg.synthetic_lesions}" if cfg.synthetic_lesions else ""
    run_key += ":as copies" if cfg.synthetic_lesions and cfg.lesion_copies else ""
    run_key += f":from epoch {cfg.lesions_from_epoch}" if cfg.synthetic_lesions and cfg.lesions_from_epoch else ""
    run_key += f":infiltrative {cfg.infiltrative_lesions}" if cfg.synthetic_lesions and cfg.infiltrative_lesions else ""
    run_key += f":frozen stem and {cfg.frozen_blocks} blocks" if cfg.frozen_blocks is not None else ""
    run_key += f":style mixing {cfg.style_mixing}" if cfg.style_mixing else ""
    if cfg.start_size and cfg.start_size < cfg.image_size:  # the size schedule changes every step's images
        run_key += f":from {cfg.start_size} px, growing over {cfg.resize_ramp[0]}-{cfg.resize_ramp[1]} of the epochs"
    if cfg.teacher:
        run_key += (f":teacher {trained_with['teacher']['sha256'][:16]} weight {cfg.distill_weight} "
                    f"temperature {cfg.distill_temperature}" + ("" if cfg.distill_painted else " real images only")
                    + (f" until epoch {cfg.distill_until_epoch}" if cfg.distill_until_epoch is not None else ""))
    run_key += (f":initialised from {trained_with['initialised_from']['sha256'][:16]}" if cfg.init_from
                else "")
    run_key += f":upweighted by {data.upweight_digest[:16]}" if data.upweight_digest else ""
    return run_key + f":{decoded.preprocess.key()}"


def restore_checkpoint(checkpoint: Path, run_key: str, device: torch.device, model, optimizer, schedule, ema,
                       gen: torch.Generator, aug_gen: torch.Generator, dist_info: Distributed) -> Progress:
    """Load a run's checkpoint into its model, optimizer, schedule, average and random streams."""
    state = torch.load(checkpoint, map_location=device, weights_only=True)  # tensors and plain data only
    if state["run_key"] != run_key:
        raise TrainingSetupError(f"{checkpoint} belongs to another run "
                                 "(data, preprocessing, split, epochs, batch size or seed)")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    gen.set_state(state["generator"].cpu())
    if dist_info.world > 1:
        aug_gen.set_state(state["aug_generators"][dist_info.rank].cpu())
    torch.set_rng_state(state["torch_rng"].cpu())
    # A checkpoint from before session 27 does not say; its best epoch was chosen among all epochs.
    return Progress(state["history"], state["best"], state["best_loss"], state["best_row"], state["stale"],
                    state["step"], state["epoch"], state.get("best_whole_recipe", True))


def training_done(progress: Progress, cfg: TrainConfig) -> bool:
    """Every epoch trained, or stopped early (no better validation loss for `patience` epochs, or --max-steps)."""
    return (progress.epoch >= cfg.epochs or progress.stale >= cfg.patience
            or bool(cfg.max_steps and progress.step >= cfg.max_steps))


def checkpoint_is_due(last_save: float, cfg: TrainConfig, aug_gen: torch.Generator, world: int, final: bool = False
                      ) -> tuple[bool, list | None]:
    """Whether to write the checkpoint now (every cfg.checkpoint_seconds, and after the `final` epoch), and under
    torchrun every process's augmentation stream: all processes must take part in the same checkpoints, so rank
    0's clock decides (`final` is the same on every process: validation runs whole on each)."""
    due = final or time.time() - last_save >= cfg.checkpoint_seconds
    if world == 1:
        return due, None
    import torch.distributed as dist

    decision = [due]
    dist.broadcast_object_list(decision, src=0)
    aug_states = None
    if decision[0]:
        aug_states = [None] * world
        dist.all_gather_object(aug_states, aug_gen.get_state())
    return decision[0], aug_states


def train_one_epoch(model, step_model, optimizer, schedule, ema, data: TrainingData, order: torch.Tensor,
                    steps: int, cfg: TrainConfig, aug_gen: torch.Generator, size: int, bf16: bool,
                    progress: Progress, dist_info: Distributed) -> tuple[float, float]:
    """One pass over the shuffled training indices `order` (each process trains on its share of every global
    batch; `step_model` is `model` as stepped: wrapped for DistributedDataParallel or compiled); returns the
    mean training loss and accuracy."""
    loss_sum = torch.zeros((), device=order.device)
    correct = torch.zeros((), device=order.device)
    seen = 0
    for b in range(steps):
        first = (b * dist_info.world + dist_info.rank) * cfg.batch_size  # this process's share of global batch b
        idx = order[first:first + cfg.batch_size]
        x, y, w, teacher_logits = data.batch(idx, cfg, aug_gen, size)
        loss, right = optimizer_step(step_model, optimizer, x, y, w, cfg.label_smoothing, bf16, teacher_logits,
                                     (cfg.distill_weight, cfg.distill_temperature))
        schedule.step()
        if ema is not None:
            ema.update_parameters(model)
        loss_sum += loss * len(y)  # len(y), not len(idx): lesion copies make a batch larger
        correct += right
        seen += len(y)
        progress.step += 1
        if cfg.max_steps and progress.step >= cfg.max_steps:
            break
    return loss_sum.item() / max(seen, 1), correct.item() / max(seen, 1)


def training_data_on(device: torch.device, data: Prepared, train_idx: np.ndarray, cfg: TrainConfig) -> TrainingData:
    """The whole dataset on the training device as uint8 (a step then only moves an index batch), with each
    image's loss weight and the training split's normalisation."""
    decoded = data.decoded
    image_weights = data.image_weights(train_idx, cfg.source_balance)
    trained_tumors = train_idx[data.targets[train_idx] != 0]
    teacher = teacher_on(device, cfg, data)
    return TrainingData(
        images=torch.from_numpy(decoded.images).unsqueeze(1).to(device),
        targets=torch.from_numpy(data.targets).to(device), weights=torch.from_numpy(image_weights).to(device),
        mean=float(decoded.images[train_idx].mean() / 255.0), std=float(decoded.images[train_idx].std() / 255.0),
        # A synthetic lesion makes a tumor of unknown type, weighed as the training tumors are on average.
        tumor_target=UNTYPED_TUMOR if data.labels == "type" else 1,
        tumor_weight=float(image_weights[trained_tumors].mean()) if len(trained_tumors) else 1.0,
        teacher=teacher, teacher_images=(None if data.teacher_images is None else
                                         torch.from_numpy(data.teacher_images).unsqueeze(1).to(device)))


def check_settings(cfg: TrainConfig) -> None:
    """Refuse settings that contradict each other, before minutes of decoding: `train` and `train --folds` call
    this first. (Checks that need the data or the network, like a teacher's classes, come later.)"""
    # The schedule is checked before anything reads it: train_size_at divides by the ramp's length.
    if cfg.start_size and not 0 <= cfg.resize_ramp[0] < cfg.resize_ramp[1] <= 1:
        raise TrainingSetupError(f"--resize-ramp {cfg.resize_ramp[0]:g} {cfg.resize_ramp[1]:g}: give the shares of "
                                 "the epochs where the size starts to grow and where it is full, 0 <= first < second "
                                 "<= 1")
    if cfg.architecture in FIXED_SIZE_MODELS and train_size_at(0, cfg) != cfg.image_size:
        raise TrainingSetupError(f"{cfg.architecture} takes one image size only; --start-size needs another "
                                 "architecture")
    if cfg.frozen_blocks is not None and not (cfg.pretrained or cfg.init_from):
        raise TrainingSetupError("--frozen-blocks keeps trained layers as loaded; it needs --pretrained or "
                                 "--init-from")
    if cfg.epochs == 0 and not cfg.init_from:
        raise TrainingSetupError("--epochs 0 writes a trained model as it is, at this run's input size: it needs "
                                 "--init-from")
    if cfg.pretrained and cfg.init_from:
        raise TrainingSetupError("--init-from starts from a trained model's weights, --pretrained from ImageNet's: "
                                 "give one")
    if cfg.teacher and cfg.start_size:
        raise TrainingSetupError("--teacher trains at the full image size only; leave out --start-size")
    if cfg.distill_until_epoch is not None and not cfg.teacher:
        raise TrainingSetupError("--distill-until-epoch says when learning from a teacher stops: it needs --teacher")
    if cfg.infiltrative_lesions and not cfg.synthetic_lesions:
        raise TrainingSetupError("--infiltrative-lesions says how some painted masses look: it needs --synthetic-lesions")
    if cfg.teacher and not cfg.distill_painted and cfg.synthetic_lesions and not cfg.lesion_copies:
        raise TrainingSetupError("--no-distill-painted tells painted copies from the images they were painted on: "
                                 "it needs --lesion-copies")


def class_names_of(labels: str) -> list[str]:
    return list(TUMOR_TYPES) if labels == "type" else ["no_tumor", "tumor"]


def teacher_on(device: torch.device, cfg: TrainConfig, data: Prepared) -> Teacher | None:
    """The --teacher model on the training device, refused where it cannot teach this run."""
    if not cfg.teacher:
        return None
    teacher = Teacher(cfg.teacher, device)
    problem = source_leak(cfg.holdout_source, teacher.metadata, "teacher")
    if problem:
        raise TrainingSetupError(problem)
    if teacher.class_names != class_names_of(data.labels):
        raise TrainingSetupError(f"the teacher predicts {', '.join(teacher.class_names)}; this run trains "
                                 f"{', '.join(class_names_of(data.labels))}")
    if teacher.size < cfg.image_size:
        raise TrainingSetupError(f"the teacher takes {teacher.size} px images, smaller than this run's "
                                 f"{cfg.image_size}: a teacher sees at least as much as its student")
    return teacher


def models_to_train(cfg: TrainConfig, data: Prepared, device: torch.device, dist_info: Distributed, bf16: bool,
                    log=print) -> tuple[torch.nn.Module, torch.nn.Module, torch.optim.swa_utils.AveragedModel | None]:
    """The network (channels-last), the same network as stepped (wrapped for DistributedDataParallel under
    torchrun, compiled with cfg.compile), and its weight average where cfg.ema_decay asks for one."""
    model = build_model(cfg.architecture, 1, data.num_classes if data.labels == "type" else 1, cfg.image_size,
                        pretrained=cfg.pretrained)
    if cfg.init_from:
        try:
            state = starting_weights(cfg.init_from, cfg.architecture, class_names_of(data.labels),
                                     cfg.holdout_source)
        except ValueError as e:
            raise TrainingSetupError(str(e)) from None
        model.load_state_dict(state)
    if cfg.frozen_blocks is not None:
        try:
            freeze_early_layers(model, cfg.frozen_blocks)
        except ValueError as e:
            raise TrainingSetupError(str(e)) from None
    if cfg.style_mixing:
        try:
            mix_styles_in_training(model, cfg.style_mixing)
        except ValueError as e:
            raise TrainingSetupError(str(e)) from None
    model = model.to(device, memory_format=torch.channels_last)
    start = " (ImageNet weights)" if cfg.pretrained else f" (from {Path(cfg.init_from).name})" if cfg.init_from else ""
    log(f"{cfg.architecture}{start}: "
        f"{count_parameters(model) / 1e6:.2f}M parameters; labels: {data.labels}; "
        f"{'bf16 autocast' if bf16 else 'fp32'}")
    step_model = model
    if dist_info.world > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None)
    if cfg.compile:
        step_model = torch.compile(step_model)
    # Weight averaging (EMA, as in SWA/SWAD) finds flatter minima, which hold up better on data from other
    # sources; the average is what gets validated and saved, its BatchNorm statistics re-estimated first on
    # a fixed sample of training images (BN_SAMPLE).
    ema = (torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=False)
        if cfg.ema_decay else None)
    return model, step_model, ema


@dataclass
class Run:
    """One training run's moving parts, as `start_run` sets them up (or resumes them) and `fit`'s loop steps them."""
    model: torch.nn.Module
    step_model: torch.nn.Module  # the model as stepped: wrapped under torchrun, compiled with cfg.compile
    ema: torch.optim.swa_utils.AveragedModel | None
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    gen: torch.Generator  # data order: the same on every process
    aug_gen: torch.Generator  # augmentation draws: this process's own
    train_data: TrainingData
    train_ids: torch.Tensor
    steps_per_epoch: int
    bf16: bool
    run_key: str  # what a checkpoint must match to be resumed
    trained_with: dict
    progress: Progress
    validation: Validation

    @property
    def eval_model(self) -> torch.nn.Module:
        """What is validated and kept: the weight average where the run keeps one."""
        return self.ema.module if self.ema is not None else self.model

    def state(self, aug_states: list | None) -> dict:
        """Everything --resume needs to continue the run exactly (`restore_checkpoint` reads it back)."""
        progress = self.progress
        return {"run_key": self.run_key, "epoch": progress.epoch, "step": progress.step,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "ema": self.ema.state_dict() if self.ema is not None else None,
                "generator": self.gen.get_state(), "aug_generators": aug_states, "torch_rng": torch.get_rng_state(),
                "history": progress.history, "best": progress.best, "best_loss": progress.best_loss,
                "best_row": progress.best_row, "stale": progress.stale, "best_whole_recipe": progress.best_whole_recipe}


def start_run(cfg: TrainConfig, data: Prepared, train_idx: np.ndarray, val_idx: np.ndarray, device: torch.device,
              log, checkpoint: Path | None, dist_info: Distributed) -> Run:
    """The network, its optimizer and schedule, the random streams and the validation split of a run, resumed from
    `checkpoint` where cfg.resume finds one. The order of the steps below fixes the random draws: keep it."""
    torch.manual_seed(cfg.seed)
    if device.type == "cpu":
        keep_freed_memory()  # half a CPU training step went to page faults without it (cpu_memory.py)
    world = dist_info.world
    bf16 = use_bf16(cfg.precision, device)
    train_data = training_data_on(device, data, train_idx, cfg)
    train_ids = torch.from_numpy(train_idx).to(device)
    model, step_model, ema = models_to_train(cfg, data, device, dist_info, bf16, log)
    steps_per_epoch = max(1, len(train_idx) // (cfg.batch_size * world))  # drop the ragged last batch
    optimizer, schedule = optimizer_and_schedule(model, cfg, world, steps_per_epoch, device.type == "cuda")
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    aug_gen = gen if world == 1 else torch.Generator(device=device).manual_seed(cfg.seed + 1 + dist_info.rank)
    trained_with = files_trained_with(cfg)
    run_key = run_key_of(data, train_idx, cfg, world, trained_with)
    progress = Progress()
    if cfg.resume and checkpoint is not None and checkpoint.exists():
        progress = restore_checkpoint(checkpoint, run_key, device, model, optimizer, schedule, ema, gen, aug_gen,
                                      dist_info)
        log(f"resuming after epoch {progress.epoch} (step {progress.step}) from {checkpoint}")
    val_batch = 256 if device.type == "cuda" else 64  # CPU caches favour small batches
    validation = validation_on(train_data, data.decoded, train_idx, val_idx, cfg, ema is not None, val_batch, bf16)
    return Run(model, step_model, ema, optimizer, schedule, gen, aug_gen, train_data, train_ids, steps_per_epoch,
               bf16, run_key, trained_with, progress, validation)


def fit(cfg: TrainConfig, data: Prepared, train_idx: np.ndarray, val_idx: np.ndarray, device: torch.device,
        desc: str = "training", log=print, checkpoint: Path | None = None,
        dist_info: Distributed = Distributed()) -> Fitted:
    """Train one model on train_idx, early-stopping on val_idx; returns the best checkpoint. With
    `checkpoint`, the whole training state is saved there at the end of an epoch every
    `cfg.checkpoint_seconds`, and `cfg.resume` continues from it: same data order, augmentation and dropout
    draws, same number of steps. Under torchrun each process trains on its share of every global batch
    (batch_size per process; the learning rate scales with the global batch) through DistributedDataParallel;
    validation runs whole on every process, so early stopping decides the same everywhere."""
    run = start_run(cfg, data, train_idx, val_idx, device, log, checkpoint, dist_info)
    progress, validation = run.progress, run.validation
    val_logits, last_save = None, time.time()
    if cfg.epochs == 0:  # --init-from's model as it is, validated (and then written) at this run's input size
        val_logits, val_loss, m = validation.score(run.eval_model, cfg)
        progress.record(val_loss, run.eval_model.state_dict(), history_row(
            0, 0, 0.0, cfg.image_size, float("nan"), float("nan"), val_loss, m, 0.0), whole_recipe=True)
    first_epoch = cfg.epochs if training_done(progress, cfg) else progress.epoch  # resumed from its last checkpoint
    bar = tqdm(range(first_epoch, cfg.epochs), desc=desc, unit="epoch", dynamic_ncols=True,
               initial=first_epoch, total=cfg.epochs)
    for epoch in bar:
        t_epoch = time.time()
        size = train_size_at(epoch, cfg)
        run.model.train()
        order = run.train_ids[torch.randperm(len(run.train_ids), generator=run.gen, device=device)]
        train_loss, train_accuracy = train_one_epoch(
            run.model, run.step_model, run.optimizer, run.schedule, run.ema, run.train_data, order,
            run.steps_per_epoch, recipe_at(epoch, cfg), run.aug_gen, size, run.bf16, progress, dist_info)
        val_logits, val_loss, m = validation.score(run.eval_model, cfg)
        row = history_row(epoch + 1, progress.step, run.schedule.get_last_lr()[0], size, train_loss, train_accuracy,
                          val_loss, m, time.time() - t_epoch)
        progress.record(val_loss, run.eval_model.state_dict(), row, whole_recipe=trains_whole_recipe(epoch, cfg))
        progress.epoch = epoch + 1
        bar.set_postfix(loss=f"{train_loss:.3f}", val_loss=f"{val_loss:.3f}",
                        val_acc=f"{m['accuracy']:.3f}", val_recall=f"{m['sensitivity']:.3f}")
        # The last epoch always saves: a run killed while its guard is fitted or its held-out source scored
        # then resumes straight to those, not to its last timed checkpoint's epochs again.
        done = training_done(progress, cfg)
        due, aug_states = (checkpoint_is_due(last_save, cfg, run.aug_gen, dist_info.world, final=done)
                           if checkpoint is not None else (False, None))
        if due:
            last_save = time.time()
            if dist_info.main:
                save_checkpoint(checkpoint, run.state(aug_states))
        if done and progress.epoch < cfg.epochs:
            log(f"stopping after epoch {epoch + 1}" + (" (no better validation loss)" if progress.stale else ""))
            break
    bar.close()
    # The last epoch's validation outputs; a run resumed from its final checkpoint ran no epoch here.
    last_val_logits = val_logits if val_logits is not None else validation.logits(run.eval_model)
    run.model.load_state_dict(progress.best)
    return Fitted(run.model, progress.history, progress.best_row, progress.best_loss, validation.logits(run.model),
                  run.train_data.mean, run.train_data.std, progress.step, last_val_logits, run.trained_with)


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Temperature scaling (Guo et al. 2017): one scalar T > 0 minimising validation NLL of logits / T."""
    logits, targets = logits.detach().float().cpu(), targets.detach().cpu()
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def nll():
        opt.zero_grad()
        z = logits / log_t.exp()
        loss = (F.binary_cross_entropy_with_logits(z[:, 0], targets.float()) if z.shape[1] == 1
                else F.cross_entropy(z, targets))
        loss.backward()
        return loss

    opt.step(nll)
    return float(log_t.exp().item())


def train(cfg: TrainConfig, log=print) -> dict:
    """Train one model and write its model file (a cross-validation, `cfg.folds`, is crossval.py's)."""
    if cfg.folds:
        raise TrainingSetupError("a cross-validation trains no model file: run it with crossval.cross_validation")
    if cfg.only_fold:
        raise TrainingSetupError(f"--only-fold {cfg.only_fold} needs --folds of at least that many")
    check_settings(cfg)
    t_start = time.time()
    np.random.seed(cfg.seed)
    dist_info, device = start_distributed(cfg)
    if not dist_info.main:
        log = lambda *_: None  # noqa: E731  (only rank 0 speaks and writes files)
    try:
        return _train(cfg, dist_info, device, t_start, log)
    finally:
        if dist_info.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(cfg: TrainConfig, dist_info: Distributed, device: torch.device, t_start: float, log) -> dict:
    on_cuda = device.type == "cuda"
    if on_cuda:
        torch.backends.cudnn.benchmark = True
    for role, path in (("teacher", cfg.teacher), ("starting model", cfg.init_from)):
        if path and Path(path).is_dir():
            raise TrainingSetupError(f"{path} is a folder: fold models serve a cross-validation (--folds) as its "
                                     f"folds' {role}s; give one model file")
    data = prepare_data(cfg, log)
    decoded = data.decoded
    train_idx, val_idx = grouped_split(decoded, cfg.val_fraction, cfg.seed)
    if cfg.init_from:  # its validation images must be this run's: it would have trained on them otherwise
        problem = validation_split_leak(read_metadata(cfg.init_from), decoded, val_idx)
        if problem:
            raise TrainingSetupError(f"--init-from {cfg.init_from}: {problem}")
    log(f"{len(decoded)} images: {len(train_idx)} train, {len(val_idx)} validation "
        f"({len(np.unique(decoded.groups))} near-duplicate groups, none split); device {device}")
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fitted = fit(cfg, data, train_idx, val_idx, device, log=log, checkpoint=run_dir / "checkpoint.pt",
                 dist_info=dist_info)
    model, history = fitted.model, fitted.history
    train_seconds = time.time() - t_start
    if not dist_info.main:
        return {"metadata": None, "history": history}

    metadata = model_metadata(cfg, data, fitted, train_idx, val_idx, train_seconds, device, dist_info.world)
    threshold, val_metrics = metadata["threshold"], metadata["validation_metrics"]
    save_model(cfg.output, model, metadata)
    metadata["ood"] = calibrate_ood(cfg.output, decoded, cfg.output, cfg.val_fraction, cfg.seed, log)
    write_csv_dicts(run_dir / "history.csv", history)
    (run_dir / "metadata.json").write_text(json.dumps(metadata, indent=2))
    if data.held_out is not None:
        metadata["held_out_evaluation"] = evaluate_held_out(cfg, data.held_out, run_dir, log)
    try:
        from braintriage.reports import training_curves_png
        (run_dir / "training_curves.png").write_bytes(training_curves_png(history))
    except ImportError as e:  # matplotlib is optional where only training runs
        log(f"no training-curve plot ({e})")
    log(f"saved {cfg.output}: best epoch {fitted.best_row['epoch']}, validation loss {fitted.best_loss:.4f}, "
        f"threshold {threshold:.3f} (validation sensitivity {val_metrics['sensitivity']:.3f}, "
        f"specificity {val_metrics['specificity']:.3f}); {train_seconds:.0f} s")
    return {"metadata": metadata, "history": history}


def model_metadata(cfg: TrainConfig, data: Prepared, fitted: Fitted, train_idx: np.ndarray, val_idx: np.ndarray,
                   train_seconds: float, device: torch.device, processes: int) -> dict:
    """What a trained model file carries besides its weights (modelfile.py validates it on load): its input,
    classes, threshold, sources and recipe, and its validation metrics and training curves. The threshold comes
    from the best checkpoint's validation scores (after the optional temperature): the highest with validation
    sensitivity >= the target, capped at 0.5."""
    decoded = data.decoded
    val_tumor = decoded.tumor[val_idx]
    temperature = (fit_temperature(fitted.val_logits, torch.from_numpy(data.targets[val_idx]))
                   if cfg.calibrate else 1.0)
    p_val = tumor_probability(fitted.val_logits, temperature)[0].cpu().numpy()
    threshold = threshold_for_sensitivity(val_tumor, p_val, cfg.target_sensitivity)
    val_metrics = binary_metrics(val_tumor, p_val, threshold)
    val_metrics["loss"] = fitted.best_loss
    val_metrics["best_epoch"] = fitted.best_row["epoch"]
    return {
        "architecture": cfg.architecture,
        "input": {"channels": 1, "preprocess": preprocess_config(cfg).to_dict(),
                  "normalization": {"scale": 1 / 255, "mean": fitted.mean, "std": fitted.std}},
        "output": "softmax" if data.labels == "type" else "sigmoid",
        "class_names": class_names_of(data.labels),
        "positive": "P(tumor) = 1 - P(no_tumor)" if data.labels == "type" else "sigmoid(logit)",
        "temperature": temperature,
        "threshold": threshold,
        "threshold_rule": f"highest threshold with validation sensitivity >= {cfg.target_sensitivity}, "
                          f"capped at 0.5",
        "training": {
            "data": ", ".join(Path(d).name for d in data_sources(cfg)), "data_fingerprint": decoded.fingerprint,
            "sources": decoded.source_counts(), "held_out_source": cfg.holdout_source,
            "pretrained": f"ImageNet ({weights_package(cfg.architecture)})" if cfg.pretrained else None,
            **fitted.trained_with,  # "teacher" and "initialised_from"
            # the path alone (in "config") cannot say which version of the file weighted the loss
            "upweighted_by": {"file": Path(cfg.upweight).name, "sha256": data.upweight_digest}
            if cfg.upweight else None,
            "images": len(decoded),
            "train_images": len(train_idx), "validation_images": len(val_idx),
            "excluded_leaked_images": data.excluded_leaked,
            "validation_split": f"grouped by pHash near-duplicates, stratified, fraction {cfg.val_fraction}",
            "epochs_run": len(fitted.history), "steps": fitted.steps, "seconds": round(train_seconds, 1),
            "device": hardware_name(device),
            "processes": processes,
            "torch": torch.__version__,
            "config": recipe(cfg),
        },
        "validation_metrics": val_metrics,
        # per-epoch curves travel with the model, so a report can show how it was trained
        "history": [{k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()} for row in fitted.history],
    }


def evaluate_held_out(cfg: TrainConfig, held_out: DecodedSet, run_dir: Path, log=print) -> dict:
    """Leave-source-out: score the held-out source with the model just written, through `evaluate` (the same
    Predictor, guard and bootstrap intervals as any evaluation), and write RUN_DIR/holdout.json, one row of
    the leave-source-out table: sensitivity, specificity where it has normals, ROC-AUC, guard alarm rate."""
    from braintriage.evaluate import evaluate

    cache = run_dir / f"holdout-{cfg.holdout_source}.npz"
    held_out.save(cache)
    report = evaluate(cache, cfg.output, output_dir=run_dir / "holdout-evaluation", train_data=None)
    row = {**holdout_row(cfg.holdout_source, report), "seed": cfg.seed}  # runs of one recipe differ by seed
    normal_ratios = (read_metadata(cfg.output).get("ood") or {}).get("validation_normal_ratios")
    if normal_ratios:  # to read the kept scores' guard_ratio column with the familiarity rule, after the model is gone
        row["guard_validation_normal_ratios"] = normal_ratios
    (run_dir / "holdout.json").write_text(json.dumps(row, indent=2))
    cache.unlink()
    log(f"held-out {cfg.holdout_source}: " + ", ".join(
        f"{k} {v['value']:.3f} ({v['ci95'][0]:.3f}-{v['ci95'][1]:.3f})" if isinstance(v, dict) else f"{k} {v}"
        for k, v in row.items() if k in ("sensitivity", "specificity", "roc_auc", "ood_alarm_rate")))
    return row


def holdout_row(source: str, report: dict) -> dict:
    """One leave-source-out row from an evaluation report: each metric with its bootstrap 95% interval."""
    m, ci = report["metrics"], report["ci95"]
    row = {"held_out_source": source, "images": len(report["predictions"]),
           "tumors": int(sum(p["tumor"] for p in report["predictions"])), "threshold": m.get("threshold")}
    for name in ("sensitivity", "specificity", "roc_auc", "accuracy"):
        value = m.get(name)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            row[name] = {"value": value, "ci95": ci.get(name)}
    guard = report.get("ood_guard")
    if guard:
        flagged = guard["flagged"]
        row["ood_alarm_rate"] = {"value": guard["false_alarm_rate"],
                                 "ci95": list(wilson_interval(flagged, row["images"]))}
    return row


def recipe(cfg: TrainConfig) -> dict:
    """The training settings, without the paths and the switches that change only what a run keeps (--only-fold,
    --keep-fold-models, --fold-guards): what a model file and cv.json record, and a resumed CV matches."""
    return {k: v for k, v in asdict(cfg).items()
            if k not in ("data", "output", "run_dir", "only_fold", "keep_fold_models", "fold_guards")}
