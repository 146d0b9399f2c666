"""The inference runtime: a model file in, P(tumor) per scan out. `predict`, `serve`, `evaluate` and the tests
all call `Predictor`, so every caller sees the same preprocessing, batching, threshold and heat map.

Here: decoding scans in parallel with the network, batching slices across scans, the guard's warnings and a
study's summary of its slices. The network itself (ONNX Runtime or PyTorch, and reading its outputs) is
`network.Network`; it needs no PyTorch for an .onnx model file (the bundled default).

A file that cannot be read is answered with an error on its own row; the rest of the batch still runs.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from braintriage import ood, verdicts
from braintriage.modelfile import BUNDLED_MODEL, file_digest, model_name, read_metadata
from braintriage.network import CORES, Network
from braintriage.preprocess import ImageReadError, preprocess
from braintriage.scans import ScanItem, Slice, items_from_paths

SMOOTHING = 3  # slices in the moving average of a study's slice scores
DECODE_THREADS = max(2, min(CORES, 8))
DECODED, SCORED = "decoded", "scored"  # the steps of Predictor.predict_in_steps
NATIVE_VIEW_SIDE = 1024  # the enlarged view of a scan: its own resolution, up to this many pixels a side
TOP_SLICES = 3  # most suspicious slices reported per study


@dataclass
class Prediction:
    path: str  # as given, or found under a given folder
    tumor_probability: float | None = None
    prediction: str | None = None  # "tumor" or "no_tumor" at the model's threshold
    type_probabilities: dict[str, float] | None = None  # for a model trained on tumor types
    error: str | None = None
    image: np.ndarray | None = None  # the model's view of the scan (uint8), when heat maps were asked for
    heatmap: np.ndarray | None = None  # class activation map in [0, 1], same size as `image`
    study: str | None = None  # for a DICOM series, multi-frame file or NIfTI volume
    slices: int = 1
    top_slices: list[str] = field(default_factory=list)  # the most suspicious slices, most suspicious first
    slice_probabilities: list[float | None] | None = None  # per slice, in slice order (studies only)
    # Set when the input does not look like a brain MRI slice: the prediction is then not to be trusted
    # (the web app shows the warning instead of a verdict).
    warning: str | None = None
    # The guard's score of the slice the verdict rests on, in units of its alarm threshold (ood.threshold_ratios):
    # how unlike the training scans it is; None without a guard.
    guard_ratio: float | None = None
    reliable: bool = True  # False when the verdict rests only on inputs that are not like brain MRI
    verdict: str = verdicts.ERROR  # one of verdicts.WORKLIST_ORDER: what the scan's reader acts on
    shown_type: str | None = None  # the tumor type to show (verdicts.shown_type), or "type uncertain"
    shown_slice: str | None = None  # a study: the label of the slice `image` shows (its most suspicious)
    slice_labels: list[str] | None = None  # a study: every slice's label, in slice order
    # For the clinic app's screen only (scans.ScanItem): never in the CLI table, a CSV file or a log.
    description: str | None = None
    identifiers: dict[str, str] | None = None
    suspicion: str | None = None  # the score in words (verdicts.suspicion)
    # With heat maps asked for: the slice `image` shows, to be decoded again at its own resolution only when an
    # enlarged view is wanted (native_view), and for a study every slice as the model saw it (None: unreadable).
    shown_source: Slice | None = field(default=None, repr=False)
    slice_images: list[np.ndarray | None] | None = None

    @property
    def predicted_type(self) -> str | None:
        if not self.type_probabilities:
            return None
        return max(self.type_probabilities, key=self.type_probabilities.get)


class Predictor:
    """A model file, read as its metadata says: the network (network.Network), the out-of-distribution guard,
    the threshold, band and type rule (ReadingRules); scans in, one Prediction per scan out."""

    def __init__(self, model_path: str | Path | None = None, batch_size: int = 32):
        self.model_path = Path(model_path) if model_path else BUNDLED_MODEL
        self.metadata = read_metadata(self.model_path)
        self.network = Network(self.model_path, self.metadata, batch_size)
        # Slices are decoded several at a time (PIL and numpy release the GIL), in their order.
        self._decoder = ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="decode")
        self.input_preprocess = self.network.input_preprocess
        self.preprocess = self.input_preprocess[0]
        self.rules = ReadingRules.from_metadata(self.metadata)
        self.ood = self.metadata.get("ood")  # out-of-distribution guard parameters, when calibrated
        self._ood_arrays = ood.as_arrays(self.ood) if self.ood else None
        # The pooled feature maps the guard reads: those it was fitted on, or for a new fit those `ood.DESIGNS`
        # name (out of `network.available_guard_layers`).
        self.guard_layers = ood.all_layers(self.ood)

    @functools.cached_property
    def model_id(self) -> str:
        """What a result names as its model: the network and the first 12 hex digits of the file's SHA-256
        (hashed when first asked for: a run that writes no table and no CSV never reads the file twice)."""
        return f"{model_name(self.metadata)} {file_digest(self.model_path)[:12]}"

    def predict_arrays(self, images_u8: np.ndarray | list[np.ndarray], heatmaps: bool = False
                       ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Preprocessed uint8 images (N, size, size) -> P(tumor) (N,), type probabilities (N, 4) or None,
        and with `heatmaps` the class activation maps (N, size, size) in [0, 1] (None where the
        architecture has no global-average-pool head). An ensemble takes a list: the same N scans preprocessed
        for each of its inputs (`input_preprocess`), in order."""
        return self.network.run(images_u8, heatmaps, self.guard_layers)[:3]

    def pooled_features(self, images_u8: np.ndarray | list[np.ndarray], layers: tuple[str, ...] | None = None
                        ) -> np.ndarray | None:
        """Feature maps averaged over space, side by side (N, C): what the out-of-distribution guard looks at.
        `layers` defaults to those of this model's guard (`guard_layers`)."""
        pooled = self.pooled_by_layer(images_u8, layers)
        return None if pooled is None else np.concatenate(list(pooled.values()), axis=1)

    def pooled_by_layer(self, images_u8: np.ndarray | list[np.ndarray], layers: tuple[str, ...] | None = None
                        ) -> dict[str, np.ndarray] | None:
        """`pooled_features` by layer name, in the order of `layers`; None where the network lacks one."""
        return self.network.run(images_u8, False, layers or self.guard_layers)[3]

    @property
    def batch_size(self) -> int:
        """Slices scored per call of the network (the web app sends a study this small in one turn)."""
        return self.network.batch_size

    @property
    def threshold(self) -> float:
        return self.rules.threshold

    @property
    def band(self) -> tuple[float, float]:
        return self.rules.band

    @property
    def class_names(self) -> list[str]:
        return self.rules.class_names

    def label(self, p_tumor: float) -> str:
        return self.rules.label(p_tumor)

    def predict_files(self, paths: list[str], heatmaps: bool = False) -> list[Prediction]:
        """One result per file path (a DICOM multi-frame file is one study); unreadable files get an error."""
        return self.predict_items([items_from_paths([p])[0] for p in paths], heatmaps)

    def predict_items(self, items: list[ScanItem], heatmaps: bool = False) -> list[Prediction]:
        """Score every slice of every item, in batches across items, then summarise each item. A study's
        verdict is the maximum of its slice scores smoothed over SMOOTHING neighbouring slices (one bright
        artefact on a single slice counts less than evidence on adjacent slices), with its TOP_SLICES most
        suspicious slices."""
        return [r for finished in self.predict_as_ready(items, heatmaps) for r in finished]

    def predict_as_ready(self, items: list[ScanItem], heatmaps: bool = False) -> Iterator[list[Prediction]]:
        """`predict_items` as it goes: after each batch, the results of the items it finished, in item order
        (the terminal table prints them while the next batch runs)."""
        for step in self._steps(items, heatmaps):
            if isinstance(step, list) and step:
                yield step

    def predict_in_steps(self, items: list[ScanItem], heatmaps: bool = False) -> Iterator[str | list[Prediction]]:
        """`predict_items` one batch of slices at a time: yields DECODED when a batch is decoded (the next step
        runs the model on it), SCORED when it is scored, and all the results last. The web app decodes outside
        its model lock and holds the lock for one batch at a time, so a 1,000-slice study lets a single scan
        through between its batches."""
        results = []
        for step in self._steps(items, heatmaps):
            if isinstance(step, list):
                results += step
            else:
                yield step
        yield results

    def _steps(self, items: list[ScanItem], heatmaps: bool) -> Iterator[str | list[Prediction]]:
        """The one scoring loop: DECODED and SCORED for each batch of slices, and after each batch the results
        of the items whose slices are now all done (an item that could not be listed is done at once)."""
        slices = [SliceResults.empty(len(it.slices)) for it in items]
        todo = [(i, j) for i, it in enumerate(items) if it.error is None for j in range(len(it.slices))]
        batches = [todo[k:k + self.batch_size] for k in range(0, len(todo), self.batch_size)]
        last_batch = {i: k // self.batch_size for k, (i, _) in enumerate(todo)}  # where each item's slices end
        finished = 0  # items summarised so far: always a prefix of `items`

        def summarised_up_to(batch: int) -> list[Prediction]:  # every item done once batch `batch` is
            nonlocal finished
            start = finished
            while finished < len(items) and last_batch.get(finished, -1) <= batch:
                finished += 1
            return [summarise(items[i], slices[i], self.rules) for i in range(start, finished)]

        def decoding(batch):  # started ahead: the next batch decodes while the model scores this one
            return [self._decoder.submit(self._decode, items[i].slices[j]) for i, j in batch]

        upcoming = decoding(batches[0]) if batches else []
        yield summarised_up_to(-1)
        for b, batch in enumerate(batches):
            decoded_batch = [f.result() for f in upcoming]
            upcoming = decoding(batches[b + 1]) if b + 1 < len(batches) else []
            ok = []
            for (i, j), decoded in zip(batch, decoded_batch):
                if isinstance(decoded, str):
                    slices[i].errors[j] = decoded
                else:
                    ok.append(((i, j), decoded))
            if ok:
                yield DECODED
                self._score_batch(ok, slices, heatmaps)
                yield SCORED
            yield summarised_up_to(b)

    def _decode(self, slice_: Slice) -> tuple[list[np.ndarray], ood.PixelFacts] | str:
        """One slice decoded and preprocessed for each model input, with what the guard reads off it as decoded
        (`ood.pixel_facts`); or the error message."""
        try:
            image = slice_.load()
            return [preprocess(image, config) for config in self.input_preprocess], ood.pixel_facts(image)
        except ImageReadError as e:
            return str(e)

    def _score_batch(self, decoded: list[tuple[tuple[int, int], tuple[list[np.ndarray], ood.PixelFacts]]],
                     slices: list[SliceResults], heatmaps: bool) -> None:
        """Run the network and the guard on one batch of decoded slices ((item, slice) index, (one image per
        model input, pixel facts)), and file each slice's score, view and warning under its item."""
        stacked = [np.stack(per_input) for per_input in zip(*(images for _, (images, _) in decoded))]
        facts = [slice_facts for _, (_, slice_facts) in decoded]
        p_tumor, types, cams, pooled = self.network.run(stacked, heatmaps, self.guard_layers)
        ratios = ood.ratios_for(pooled, self._ood_arrays)
        warnings = ood.warnings_for(stacked[0], pooled, self._ood_arrays, facts, ratios)
        for k, ((i, j), _) in enumerate(decoded):
            slices[i].alarms[j] = warnings[k]
            if ratios is not None:
                slices[i].guard_ratios[j] = float(ratios[k])
            if not np.isfinite(p_tumor[k]):  # a NaN is an error, never a verdict
                slices[i].errors[j] = "the model gave no valid score (not a number): its file may be broken"
                continue
            slices[i].scores[j] = float(p_tumor[k])
            slices[i].views[j] = (stacked[0][k] if heatmaps else None, None if cams is None else cams[k],
                                  None if types is None else types[k])


@dataclass(frozen=True)
class ReadingRules:
    """How a model file says its scores are read: the threshold, the uncertain band and the type display rule
    (operating_point.py; a model without a band has two outcomes), and the names of its classes."""
    threshold: float
    band: tuple[float, float]
    type_min_probability: float | None
    class_names: list[str]
    familiar_below: float | None = None  # the guard's (ood.py): above it a low score is not shown clear

    @classmethod
    def from_metadata(cls, metadata: dict) -> "ReadingRules":
        threshold = float(metadata["threshold"])
        band = metadata.get("uncertain_band") or {"low": threshold, "high": threshold}
        return cls(threshold, (float(band["low"]), float(band["high"])),
                   (metadata.get("type_display") or {}).get("min_probability"), metadata["class_names"],
                   (metadata.get("ood") or {}).get("familiar_below"))

    def label(self, p_tumor: float) -> str:
        return "tumor" if p_tumor >= self.threshold else "no_tumor"


@dataclass
class SliceResults:
    """What scoring found for each slice of one item, by slice index: a score or an error, and for a scored
    slice its view (image, heat map, type probabilities), out-of-distribution warning (None: looks like MRI) and
    guard score in units of its threshold."""
    scores: list[float | None]
    errors: list[str | None]
    views: dict[int, tuple] = field(default_factory=dict)
    alarms: dict[int, str | None] = field(default_factory=dict)
    guard_ratios: dict[int, float] = field(default_factory=dict)

    @classmethod
    def empty(cls, n: int) -> "SliceResults":
        return cls([None] * n, [None] * n)


def summarise(item: ScanItem, found: SliceResults, rules: ReadingRules) -> Prediction:
    """One item's result from its slices' scores: a study's verdict is its most suspicious slice after
    smoothing over neighbours, with slices that do not look like brain MRI left out (`usable_slices`)."""
    r = Prediction(path=item.path, study=item.study, slices=len(item.slices), description=item.description,
                   identifiers=item.identifiers)
    if item.error or not item.slices:
        r.error = item.error or "no images found"
        return r
    scores = found.scores
    readable = [j for j, score in enumerate(scores) if score is not None]
    if not readable:
        first = next(e for e in found.errors if e)
        r.error = first if len(scores) == 1 else f"none of {len(scores)} slices could be read: {first}"
        return r
    valid = usable_slices(readable, found.alarms, r)
    p = np.array([scores[j] for j in valid])
    smoothed = smooth(p) if item.is_study else p
    order = np.argsort(-smoothed, kind="stable")
    best = valid[order[0]]
    r.tumor_probability = float(smoothed[order[0]])
    r.prediction = rules.label(r.tumor_probability)
    r.guard_ratio = found.guard_ratios.get(best)
    image, cam, types = found.views[best]
    if types is not None:
        r.type_probabilities = {n: float(v) for n, v in zip(rules.class_names, types)}
    r.image, r.heatmap = image, cam
    if image is not None:
        r.shown_source = item.slices[best]
    if item.is_study:
        describe_study(r, item, found, [valid[k] for k in order[:TOP_SLICES]], best, len(readable))
    complete = len(scores) == len(readable)
    familiar = verdicts.is_familiar(r.guard_ratio, rules.familiar_below)
    r.verdict = verdicts.verdict(r.tumor_probability, r.reliable, rules.band, complete, familiar)
    if not familiar and r.tumor_probability < rules.band[0] and r.warning is None:
        r.warning = verdicts.UNFAMILIAR_NOTE
    r.suspicion = verdicts.suspicion(r.tumor_probability, rules.band)
    r.shown_type = verdicts.shown_type(r.verdict, r.type_probabilities, rules.type_min_probability)
    return r


def usable_slices(readable: list[int], alarms: dict[int, str | None], r: Prediction) -> list[int]:
    """The slices a verdict rests on: those that look like brain MRI, with a warning on `r` for the others; if
    none does (or the one image of a plain item does not), all of them, and `r` is marked unreliable."""
    in_distribution = [j for j in readable if alarms.get(j) is None]
    if in_distribution:
        if len(in_distribution) < len(readable):
            r.warning = f"{len(readable) - len(in_distribution)} of {len(readable)} slices left out: not like brain MRI"
        return in_distribution
    r.reliable = False
    r.warning = alarms[readable[0]] if len(readable) == 1 else \
        f"none of {len(readable)} slices looks like a brain MRI slice: prediction unreliable"
    return readable


def describe_study(r: Prediction, item: ScanItem, found: SliceResults, top: list[int], best: int,
                   readable: int) -> None:
    """A study's own fields: its most suspicious slices, every slice's score, label and view, and how many
    slices could not be read."""
    r.top_slices = [item.slices[j].label for j in top]
    r.slice_probabilities = found.scores
    r.shown_slice = item.slices[best].label
    r.slice_labels = [s.label for s in item.slices]
    if r.image is not None:
        r.slice_images = [found.views[j][0] if j in found.views else None for j in range(len(item.slices))]
    failed = len(found.scores) - readable
    if failed:
        r.error = f"{failed} of {len(found.scores)} slices could not be read; scored on the rest"


def native_view(slice_: Slice) -> np.ndarray | None:
    """A slice as decoded, for the enlarged view: its own resolution, scaled down to NATIVE_VIEW_SIDE."""
    try:
        image = slice_.load()
    except ImageReadError:
        return None
    image.thumbnail((NATIVE_VIEW_SIDE, NATIVE_VIEW_SIDE))
    return np.asarray(image.convert("L"))


def smooth(p: np.ndarray, window: int = SMOOTHING) -> np.ndarray:
    """Moving average along the slice axis, edges padded with the end values."""
    if len(p) < 2 or window < 2:
        return p
    half = window // 2
    padded = np.pad(p, half, mode="edge")
    return np.convolve(padded, np.ones(window) / window, mode="valid")
