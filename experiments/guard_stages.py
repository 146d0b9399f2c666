"""Which stage of an EfficientNet-Lite should the out-of-distribution guard read? (session 21)

    python experiments/guard_stages.py [--imagenet] runs/RUN [MORE ...]

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

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from guard_variants import guard_inputs  # noqa: E402

from braintriage import ood  # noqa: E402
from braintriage.modelfile import load_model  # noqa: E402
from braintriage.models import build_model, to_model_input  # noqa: E402

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
    return {k: np.concatenate(v) for k, v in out.items()}


def stage_features(run: Path, imagenet: bool = False) -> tuple[dict, dict]:
    cached = run / ("guard-stages-imagenet.npz" if imagenet else "guard-stages.npz")
    inputs = guard_inputs(run)
    if cached.exists():
        stored = np.load(cached)
        return {s: {k.split("/")[1]: stored[k] for k in stored.files if k.startswith(s + "/")} for s in SETS}, inputs
    torch.set_num_threads(2)
    model, meta = load_model(run / "model.safetensors")
    if imagenet:
        model = build_model(meta["architecture"], in_channels=1, pretrained=True).eval()
    feats = {s: stage_statistics(model, meta, inputs[s]) if len(inputs[s]) else {} for s in SETS}
    np.savez(cached, **{f"{s}/{k}": v for s in SETS for k, v in feats[s].items()})
    return feats, inputs


def designs(n_stages: int) -> dict[str, list[str]]:
    names = {f"stage {s} mean": [f"mean{s}"] for s in range(n_stages)}
    names.update({f"stage {s} mean+std": [f"mean{s}", f"std{s}"] for s in range(2, n_stages)})
    names.update({f"stages {a}+{b} mean": [f"mean{a}", f"mean{b}"] for a, b in ((2, 4), (3, 4), (2, 3), (1, 4))})
    return names


if __name__ == "__main__":
    imagenet = "--imagenet" in sys.argv
    for run in [Path(a) for a in sys.argv[1:] if a != "--imagenet"]:
        feats, inputs = stage_features(run, imagenet)
        n_stages = sum(k.startswith("mean") for k in feats["train"])
        print(f"{run}{', ImageNet weights' if imagenet else ''} (stage {n_stages - 1} is the head convolution; "
              "stage 4 is the guard's since session 18)\n"
              "| features | held-out alarms | non-MRI flagged (of 11) | least non-MRI score / threshold (which) | "
              "held-out alarms at that score |\n|---|---|---|---|---|")
        for name, keys in designs(n_stages).items():
            x = {s: np.concatenate([feats[s][k] for k in keys], axis=1) if feats[s] else None for s in SETS}
            params = ood.fit(x["train"], x["val"])
            ratios = ood.score(x["non_mri"], params) / params["threshold"]
            flagged = inputs["refused"] | (ratios > 1)
            candidates = np.where(~inputs["refused"])[0]
            least = candidates[np.argmin(ratios[candidates])]
            held = (ood.score(x["held_out"], params) / params["threshold"] if x["held_out"] is not None
                    else np.full(1, np.nan))
            print(f"| {name} | {np.mean(held > 1):.3f} | {flagged.sum()} | {ratios[least]:.2f} "
                  f"({inputs['non_mri_names'][least]}) | {np.mean(held >= ratios[least]):.3f} |")
