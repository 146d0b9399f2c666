"""The model card: a Markdown page generated from a model file's metadata and an evaluation report.

`braintriage model-card --data TEST_DATA --output MODEL_CARD.md` evaluates the model and writes the card,
so its numbers are always the ones measured, never typed in by hand.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from braintriage import ood, verdicts
from braintriage.evaluate import read_held_out_scores
from braintriage.inference import ReadingRules
from braintriage.metrics import METRIC_NAMES, binary_metrics, threshold_for_specificity
from braintriage.modelfile import BUNDLED_MODEL, ModelFileError
from braintriage.models import build_model, count_parameters
from braintriage.operating_point import out_of_fold_rows, out_of_fold_scores, out_of_fold_sources
from braintriage.preprocess import PreprocessConfig


def _f(v) -> str:
    return "n/a" if v is None or v != v else f"{v:.3f}"


def _metric_table(report: dict) -> list[str]:
    un = report.get("unleaked") or {}
    lines = ["| metric | all test images | unleaked subset |", "|---|---|---|"]
    for name in METRIC_NAMES:
        def cell(block):
            if not block:
                return "n/a"
            v, (lo, hi) = block["metrics"][name], block["ci95"][name]
            return f"{_f(v)} ({_f(lo)}-{_f(hi)})" if v == v else "n/a"
        lines.append(f"| {name} | {cell(report)} | {cell(un)} |")
    if "type_accuracy" in report:
        def type_cell(block):
            if "type_accuracy" not in block:
                return "n/a"
            lo, hi = block["type_accuracy_ci95"]
            return f"{_f(block['type_accuracy'])} ({_f(lo)}-{_f(hi)})"
        lines.append(f"| tumor-type accuracy (4 classes) | {type_cell(report)} | {type_cell(un)} |")
    m, u = report["metrics"], un.get("metrics")
    lines.append(f"| images (tumor / no tumor) | {m['n']} ({m['n_tumor']} / {m['n_no_tumor']}) | "
                 + (f"{u['n']} ({u['n_tumor']} / {u['n_no_tumor']}) |" if u else "n/a |"))
    return lines


def _guard_sentence(metadata: dict, report: dict) -> str:
    guard = metadata.get("ood")
    if not guard:
        return ("The model scores anything it is given: photos, other body parts or blank images get a "
                "probability too, with no warning. Check that the input is a brain MRI slice.")
    measured = report.get("ood_guard") or {}
    rate = (f" On this evaluation it flagged {measured['flagged']} of {len(report['predictions'])} real scans "
            f"({measured['false_alarm_rate']:.1%})" + (f", {measured['unleaked_false_alarm_rate']:.1%} of the "
            "unleaked ones" if measured.get("unleaked_false_alarm_rate") is not None else "") + ".") if measured else ""

    def layers(g: dict) -> str:
        return " and ".join(name.replace("_", " ") for name in ood.layers_of(g))

    def threshold(g: dict) -> str:
        return ("threshold at " + (f"{g['margin']:g} times " if g.get("margin", 1) != 1 else "") +
                f"the {g['percentile']}th percentile of validation images")

    guards = ood.guards_of(guard)
    what = (f"distance of the model's pooled features, {layers(guard)}, from those of the training split; "
            f"{threshold(guard)}" if len(guards) == 1 else
            "distances of the model's pooled features from those of the training split, one per reading: " +
            "; ".join(f"{layers(g)}, {threshold(g)}" for g in guards) + "; an alarm when any fires")
    return ("An out-of-distribution guard (" + what + ") warns when an input does not look like a brain MRI slice; "
            "blank images, images whose outer frame is not dark and heads of pixel noise always. It can miss inputs that share a slice's "
            "look (a bright round or banded shape on black: in this project's checks a flower close-up passed an "
            "earlier model's guard), "
            "so check that inputs are brain MRI slices." + rate)


def _shift_sentence(report: dict) -> str:
    un = report.get("unleaked")
    if not un or un["metrics"]["n_tumor"] == 0:
        return "this evaluation had no unleaked tumors to measure it on."
    missed_all = 1 - report["metrics"]["sensitivity"]
    missed_un = 1 - un["metrics"]["sensitivity"]
    return (f"on the {un['metrics']['n_tumor']} unleaked test tumors (no near-copy in training) it missed "
            f"{missed_un:.1%}, against {missed_all:.1%} of all test tumors.")


def _preprocess_steps(preprocess: dict) -> str:
    """The optional preprocessing steps a model file records, in the order `preprocess` applies them
    (settings a model file lacks take PreprocessConfig's defaults, as at prediction time)."""
    config = PreprocessConfig.from_dict(preprocess)
    steps = [(config.equalize, "histogram-equalised (foreground)"), (config.crop_to_head, "cropped to the head"),
             (config.keep_aspect, "padded to a square")]
    return "".join(f"{text}, " for on, text in steps if on)


def _ensemble_lines(metadata: dict) -> list[str]:
    """For an ensemble: one line per member (what it reads, how it was trained, its own validation)."""
    members = metadata.get("ensemble", {}).get("members", [])
    lines = [f"- Ensemble of {len(members)} networks: the {metadata['ensemble']['combine']}. The heat map and the "
             "out-of-distribution guard read the first one; the recipe below is the first one's."] if members else []
    for k, m in enumerate(members):
        cfg = m["training"].get("config", {})
        aug = {key: v for key, v in cfg.get("augment", {}).items() if v}
        v = m.get("validation_metrics") or {}
        lines.append(
            f"  - Member {k + 1}: `{m['architecture']}`, weights {m['weights']}; input "
            f"{_preprocess_steps(m['preprocess'])}resized to {m['preprocess']['size']}x{m['preprocess']['size']}; "
            f"{m['training'].get('epochs_run')} epochs, seed {cfg.get('seed')}, augmentation "
            f"{', '.join(f'{key} {val}' for key, val in aug.items())}; trained in {m['training'].get('seconds')} s "
            f"on {m['training'].get('device')}; validation sensitivity {_f(v.get('sensitivity'))}, "
            f"specificity {_f(v.get('specificity'))} at its own threshold {v.get('threshold')}.")
    return lines


def _operating_point_lines(metadata: dict) -> list[str]:
    """Where a threshold set by `braintriage threshold` came from, and what it gave out of fold."""
    point = metadata.get("operating_point")
    if not point:
        return []
    cv, oof, nested = point["cross_validation"], point["out_of_fold"], point["nested_specificity"]
    (tn, fp), (fn, tp) = oof["confusion_matrix"]
    return [f"- Operating point: read off the out-of-fold predictions of a grouped {cv['folds']}-fold "
            f"cross-validation of this recipe on the same data ({cv['images']} images, {cv['normals']} normals; "
            f"{', '.join(cv.get('hardware') or [])}): specificity {_f(oof['specificity'])} ({tn} of {tn + fp} "
            f"normals), sensitivity {_f(oof['sensitivity'])} ({fn} tumors missed); each fold's normals at the "
            f"threshold the other folds set: specificity {_f(nested['specificity'])}. Threshold before: "
            f"{point['previous_threshold']:.3f} ({point.get('previous_threshold_rule') or ''})."]


def _verdict_lines(metadata: dict, report: dict) -> list[str]:
    """The four outcomes: the uncertain band and the type display rule, with where they came from and what
    they gave on the card's test data."""
    band, shown = metadata.get("uncertain_band"), metadata.get("type_display")
    if not band:
        return [f"- Verdicts: tumor suspected at P(tumor) >= {metadata['threshold']:.3f}, else no tumor detected "
                "(no uncertain band in this model file); could not be assessed where the guard flags the input."]
    oof = band["out_of_fold"]
    lines = [f"- Verdicts: **tumor suspected** at P(tumor) >= {band['high']:.3f}; **uncertain** (needs a human read) "
             f"from {band['low']:.3f}; **no tumor detected** below; **could not be assessed** where the guard flags "
             f"the input. The band: {band['rule']}; out of fold it holds {oof['inside']} of {oof['images']} images "
             f"({oof['tumors_inside']} tumors, {oof['normals_inside']} normals), {oof['tumors_below']} tumors score "
             f"below it and {oof['normals_above']} normals above it"
             + (f"; {oof['normals_below']} normals score below it (shown clear)" if "normals_below" in oof else "")
             + "." + _familiarity_sentence(metadata.get("ood") or {})]
    if shown:
        lines.append(f"- Tumor type: shown only for a suspected tumor, when the most likely type has "
                     f"P(type | tumor) >= {shown['min_probability']:.3f}, the lowest at which out of fold the shown "
                     f"type was right >= {shown['target_precision']:g} of the time ({shown['out_of_fold']['shown']} of "
                     f"{shown['out_of_fold']['suspected_with_known_type']} suspected tumors of known type, precision "
                     f"{_f(shown['out_of_fold']['precision'])}); otherwise \"type uncertain\".")
    for label, counts in (("On the test data below", report.get("verdicts")),
                          ("On its unleaked subset", (report.get("unleaked") or {}).get("verdicts"))):
        if counts:
            cells = ", ".join(f"{v.replace('_', ' ')} {c['tumor'] + c['no_tumor']} ({c['tumor']} tumors, "
                              f"{c['no_tumor']} normals)" for v, c in counts["by_verdict"].items())
            right = (f"; types shown {counts['types_shown']}, right {counts['types_shown_right']} "
                     f"({_f(counts['types_shown_right'] / counts['types_shown'])})" if counts["types_shown"] else "")
            lines.append(f"- {label}: {cells}{right}.")
    return lines


def _familiarity_sentence(guard: dict) -> str:
    """The familiarity rule, where this model reads with it (verdicts.is_familiar)."""
    if guard.get("familiar_below") is None:
        return ""
    share = f"{guard['familiar_percentile']:g}% of" if "familiar_percentile" in guard else "most"
    return (f" A score below the band on a scan less like the training scans than {share} the validation normals "
            f"(guard score above {guard['familiar_below']:.3f} of its alarm threshold) reads uncertain, not clear.")


def _training_data_lines(t: dict) -> list[str]:
    """The training sources with their counts (a model trained on several records each), else the seed set."""
    sources = t.get("sources")
    split = (f"{t['train_images']} for training and {t['validation_images']} for validation, "
             f"{t.get('validation_split', '')}.")
    if not sources:
        return [f"- The public \"Brain Tumor Classification (MRI)\" dataset (Bhuvaji et al., Kaggle/GitHub), "
                f"`Training` split only: {t['images']} images (fingerprint `{t['data_fingerprint'][:16]}...`), "
                + split]
    lines = [f"- {len(sources)} sources, {t['images']} images (fingerprint `{t['data_fingerprint'][:16]}...`), "
             + split + (f" Held out of training: `{t['held_out_source']}`." if t.get("held_out_source") else ""),
             "", "| source | images | tumors (glioma / meningioma / pituitary / type unknown) | no tumor | "
             "fingerprint |", "|---|---|---|---|---|"]
    for name, c in sources.items():
        types = c.get("types", {})
        lines.append(f"| `{name}` | {c['images']} | {c['tumor']} ({types.get('glioma', 0)} / "
                     f"{types.get('meningioma', 0)} / {types.get('pituitary', 0)} / {c['tumor_type_unknown']}) | "
                     f"{c['no_tumor']} | `{(c.get('fingerprint') or '')[:12]}` |")
    return lines + [""]


def _recipe_extras(cfg: dict) -> str:
    """The training options beyond augmentation that change what a model learns, as the recipe line's tail."""
    extras = ""
    if cfg.get("synthetic_lesions"):
        extras += (f"; painted masses on {cfg['synthetic_lesions']} of the training normals"
                   + (" (as added copies)" if cfg.get("lesion_copies") else "")
                   + (f" from epoch {cfg['lesions_from_epoch']}" if cfg.get("lesions_from_epoch") else "")
                   + (f", {cfg['infiltrative_lesions']} of them infiltrative" if cfg.get("infiltrative_lesions") else ""))
    if cfg.get("style_mixing"):
        extras += f"; early feature styles mixed between the batch's images in {cfg['style_mixing']} of the steps"
    if cfg.get("frozen_blocks") is not None:
        extras += f"; the stem and first {cfg['frozen_blocks']} blocks kept as loaded"
    return extras


def leave_source_out_rows(paths: list[Path]) -> list[dict]:
    """The rows of `holdout.json` files (train --holdout-source), each named by its run folder, which names the
    recipe (experiments/run.py makes folders CONFIG-sSEED): rows of different recipes stay told apart. Where
    experiments/run.py kept the run's held-out scores beside it (scores.csv.gz), the row carries them too."""
    rows = []
    for p in map(Path, paths):
        row = {"run": p.resolve().parent.name, **json.loads(p.read_text())}
        if (p.parent / "scores.csv.gz").exists():
            row["scores"] = read_held_out_scores(p.parent / "scores.csv.gz")
        rows.append(row)
    return rows


def held_out_verdicts(rows: list[dict], metadata: dict) -> list[dict]:
    """For each row with kept scores, what the app would have shown for the held-out source: its images read with
    this model's threshold and band (and that run's guard flags), as if that run's model were shipped with them;
    where this model reads with the familiarity rule, with it too, at the run's own guard score of the same
    percentile of its validation normals (where the run kept them). Counts per verdict, for tumors and normals."""
    band = ReadingRules.from_metadata(metadata).band  # as the app reads this model's scores
    percentile = (metadata.get("ood") or {}).get("familiar_percentile")
    counted = []
    for r in (r for r in rows if "scores" in r):
        s = r["scores"]
        below = (r.get("guard_validation_normal_ratios") or {}).get(f"{percentile:g}") if percentile else None
        outcomes = verdicts.of_scores(s["p_tumor"], s["guard_flagged"], band, s["guard_ratio"], below)
        counted.append({"run": r["run"], "held_out_source": r["held_out_source"],
                        "images": {"tumors": int(s["tumor"].sum()), "normals": int((~s["tumor"]).sum())},
                        "verdicts": {kind: Counter(o for o, t in zip(outcomes, s["tumor"]) if t == (kind == "tumors"))
                                     for kind in ("tumors", "normals")}})
    return counted


def readings_without_the_source(rows: list[dict], cv_dirs: list[Path], specificity: float = 0.95) -> list[dict]:
    """Each kept-scores row read at the threshold chosen without its held-out source: the shipping rule (out-of-fold
    specificity >= `specificity`) applied to a cross-validation of the recipe over the other sources only, the
    threshold a model trained without that source would have shipped with (issue 21's reading). A CV reads the
    rows of the sources none of its folds held; one that held every row's source is refused."""
    readings = []
    for cv_dir in map(Path, cv_dirs):
        oof = out_of_fold_rows(cv_dir)
        _, y, p = out_of_fold_scores(oof)
        threshold = float(threshold_for_specificity(y, p, specificity))  # the shipping rule's, as threshold_from_cv
        seen = set(out_of_fold_sources(oof))
        unseen = [r for r in rows if "scores" in r and r["held_out_source"] not in seen]
        if not unseen:
            raise ModelFileError(f"{cv_dir} trained on every held-out source with kept scores ({', '.join(sorted(seen))}): "
                                 "no threshold chosen without one")
        for r in unseen:
            s = r["scores"]
            scored = np.isfinite(s["p_tumor"])  # an unreadable image has no score
            (tn, fp), (fn, tp) = binary_metrics(s["tumor"][scored].astype(int), s["p_tumor"][scored],
                                                threshold)["confusion_matrix"]
            readings.append({"run": r["run"], "held_out_source": r["held_out_source"], "cv": cv_dir.name,
                             "threshold": threshold, "tumors_found": int(tp), "tumors": int(tp + fn),
                             "normals_cleared": int(tn), "normals": int(tn + fp)})
    return readings


def _pooled_by_source(readings: list[dict]) -> dict[tuple[str, str], dict]:
    """readings_without_the_source summed per held-out source and CV (in order of first reading): tumors found and
    normals cleared over its runs (counted), each run's sensitivity, and the CV's threshold. Two CVs of one recipe (on
    two set-ups, say) choose two thresholds: their readings are pooled apart, never mixed."""
    pooled: dict[tuple[str, str], dict] = {}
    for r in readings:
        p = pooled.setdefault((r["held_out_source"], r["cv"]), {"runs": 0, "tumors_found": 0, "tumors": 0,
                                                                 "normals_cleared": 0, "normals": 0,
                                                                 "run_sensitivities": [], "threshold": r["threshold"]})
        p["runs"] += 1
        for key in ("tumors_found", "tumors", "normals_cleared", "normals"):
            p[key] += r[key]
        if r["tumors"]:
            p["run_sensitivities"].append(r["tumors_found"] / r["tumors"])
    return pooled


def _without_the_source_lines(readings: list[dict]) -> list[str]:
    """The table of readings_without_the_source, and each source's pooled sensitivity."""
    if not readings:
        return []

    def share(k: int, n: int) -> str:
        return f"{k} of {n} ({k / n:.3f})" if n else "n/a"

    pooled = _pooled_by_source(readings)
    cvs = "; ".join(f"`{source}`: `{cv}`" + (f" (threshold {p['threshold']:.3f})" if len(pooled) > 1 else "")
                    for (source, cv), p in pooled.items())
    lines = ["", "The same kept held-out scores at the threshold chosen without the held-out source: the shipping "
             "rule (out-of-fold specificity >= 0.95) applied to a cross-validation of the recipe over the other "
             f"sources only ({cvs}), as a model trained without that collection would have shipped. This is the "
             "honest reading of sensitivity on a collection the model never saw; 0.5, above, is not a threshold "
             "any model ships with.", "",
             "| held-out source | run | threshold chosen without it | sensitivity | specificity |",
             "|---|---|---|---|---|"]
    for r in readings:
        lines.append(f"| `{r['held_out_source']}` | {r['run']} | {r['threshold']:.3f} | "
                     f"{share(r['tumors_found'], r['tumors'])} | {share(r['normals_cleared'], r['normals'])} |")
    for (source, _), p in pooled.items():
        lines.append(f"| `{source}`, {p['runs']} runs pooled | | {p['threshold']:.3f} | "
                     f"{share(p['tumors_found'], p['tumors'])} | {share(p['normals_cleared'], p['normals'])} |")
    return lines


def _held_out_verdict_lines(counted: list[dict]) -> list[str]:
    """The table of held_out_verdicts: a clinician's view of the leave-source-out rows."""
    if not counted:
        return []

    def cell(c: dict, kind: str, outcome: str) -> str:
        n, k = c["images"][kind], c["verdicts"][kind][outcome]
        return f"{k} of {n} ({k / n:.1%})" if n else "n/a"

    lines = ["", "What the app would show for those held-out images: each run's kept held-out scores read with this "
             "model's threshold and uncertain band, and that run's guard (runs whose scores were not kept are left "
             "out). Tumors shown \"no tumor detected\" are the misses a clinic would not be warned of.", "",
             "| held-out source | run | tumors shown no tumor detected | uncertain | tumor suspected | cannot assess "
             "| normals shown no tumor detected |", "|---|---|---|---|---|---|---|"]
    for c in counted:
        lines.append(f"| `{c['held_out_source']}` | {c['run']} | "
                     + " | ".join(cell(c, "tumors", o) for o in (verdicts.NO_TUMOR_DETECTED, verdicts.UNCERTAIN,
                                                                 verdicts.TUMOR_SUSPECTED, verdicts.CANNOT_ASSESS))
                     + f" | {cell(c, 'normals', verdicts.NO_TUMOR_DETECTED)} |")
    return lines


def _leave_source_out_lines(rows: list[dict]) -> list[str]:
    """One row per held-out source and run: the recipe trained without the source, scored on it at its own
    threshold."""
    if not rows:
        return []

    def cell(row, name):
        e = row.get(name)
        return f"{_f(e['value'])} ({_f(e['ci95'][0])}-{_f(e['ci95'][1])})" if e else "n/a"

    lines = ["", "### Leave one source out", "",
             "A recipe trained without one source, then scored on it at the threshold that run chose on its "
             "own validation split, without the held-out source (95% intervals: bootstrap; guard alarms: Wilson). "
             "This is the estimate for scans from a collection the model never saw; the shipped model's "
             "threshold, set by cross-validation, may be stricter. Each row names its run, whose recipe is "
             "`experiments/configs/RUN.json` (without the `-sSEED` suffix); its guard alarm rate is that run's "
             "guard, as the code of its day fitted it (`-guard-penultimate` runs: refitted as this model's guard "
             "now is).", "",
             "| held-out source | run | seed | images (tumors) | threshold | sensitivity | specificity | ROC-AUC "
             "| guard alarm rate |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['held_out_source']}` | {r.get('run', '')} | {r.get('seed', '')} | "
                     f"{r['images']} ({r['tumors']}) | {_f(r.get('threshold'))} | "
                     f"{cell(r, 'sensitivity')} | "
                     f"{cell(r, 'specificity')} | {cell(r, 'roc_auc')} | {cell(r, 'ood_alarm_rate')} |")
    return lines


def model_card(metadata: dict, report: dict, model_path: str | Path = BUNDLED_MODEL,
               leave_source_out: list[dict] | None = None, cvs_without_a_source: list[Path] | None = None) -> str:
    """The model card, section by section: what the model is, what it is for, what it learned from, how it scored
    and where it fails. `cvs_without_a_source`: cross-validations of the recipe that leave a held-out source out,
    whose thresholds read that source's leave-source-out rows again (readings_without_the_source)."""
    rows = leave_source_out or metadata.get("leave_source_out") or []
    counted = held_out_verdicts(rows, metadata)  # what the app would show for each held-out source
    without = readings_without_the_source(rows, cvs_without_a_source or [])
    lines = [
        "# Model card: braintriage default model",
        "",
        "_Generated by `braintriage model-card` from the model file's metadata and an evaluation run; "
        "do not edit by hand._",
        "",
        *_details_section(metadata, report, Path(model_path)),
        "",
        *INTENDED_USE,
        "",
        *_training_section(metadata),
        "",
        *_evaluation_section(metadata, report, rows, counted, without),
        "",
        *_limits_section(metadata, report, counted, without),
        "",
    ]
    return "\n".join(lines)


INTENDED_USE = [
    "## Intended use",
    "- Triage support where no neuroradiologist is at hand: it flags brain MRI slices that may show a "
    "tumor so that they are sent for specialist review first.",
    "- **Decision support, not a diagnosis.** A flag means \"refer for specialist review\"; no flag does not "
    "rule a tumor out. A clinician decides.",
    "- Not for: diagnosis or grading, treatment decisions, children (no pediatric data is known to be in the "
    "training set), CT or other body parts, whole 3D volumes judged as one (each slice is scored alone).",
]


def _details_section(metadata: dict, report: dict, model_path: Path) -> list[str]:
    """The file, the network, its input and output, and how its scores are read."""
    t = metadata["training"]
    size = metadata["input"]["preprocess"]["size"]
    params = count_parameters(build_model(metadata["architecture"], metadata["input"]["channels"],
                                          len(metadata["class_names"]) if metadata["output"] == "softmax" else 1,
                                          size))
    return [
        "## Model details",
        f"- File: `{model_path.name}` ({model_path.stat().st_size / 1e6:.1f} MB, weights as "
        f"{metadata.get('weights_dtype', '?')}, "
        f"{'an ONNX graph' if model_path.suffix == '.onnx' else 'safetensors'} with JSON metadata; loading "
        "never unpickles).",
        f"- Architecture: `{metadata['architecture']}` ({params / 1e6:.2f}M parameters), "
        f"{'fine-tuned from ' + t['pretrained'] + ' weights' if t.get('pretrained') else 'trained from scratch'}; "
        f"package version {metadata.get('package_version', '?')}.",
        *_ensemble_lines(metadata),
        f"- Input: one 2D slice, grayscale, {_preprocess_steps(metadata['input']['preprocess'])}resized to "
        f"{size}x{size}; "
        f"normalised with mean {metadata['input']['normalization']['mean']:.4f}, "
        f"std {metadata['input']['normalization']['std']:.4f}.",
        f"- Output: {metadata['output']} over {', '.join(metadata['class_names'])}; "
        f"{metadata.get('positive', '')}. Threshold {metadata['threshold']:.3f} "
        f"({metadata.get('threshold_rule', '')}); temperature {metadata.get('temperature', 1.0):.3f}.",
        *_operating_point_lines(metadata),
        *_verdict_lines(metadata, report),
    ]


def _training_section(metadata: dict) -> list[str]:
    """The sources, what is known (and not) about them, and the recipe."""
    t = metadata["training"]
    return [
        "## Training data",
        *_training_data_lines(t),
        "- 2D JPEG slices (axial, coronal, sagittal; T1, T2, FLAIR), mostly 512x512, collected from public sources "
        "of unknown provenance; no patient identifiers, ages, sexes, scanners or sites are known, so results "
        "cannot be broken down by any of them, and near-identical neighbouring slices of one patient are only "
        "approximately grouped (by perceptual hash).",
        "- In the seed set class and source are confounded: nearly every tumor is a contrast-enhanced T1 slice "
        "from one collection (512x512 JPEGs), while 390 of the 395 normals are T2/FLAIR slices of other shapes "
        "from others. " + ("Br35H adds tumors on T2 and FLAIR and normals from other collections, which weakens "
                           "that shortcut; the leave-source-out table below measures what is left."
                           if len(t.get("sources") or {}) > 1 else
                           "A model can learn \"that collection\" as \"tumor\": judge it on the unleaked subset "
                           "and on other sources (docs/model.md)."),
        _recipe_line(metadata),
        f"- Trained in {t['seconds']} s on {t['device']} (torch {t['torch']}). Retrain: "
        "`scripts/train_bundled_model.sh` (`make bundled-model`).",
    ]


def _recipe_line(metadata: dict) -> str:
    """The training recipe in one sentence: schedule, optimiser, weighting, labels, seed and augmentation."""
    t = metadata["training"]
    cfg = t.get("config", {})
    aug = cfg.get("augment", {})
    return (
        f"- Recipe: {cfg.get('epochs')} epochs planned, {t['epochs_run']} run (best validation loss at epoch "
        f"{metadata['validation_metrics'].get('best_epoch')}), batch {cfg.get('batch_size')}, AdamW lr "
        f"{cfg.get('lr')} (per 64 images) with warm-up and cosine decay"
        + (f" (backbone at {cfg.get('backbone_lr_scale')} of that rate)"
           if cfg.get("backbone_lr_scale", 1) != 1 else "")
        + f", weight decay {cfg.get('weight_decay')}, balanced class weights"
        + (f" (sources within a class weighted as count^{cfg.get('source_balance')})" if t.get("sources") else "")
        + ", "
        f"labels: {metadata['output'] == 'softmax' and 'tumor type' or 'binary'}, seed {cfg.get('seed')}; "
        f"augmentation zoom {aug.get('zoom')}, rotation +/-{aug.get('rotation_degrees')} degrees, brightness "
        f"{aug.get('brightness')}, gamma {aug.get('gamma')}, translation {aug.get('translate')}, noise "
        f"{aug.get('noise')}, horizontal flip {aug.get('horizontal_flip')}"
        + "".join(f", {name} {aug[key]}" for key, name in (("intensity_remap", "random intensity curve"),
                                                          ("invert", "contrast inversion"), ("blur", "blur"),
                                                          ("bias_field", "bias field"),
                                                          ("histogram_match", "histogram matching")) if aug.get(key))
        + (" (partners of the other class)"
           if aug.get("histogram_match") and aug.get("histogram_partners") == "other-class" else "")
        + ", never vertical flips or shear" + _recipe_extras(cfg) + ".")


def _evaluation_section(metadata: dict, report: dict, leave_source_out: list[dict],
                        held_out_counts: list[dict], without_the_source: list[dict]) -> list[str]:
    """The test set's metrics (all images and the unleaked subset), by type, calibration, validation and the
    leave-source-out table."""
    leak = report.get("leakage", {})
    v = metadata["validation_metrics"]
    per_type = []
    for name, s in report["sensitivity_by_type"].items():
        u = (report.get("unleaked") or {}).get("sensitivity_by_type", {}).get(name)
        per_type.append(f"| {name} | {_f(s['value'])} ({_f(s['ci95'][0])}-{_f(s['ci95'][1])}), n={s['n']} | "
                        + (f"{_f(u['value'])} ({_f(u['ci95'][0])}-{_f(u['ci95'][1])}), n={u['n']} |" if u else "n/a |"))
    return [
        "## Evaluation",
        f"Data: `{report['data']}` at the model's threshold; 95% intervals by bootstrap. "
        + (f"{leak['leaked_images']} of {leak['leaked_images'] + leak['unleaked_images']} test images have a near "
           f"duplicate (pHash within {leak['max_hamming_distance']} bits) in the training data, so the first column "
           "is inflated; the unleaked subset is the honest estimate for new scans." if leak else
           "Leakage against the training data was not measured."),
        "",
        *_metric_table(report),
        "",
        "Sensitivity by tumor type:",
        "",
        "| type | all test images | unleaked subset |",
        "|---|---|---|",
        *per_type,
        "",
        f"- Calibration: expected calibration error {_f(report['calibration']['ece'])} (10 bins).",
        f"- Validation (grouped split of the training data, threshold {v['threshold']:.3f}): sensitivity "
        f"{_f(v['sensitivity'])}, specificity {_f(v['specificity'])}, accuracy {_f(v['accuracy'])} on "
        f"{v['n']} images. Validation images are from the same sources as training, so these are optimistic.",
        *_leave_source_out_lines(leave_source_out),
        *_without_the_source_lines(without_the_source),
        *_held_out_verdict_lines(held_out_counts),
    ]


def _unseen_source_lines(held_out_counts: list[dict]) -> list[str]:
    """The leave-source-out verdict table in one sentence: the share of an unseen collection's tumors shown green."""
    shares: dict[str, list[float]] = {}
    for c in held_out_counts:
        if c["images"]["tumors"]:
            missed = c["verdicts"]["tumors"][verdicts.NO_TUMOR_DETECTED] / c["images"]["tumors"]
            shares.setdefault(c["held_out_source"], []).append(missed)
    if not shares:
        return []
    spans = "; ".join(f"`{name}` {min(v):.1%}" + (f"-{max(v):.1%} ({len(v)} runs)" if len(v) > 1 else "")
                      for name, v in shares.items())
    return ["- A tumor from a collection the model never trained on can be shown \"no tumor detected\". Trained "
            f"without one source and read with this model's rules, the share of that source's tumors shown so: {spans} "
            "(leave-source-out tables above). New scanners, sequences or sites can do the same."]


def _unseen_sensitivity_lines(without_the_source: list[dict]) -> list[str]:
    """readings_without_the_source in one sentence: how many of an unseen collection's tumors are found."""
    pooled = _pooled_by_source(without_the_source)
    cvs_per_source = Counter(source for source, _ in pooled)
    spans = []
    for (source, _), p in pooled.items():
        rates = p["run_sensitivities"]
        if rates:
            spans.append(f"`{source}` {p['tumors_found'] / p['tumors']:.3f}"
                         + (f" ({len(rates)} runs, {min(rates):.3f}-{max(rates):.3f})" if len(rates) > 1 else "")
                         + (f" at {p['threshold']:.3f}" if cvs_per_source[source] > 1 else ""))
    if not spans:
        return []
    return ["- On a collection it never trained on, the recipe finds fewer tumors than on its own: trained without "
            "one source, at the threshold chosen without it, the share of that source's tumors flagged: "
            + "; ".join(spans) + " ("
            + ("each cross-validation without the source chooses its own threshold, all shown; "
               if max(cvs_per_source.values()) > 1 else "")
            + "leave-source-out tables above)."]


def _type_limit_lines(metadata: dict, report: dict) -> list[str]:
    """How often a shown tumor type was right on the test data and its unleaked subset, beside the precision the
    display rule was set for out of fold: the type is learnt from the training sources' collections, and on
    images from others the shown type can be wrong far more often than that."""
    shown = metadata.get("type_display")
    counted = [(label, counts) for label, counts in (("the test data", report.get("verdicts")), (
        "its unleaked subset", (report.get("unleaked") or {}).get("verdicts"))) if counts and counts["types_shown"]]
    if not shown or not counted:
        return []
    right = "; ".join(f"on {label} {c['types_shown_right']} of {c['types_shown']} "
                      f"({_f(c['types_shown_right'] / c['types_shown'])})" for label, c in counted)
    return [f"- Tumor type: the display rule keeps shown types right {_f(shown['out_of_fold']['precision'])} of the "
            f"time out of fold, on images from the training sources' own collections. Shown types were right {right}. "
            "Read a shown type as a hint for the specialist, not a finding."]


def _limits_section(metadata: dict, report: dict, held_out_counts: list[dict],
                    without_the_source: list[dict]) -> list[str]:
    return [
        "## Known failure modes and limits",
        f"- Sensitivity drops on scans unlike the training data: {_shift_sentence(report)}",
        *_unseen_sensitivity_lines(without_the_source),
        *_unseen_source_lines(held_out_counts),
        "- 2D slices only: a tumor visible on other slices of a study but not on the one given is not seen; "
        "slices are scored independently.",
        "- Public data of unknown provenance: label errors cannot be ruled out (`braintriage audit` lists "
        "duplicates across classes); no patient IDs, no demographics, no pediatric data known, no scanner or "
        "site metadata.",
        "- Three tumor types only (glioma, meningioma, pituitary); other lesions (metastases, abscesses, "
        "infarcts) were never shown to the model and may get any score.",
        *_type_limit_lines(metadata, report),
        f"- {_guard_sentence(metadata, report)}",
        "- Probabilities are not calibrated risks (see the calibration error above); treat them as a ranking.",
    ]
