"""Which stage of an EfficientNet-Lite should the out-of-distribution guard read? (session 21)

    python experiments/guard_stages.py [--imagenet] runs/RUN [MORE ...]
    python experiments/guard_stages.py --design NAME --alarm-budget 0.03 runs/LSO_RUN ...  # the margin it allows
    python experiments/guard_stages.py --design NAME --margin M runs/RUN ...               # that guard, flagged
    python experiments/guard_stages.py --design A --margin M --design B --margin N runs/RUN  # either one alarms

The guard reads the pooled output of the stage before the last (112 channels). On weights trained with painted
lesions that stage lets a grey portrait photograph through (session 20: 0.93 of the threshold on the all-sources
run). Earlier stages are changed less by fine-tuning (the backbone learns at a lower rate) and still describe
texture more than class, so they might tell a photograph from a slice better. For each run this fits the guard's
model (`ood.fit`: 32 principal components, threshold 1.5 times the validation 99.5th percentile) on the pooled
output of each stage, on its mean and standard deviation over space, and on pairs of stages, using the images of
`guard_variants.guard_inputs`; columns as in guard_variants.py, and the input that scored least of the non-MRI
ones. Features are kept in RUN/guard-stages.npz. Exploration, not a rule: a design found here is adopted only by a
config whose rule names other weights. With --imagenet the features are those of the network as its ImageNet
weights leave it (not fine-tuned: the same for every run), on each run's images.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from guard_variants import guard_inputs, non_mri_inputs  # noqa: E402

from braintriage import ood  # noqa: E402
from braintriage.modelfile import load_model  # noqa: E402
from braintriage.models import build_model, quarter_means, to_model_input  # noqa: E402

WHOLE_IMAGE_MARGIN = 1.5  # the guard's margin in sessions 18-20, at which this script's tables were made
SETS = ("train", "val", "non_mri", "held_out")


def stage_ends(model) -> list[int]:
    """Index of the last block of each stage (every stage has its own number of output channels)."""
    channels = [b.project[1].out_channels for b in model.blocks]
    return [k for k in range(len(channels)) if k == len(channels) - 1 or channels[k + 1] != channels[k]]


@torch.no_grad()
def stage_statistics(model, meta: dict, images: np.ndarray, batch: int = 64) -> dict[str, np.ndarray]:
    """Per image, each stage's output (and the head convolution's) averaged over space, and its standard
    deviation over space."""
    mean, std = meta["input"]["normalization"]["mean"], meta["input"]["normalization"]["std"]
    ends = set(stage_ends(model))
    out: dict[str, list] = {}
    for i in range(0, len(images), batch):
        h = model.stem(to_model_input(torch.from_numpy(images[i:i + batch]), mean, std))
        maps = []
        for k, block in enumerate(model.blocks):
            h = block(h)
            if k in ends:
                maps.append(h)
        maps.append(model.head_conv(h))
        for s, m in enumerate(maps):
            out.setdefault(f"mean{s}", []).append(m.mean(dim=(2, 3)).numpy())
            out.setdefault(f"std{s}", []).append(m.std(dim=(2, 3)).numpy())
            # where in the image: the map averaged over each quarter (a layout a global mean discards)
            out.setdefault(f"grid{s}", []).append(quarter_means(m).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def stage_features(run: Path, imagenet: bool = False) -> tuple[dict, dict]:
    """Each set's `stage_statistics` (kept in RUN/guard-stages*.npz), and the non-MRI inputs' names and refusals
    (a second call decodes none of the training images)."""
    cached = run / ("guard-stages-imagenet-v2.npz" if imagenet else "guard-stages-v2.npz")
    if cached.exists():
        stored = np.load(cached)
        feats = {s: {k.split("/")[1]: stored[k] for k in stored.files if k.startswith(s + "/")} for s in SETS}
        return feats, non_mri_inputs(run)
    inputs = guard_inputs(run)
    torch.set_num_threads(2)
    model, meta = load_model(run / "model.safetensors")
    if imagenet:
        model = build_model(meta["architecture"], in_channels=1, pretrained=True).eval()
    feats = {s: stage_statistics(model, meta, inputs[s]) if len(inputs[s]) else {} for s in SETS}
    np.savez(cached, **{f"{s}/{k}": v for s in SETS for k, v in feats[s].items()})
    return feats, inputs


def designs(n_stages: int) -> dict[str, list[str]]:
    """Feature sets to fit a guard on: names -> the keys of `stage_statistics` side by side."""
    names = {f"stage {s} mean": [f"mean{s}"] for s in range(n_stages)}
    names.update({f"stage {s} mean+std": [f"mean{s}", f"std{s}"] for s in range(2, n_stages)})
    names.update({f"stages {a}+{b} mean": [f"mean{a}", f"mean{b}"] for a, b in ((2, 4), (3, 4), (2, 3), (1, 4))})
    names.update({f"stage {s} by quarter": [f"grid{s}"] for s in (3, 4, 5)})
    names["stage 4 mean + stage 4 by quarter"] = ["mean4", "grid4"]
    return names


def design_scores(feats: dict, keys: list[str]) -> tuple[dict, float]:
    """A guard's model fitted on the feature set `keys`: each set's scores in units of the validation 99.5th
    percentile (the guard's threshold is its margin times that)."""
    x = {s: np.concatenate([feats[s][k] for k in keys], axis=1) if feats[s] else None for s in SETS}
    params = ood.fit(x["train"], x["val"], margin=1.0)
    return {s: ood.score(x[s], params) / params["threshold"] if x[s] is not None else None for s in SETS}


def table(run: Path, feats: dict, inputs: dict, imagenet: bool) -> None:
    n_stages = sum(k.startswith("mean") for k in feats["train"])
    print(f"{run}{', ImageNet weights' if imagenet else ''} (stage {n_stages - 1} is the head convolution; "
          "stage 4 is the guard's since session 18)\n"
          "| features | held-out alarms | non-MRI flagged (of 11) | least non-MRI score / threshold (which) | "
          "held-out alarms at that score |\n|---|---|---|---|---|")
    for name, keys in designs(n_stages).items():
        scores = design_scores(feats, keys)
        ratios = scores["non_mri"] / WHOLE_IMAGE_MARGIN
        flagged = inputs["refused"] | (ratios > 1)
        candidates = np.where(~inputs["refused"])[0]
        least = candidates[np.argmin(ratios[candidates])]
        held = scores["held_out"] / WHOLE_IMAGE_MARGIN if scores["held_out"] is not None else np.full(1, np.nan)
        print(f"| {name} | {np.mean(held > 1):.3f} | {flagged.sum()} | {ratios[least]:.2f} "
              f"({inputs['non_mri_names'][least]}) | {np.mean(held >= ratios[least]):.3f} |")


def margin_for_budget(run: Path, feats: dict, design: str, budget: float) -> float:
    """One design on one run: the margin at which the held-out source's alarms reach `budget`."""
    held = design_scores(feats, designs(sum(k.startswith("mean") for k in feats["train"]))[design])["held_out"]
    found = float(np.quantile(held, 1 - budget))
    print(f"{run}: held-out alarms reach {budget:.3f} at margin {found:.3f}")
    return found


def either(run: Path, feats: dict, inputs: dict, names: list[str], margins: list[float]) -> None:
    """Guards of several designs at once, each at its margin: an input is flagged when any of them fires (one
    design alone is the guard as the product has it). 'Least at' is the non-MRI input nearest to getting through:
    its largest score over the designs, each in units of that design's threshold."""
    all_designs = designs(sum(k.startswith("mean") for k in feats["train"]))
    scored = [(design_scores(feats, all_designs[d]), m) for d, m in zip(names, margins)]  # each guard fitted once
    ratios = {s: np.max([scores[s] / m for scores, m in scored], axis=0)
              for s in ("val", "non_mri", "held_out") if feats[s]}
    flagged = inputs["refused"] | (ratios["non_mri"] > 1)
    let_through = [str(n) for n, f in zip(inputs["non_mri_names"], flagged) if not f]
    alarms = f"held-out alarms {np.mean(ratios['held_out'] > 1):.3f}; " if "held_out" in ratios else ""
    print(f"{run}: {alarms}validation alarms {np.mean(ratios['val'] > 1):.3f}; non-MRI flagged "
          f"{flagged.sum()} of {len(flagged)}, least at {ratios['non_mri'][~inputs['refused']].min():.2f} of "
          f"the threshold; let through: {', '.join(let_through) or 'none'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--imagenet", action="store_true")
    parser.add_argument("--design", action="append", help="one feature set of `designs` (its name), for "
                        "--alarm-budget or --margin; repeat it with one --margin each for guards that alarm together")
    parser.add_argument("--alarm-budget", type=float, help="print the margin at which held-out alarms reach this")
    parser.add_argument("--margin", type=float, action="append",
                        help="the guard at this margin (validation 99.5th percentiles), one per --design")
    args = parser.parse_args()
    if args.design and args.margin and len(args.margin) != len(args.design):
        parser.error("give one --margin per --design")
    if args.design and not args.margin and len(args.design) != 1:
        parser.error("--alarm-budget takes one --design")
    margins = []
    for run in args.runs:
        feats, inputs = stage_features(run, args.imagenet)
        if args.design and args.margin:
            either(run, feats, inputs, args.design, args.margin)
        elif args.design:
            margins.append(margin_for_budget(run, feats, args.design[0], args.alarm_budget))
        else:
            table(run, feats, inputs, args.imagenet)
    if args.design and not args.margin:
        print(f"mean margin {np.mean(margins):.3f}")
