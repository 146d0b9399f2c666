"""Out-of-distribution guard: does an input look like the brain MRI slices the model was trained on?

The model's own features of the training split, from the stage before its last, averaged over the whole image
and, for a second guard, over each quarter of it (`DESIGNS`), each dimension scaled by its training standard
deviation, are summarised by a principal-component model (mean, top components and their variances, and the
average variance left over). A new image's score is its Mahalanobis distance in that subspace plus its residual
off the subspace, both in units of the training variance. The alarm threshold is a margin times a high
percentile of the scores of the *validation* split (held-out training images), so it is calibrated on training
data only; `Testing` is used only to report the false-alarm rate.
Blank or near-constant images, images on a bright background, and heads of pixel noise are refused outright.

Why that stage and that margin (session 18, `docs/model.md`): the last stage is tuned to the classes, and a guard
reading it (as the guards of sessions 13-17 did, beside the stage before) learned "looks like the training
tumors": with Br35H held out, 98% of the Br35H slices it called "not a brain MRI" were tumors, mostly large
T2/FLAIR masses. The stage before still describes the slice (texture, layout) more than the class: scored there,
on the runs where this was chosen, photographs, graphics, noise and fragments landed at 1.76 times the validation
99.5th percentile or more, while held-out MRI slices of sequences the training sources share spread only somewhat
past it. The closest non-MRI input is a grey portrait photograph on black (about 1.5 times on some models: the
guard's weak spot; experiments/guard_variants.py).

Why each quarter (session 21; a guard of its own then, at 1.13): on weights trained with painted lesions the
whole-image mean let that portrait through on two of four seeds (0.93 and 0.95 of the threshold). Averaged over each
quarter the features keep where in the image a pattern lies (a portrait's shoulders sit where a slice has skull or
background), and held-out MRI slices spread less, so the margin shrinks: 1.13 is where the held-out Br35H alarms of
the two runs that chose the design reach 3%, what the whole-image guard had there. By a rule written first
(`docs/model.md`, session 21) all 11 non-MRI test inputs were then flagged on seven other runs' weights, with
held-out alarms 0.032-0.043; the closest input lands at 1.00-1.30 of the threshold: the weak spot narrows, it does
not close. Its margin rests on Br35H alone: on `Testing`, for the record, the quarter guard of one lesion-recipe
model warned on 14 of 394 real scans (7% of the unleaked tumors), where the bundled model's whole-image guard warns
on 1. Older model files keep the layers and threshold they were fitted with (`layers_of`).

Two guards at once, and their margins (session 22): a guard may carry further guards (`"also"`), each with its own
layers and threshold; an input is flagged when any of them fires (`guards_of`). A new fit gets one per entry of
`DESIGNS`: the stage before the last averaged over the whole image at 1.524, and over each quarter at 1.310. Each
margin is the larger of those at which held-out alarms reach 3% on Br35H (two leave-Br35H-out runs) and 1% on the
seed set (a leave-seed-set-out run, whose collections `Testing` shares): alone, each guard missed one non-MRI input
on two of four lesion-recipe seeds (the whole image the portrait, the quarters a colour logo), never the same one.
By a rule written first (`docs/model.md`, session 22) the pair kept held-out alarms at 0.029-0.034 (Br35H) and
0.012 (seed set) and flagged all 11 on two new seeds, on one of which each guard alone missed one.
Everything is numpy: the runtime needs no PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from braintriage.preprocess import percentile

COMPONENTS = 32
PERCENTILE = 99.5  # of validation scores
# The guards a new fit gets: (pooled feature maps read, margin), the threshold being the margin times the
# validation percentile (room for MRI from other scanners and sites); an input is flagged when any fires.
# (1.5 on the whole-image mean, sessions 18-20; each fitted guard stores its own layers, margin and threshold.)
DESIGNS: tuple[tuple[tuple[str, ...], float], ...] = ((("penultimate_stage",), 1.524),
                                                      (("penultimate_quarters",), 1.310))
LAYERS, MARGIN = DESIGNS[0]  # the first guard's: `fit`'s defaults
MIN_STD = 2.0  # grey levels: below this a preprocessed image is blank
# The familiarity rule (verdicts.is_familiar; off unless a model file sets `familiar_below`, `calibrate-ood
# --familiar-percentile`): a low score on a scan whose guard score (in units of its threshold) lies above that of
# this percentage of the validation split's normals is not shown clear. Over the normals, not all images: normals
# are less alike than tumors. Each new fit records the normals' scores at NORMAL_PERCENTILES, so kept held-out runs
# can be read with the rule at any of them after their model is gone (docs/model.md, session 40).
FAMILIAR_PERCENTILE = 95.0
NORMAL_PERCENTILES = (80, 90, 95, 99)


def fit(train_features: np.ndarray, val_features: np.ndarray, components: int = COMPONENTS,
        percentile: float = PERCENTILE, layers: tuple[str, ...] = LAYERS, margin: float = MARGIN) -> dict:
    """OOD parameters from pooled features (N, C) of the training split, thresholded on the validation split
    (`margin` times its `percentile`). `layers` records which pooled feature maps the columns are (`layers_of`)."""
    scale = feature_scale(train_features)
    train_features = train_features / scale
    mean = train_features.mean(axis=0)
    centred = train_features - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variances = singular ** 2 / max(len(train_features) - 1, 1)
    k = min(components, len(variances) - 1)
    params = {"layers": list(layers), "scale": scale.tolist(), "mean": mean.tolist(),
              "components": vt[:k].tolist(), "variances": variances[:k].tolist(),
              "residual_variance": float(max(variances[k:].mean(), 1e-12)), "percentile": percentile,
              "margin": margin}
    val_scores = score(val_features, params)
    params["threshold"] = float(margin * np.percentile(val_scores, percentile))
    params["validation_false_alarm_rate"] = float((val_scores > params["threshold"]).mean())
    return params


def designs_for(available: tuple[str, ...]) -> tuple[tuple[tuple[str, ...], float], ...]:
    """The `DESIGNS` a network offering the pooled maps `available` can feed; if none, the first design's margin
    on the first map it offers (an ONNX file exported before the designs' layers existed)."""
    return tuple(d for d in DESIGNS if set(d[0]) <= set(available)) or ((available[:1], DESIGNS[0][1]),)


def fit_designs(train_pooled: dict[str, np.ndarray], val_pooled: dict[str, np.ndarray],
                designs: tuple = DESIGNS, normal_rows: np.ndarray | None = None,
                familiar_percentile: float | None = None) -> dict:
    """One guard per design (`fit`) on pooled feature maps by layer name (`Predictor.pooled_by_layer`), the
    first carrying the others as `"also"`; its `validation_false_alarm_rate` is then that of them all together.
    With `normal_rows` (the validation rows that are normals), their guard scores at NORMAL_PERCENTILES too, and
    with `familiar_percentile` the familiarity rule's `familiar_below` at that percentile (verdicts.is_familiar)."""
    fitted = [fit(_side_by_side(train_pooled, layers), _side_by_side(val_pooled, layers), layers=layers,
                  margin=margin) for layers, margin in designs]
    guard = fitted[0]
    if len(fitted) > 1:
        guard["also"] = fitted[1:]
        guard["validation_false_alarm_rate"] = float(np.mean(alarms(val_pooled, guard)))
    if normal_rows is not None and len(normal_rows):
        normal_ratios = threshold_ratios(val_pooled, guard)[normal_rows]
        guard["validation_normal_ratios"] = {str(q): familiar_below(normal_ratios, q) for q in NORMAL_PERCENTILES}
        if familiar_percentile is not None:
            guard.update(familiar_below=familiar_below(normal_ratios, familiar_percentile),
                         familiar_percentile=familiar_percentile)
    return guard


def familiar_below(normal_ratios: np.ndarray, percentile: float = FAMILIAR_PERCENTILE) -> float:
    """The guard score (`threshold_ratios`) under which `percentile` of the validation normals' scores lie."""
    return float(np.percentile(normal_ratios, percentile))


def _side_by_side(pooled: dict[str, np.ndarray], layers: tuple[str, ...] | list[str]) -> np.ndarray:
    return np.concatenate([pooled[name] for name in layers], axis=1)


def guards_of(params: dict | None) -> list[dict]:
    """The guard and those it alarms together with: an input is flagged when any of them fires."""
    return [params, *params.get("also", [])] if params else []


def alarms(pooled: dict[str, np.ndarray], params: dict) -> np.ndarray:
    """Per image, whether any of the guards fires (`pooled`: feature maps by layer name)."""
    return threshold_ratios(pooled, params) > 1


def threshold_ratios(pooled: dict[str, np.ndarray], params: dict) -> np.ndarray:
    """Per image, each guard's score in units of its threshold, the largest over the guards: above 1, it fires."""
    return np.max([score(_side_by_side(pooled, layers_of(g)), g) / g["threshold"] for g in guards_of(params)], axis=0)


def feature_scale(train_features: np.ndarray) -> np.ndarray:
    """Each dimension's training standard deviation, by which the guard standardises it, so a stage with large
    activations does not drown the other; a floor keeps near-dead channels from turning rounding noise into
    alarms."""
    std = train_features.std(axis=0)
    return np.maximum(std, 1e-3 * std.max())


def as_arrays(params: dict) -> dict:
    """The guard's parameters with their lists as numpy arrays, converted once (a model file stores lists;
    converting them on every batch cost as much as the scoring)."""
    arrays = {k: np.asarray(v) if k in ("mean", "components", "variances", "scale") else v for k, v in params.items()}
    if "also" in params:
        arrays["also"] = [as_arrays(g) for g in params["also"]]
    return arrays


def score(features: np.ndarray, params: dict) -> np.ndarray:
    """Novelty score per row of pooled features: subspace Mahalanobis + residual, per dimension."""
    mean, comps = np.asarray(params["mean"]), np.asarray(params["components"])
    if "scale" in params:
        features = features / np.asarray(params["scale"])
    centred = features - mean
    # einsum, not `@`: a matrix product this size wakes OpenBLAS's thread pool, whose threads then spin for a
    # while and took a fifth of `predict`'s time from the network's own threads on 2 cores; einsum's own loop
    # stays on this thread.
    projected = np.einsum("nc,kc->nk", centred, comps)
    inside = (projected ** 2 / np.asarray(params["variances"])).sum(axis=1)
    residual = ((centred - np.einsum("nk,kc->nc", projected, comps)) ** 2).sum(axis=1) / params["residual_variance"]
    return (inside + residual) / features.shape[1]


def layers_of(params: dict | None) -> tuple[str, ...]:
    """The pooled feature maps a guard was fitted on; guards fitted before there was a choice used the last."""
    return tuple(params.get("layers", ["last_stage"])) if params else LAYERS


def all_layers(params: dict | None) -> tuple[str, ...]:
    """The pooled feature maps that a guard and those it alarms together with read, each once, in order (for no
    guard yet: those a new fit's `DESIGNS` read)."""
    if not params:
        return designs_layers(DESIGNS)
    return tuple(dict.fromkeys(name for g in guards_of(params) for name in layers_of(g)))


def designs_layers(designs: tuple[tuple[tuple[str, ...], float], ...]) -> tuple[str, ...]:
    """The pooled feature maps a set of designs reads, each once, in order."""
    return tuple(dict.fromkeys(name for layers, _ in designs for name in layers))


# MRI slices are shown on a dark background: the median of the outer frame of each of the 3,945 training images
# (seed Training, Br35H, figshare), as decoded, is at most 169 of 255, and below 100 for all but ten. An image
# whose frame is brighter than this (an inverted scan, a photo, a page) is not what the model was trained on,
# whatever its features say.
MAX_BORDER_LEVEL = 180
BORDER_FRACTION = 0.05

# Inside the head of a real slice neighbouring pixels are alike: anatomy varies over many pixels. Over the 3,945
# training images (as decoded, over the pixels above NOISE_FOREGROUND) the smaller of the horizontal and vertical
# lag-1 correlations is at least 0.36 (a sharpened, noisy Br35H slice; medians 0.90-0.96); independent pixel noise
# shaped like a head is near 0, with a bright blob painted on it 0.19 at most. Below NOISE_CORRELATION a slice is
# mostly noise, whatever the features say: a feature guard reads such phantoms as MRI on some seeds and not others
# (session 57, docs/model.md). Read at the slice's own resolution: averaged over 2x2 blocks, a sharpened slice's
# grain turns noise-like (Br35H's yes/y44.jpg: 0.45 as decoded, 0.23 averaged).
NOISE_CORRELATION = 0.25
NOISE_FOREGROUND = 20  # grey levels: above the background of a slice
# Pixel pairs are sampled on a grid of at most this many rows and columns (`neighbour_correlation`): over the 3,945
# training images the sample's value is within 0.10 of every pair's (99% within 0.015), in 0.7 ms a 512-pixel slice.
NOISE_GRID = 256
NOISE_MIN_PAIRS = 50  # fewer pixel pairs above the background give no value (and no warning)


@dataclass(frozen=True)
class PixelFacts:
    """What the refusals before the features read off a slice as decoded, before preprocessing pads and resizes
    it (padding would hide a bright frame; resizing would smooth noise)."""
    border_level: float
    neighbour_correlation: float  # nan where there is too little above the background to tell


def pixel_facts(image) -> PixelFacts:
    """`PixelFacts` of a slice as decoded: 2D uint8 array or grayscale PIL image."""
    pixels = np.asarray(image)
    pixels = pixels.reshape(pixels.shape[-2:])
    return PixelFacts(border_level(pixels), neighbour_correlation(pixels))


def border_level(image) -> float:
    """Median intensity of the outer frame (BORDER_FRACTION of the shorter side) of a slice as decoded, before
    preprocessing pads it to a square: 2D uint8 array or grayscale PIL image."""
    image = np.asarray(image)
    image = image.reshape(image.shape[-2:])
    w = max(1, round(BORDER_FRACTION * min(image.shape)))
    frame = np.concatenate([image[:w].ravel(), image[-w:].ravel(), image[:, :w].ravel(), image[:, -w:].ravel()])
    return percentile(frame, 50)


def neighbour_correlation(image) -> float:
    """The smaller of the correlations of horizontally and of vertically neighbouring pixels, over the pairs both
    above NOISE_FOREGROUND, of a 2D uint8 slice at its own resolution; nan with fewer than NOISE_MIN_PAIRS pairs,
    or where the pixels there do not vary. The pairs start on a grid of at most NOISE_GRID x NOISE_GRID pixels: a
    sample, not every pair, so the work is bounded at any size (every pair of a 512-pixel slice took 18 ms, seven
    times its decoding, and cost a quarter of `predict`'s images/s)."""
    pixels = np.asarray(image)
    rows, cols = pixels.shape[0] - 1, pixels.shape[1] - 1
    if rows < 1 or cols < 1:
        return float("nan")
    step_r, step_c = (_odd(-(-n // NOISE_GRID)) for n in (rows, cols))
    start = pixels[0:rows:step_r, 0:cols:step_c].astype(np.float32)
    correlations = []
    for neighbour in (pixels[0:rows:step_r, 1:cols + 1:step_c], pixels[1:rows + 1:step_r, 0:cols:step_c]):
        neighbour = neighbour.astype(np.float32)
        both = (start > NOISE_FOREGROUND) & (neighbour > NOISE_FOREGROUND)
        if both.sum() < NOISE_MIN_PAIRS:
            return float("nan")
        a, b = start[both], neighbour[both]
        a, b = a - a.mean(), b - b.mean()
        spread = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
        if spread == 0:
            return float("nan")
        correlations.append(float(np.dot(a, b)) / spread)
    return min(correlations)


def _odd(step: int) -> int:
    """A sampling step made odd: an even one puts every sampled pair at the same place in JPEG's 8-pixel blocks."""
    return step + 1 if step > 1 and step % 2 == 0 else step


def pixel_warning(image_u8: np.ndarray, facts: PixelFacts | None) -> str | None:
    """The refusal that needs no features, or None: a blank preprocessed image; and, from the slice as decoded
    (`facts`, where the caller measured them), a bright frame or a head of pixel noise."""
    if image_u8.std() < MIN_STD:
        return "blank or near-constant image, not a brain MRI slice: prediction unreliable"
    if facts is not None and facts.border_level > MAX_BORDER_LEVEL:
        return ("the background is not dark, as it is around a brain MRI slice (an inverted image, a photo or a "
                "document?): prediction unreliable")
    if facts is not None and facts.neighbour_correlation < NOISE_CORRELATION:  # False for nan
        return ("the image is mostly pixel noise (neighbouring pixels hardly alike, unlike across the anatomy of a "
                "brain MRI slice): prediction unreliable")
    return None


def ratios_for(pooled: dict[str, np.ndarray] | None, params: dict | None) -> np.ndarray | None:
    """`threshold_ratios`, or None where there is no guard or no feature maps to read."""
    return threshold_ratios(pooled, params) if params and pooled is not None else None


def warnings_for(images_u8: np.ndarray, pooled: dict[str, np.ndarray] | None, params: dict | None,
                 facts: list[PixelFacts] | None = None, ratios: np.ndarray | None = None) -> list[str | None]:
    """A warning per image, or None where it looks like the training data. `pooled`: the images' feature maps
    by layer name (those `all_layers(params)` names); `facts`: each slice's `pixel_facts` as decoded, where the
    caller measured them; `ratios`: `ratios_for(pooled, params)`, where the caller already has them."""
    out: list[str | None] = []
    ratios = ratios_for(pooled, params) if ratios is None else ratios
    for i, image in enumerate(images_u8):
        refusal = pixel_warning(image, None if facts is None else facts[i])
        if refusal is not None:
            out.append(refusal)
        elif ratios is not None and ratios[i] > 1:
            out.append(f"does not look like the brain MRI slices the model was trained on (out-of-distribution "
                       f"score {ratios[i]:.2f} times its threshold): prediction unreliable")
        else:
            out.append(None)
    return out
