"""`evaluate --report report.html`: one self-contained HTML file (plots and thumbnails embedded as data
URIs, no scripts, no network) that a clinician or a reviewer can open anywhere."""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from braintriage.metrics import METRIC_NAMES
from braintriage.modelfile import model_name

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:1rem;
color:#1b1b1b;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.2rem;border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}.notice{background:#fff4d6;border:1px solid #e0b44a;padding:.6rem}
.figs{display:flex;flex-wrap:wrap;gap:1rem}.figs img{max-width:100%;border:1px solid #eee}
.thumbs{display:flex;flex-wrap:wrap;gap:.8rem}.thumbs figure{margin:0;width:170px;font-size:.8rem;
word-break:break-all}.thumbs img{width:160px;height:160px;object-fit:contain;background:#000}
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _thumbnail(image: np.ndarray) -> str:
    im = Image.fromarray(np.asarray(image, dtype=np.uint8))
    im.thumbnail((160, 160))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return _data_uri(buf.getvalue())


def _f(v: float) -> str:
    return "n/a" if v is None or v != v else f"{v:.3f}"


TYPE_ACCURACY = "tumor-type accuracy (4 classes)"  # a row of the metrics table, beside the binary metrics


def _metrics_rows(block: dict | None) -> dict[str, str]:
    """Each metric of a report block with its interval, plus the four-class type accuracy where measured."""
    if not block:
        return {name: "n/a" for name in (*METRIC_NAMES, TYPE_ACCURACY)}
    m, ci = block["metrics"], block["ci95"]
    rows = {name: f"{_f(m[name])} <small>({_f(ci[name][0])}-{_f(ci[name][1])})</small>" for name in METRIC_NAMES}
    lo, hi = block.get("type_accuracy_ci95", (None, None))
    rows[TYPE_ACCURACY] = (f"{_f(block['type_accuracy'])} <small>({_f(lo)}-{_f(hi)})</small>"
                           if "type_accuracy" in block else "n/a")
    return rows


def write_report(path: str | Path, report: dict, figures: dict[str, bytes], metadata: dict,
                 worst: dict[str, list[dict]]) -> None:
    """The report, section by section, in the order a reader goes: summary, metrics, figures, leakage, mistakes."""
    def figure_section(section_id: str, title: str, names: list[str], note: str = "") -> str:
        imgs = "".join(f'<img alt="{n}" src="{_data_uri(figures[n])}">' for n in names if n in figures)
        return (f'<section id="{section_id}"><h2>{title}</h2>{note}<div class="figs">{imgs or "not available"}'
                f"</div></section>")

    parts = [
        _summary_and_metrics(report, metadata),
        *_per_type(report),
        figure_section("confusion", "Confusion matrix", ["confusion_matrix", "type_confusion_matrix"]),
        figure_section("curves", "ROC and precision-recall", ["roc_curve", "pr_curve"]),
        figure_section("calibration", "Calibration", ["reliability"],
                       f"<p>Expected calibration error: {_f(report['calibration']['ece'])} (10 equal-width bins).</p>"),
        *_leakage(report.get("leakage")),
        figure_section("training", "Training curves", ["training_curves"]),
        *_mistakes(worst),
    ]
    if report["unreadable"]:
        items = "".join(f"<li>{html.escape(u['path'])}: {html.escape(u['error'])}</li>" for u in report["unreadable"])
        parts.append(f'<section id="unreadable"><h2>Unreadable files</h2><ul>{items}</ul></section>')
    parts.append("</body></html>")
    Path(path).write_text("\n".join(parts), encoding="utf-8")


def _summary_and_metrics(report: dict, metadata: dict) -> str:
    """The page head, the notice, the summary table and the metrics table (all images and the unleaked subset)."""
    e = html.escape
    m = report["metrics"]
    all_rows, un_rows = _metrics_rows(report), _metrics_rows(report.get("unleaked"))
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>braintriage evaluation: {e(report['data'])}</title><style>{CSS}</style></head><body>
<h1>braintriage evaluation</h1>
<p class="notice" id="notice">Decision support, not a diagnosis. These figures describe the model on this
dataset; a suspected tumor means: refer for specialist review.</p>
<section id="summary"><h2>Summary</h2><table>
<tr><th>model</th><td>{e(model_name(metadata))} (package {e(metadata.get('package_version', '?'))}),
threshold {m['threshold']:.3f} ({e(metadata.get('threshold_rule', ''))})</td></tr>
<tr><th>data</th><td>{e(report['data'])}: {m['n']} images ({m['n_tumor']} tumor, {m['n_no_tumor']} no tumor)</td></tr>
<tr><th>sensitivity (all)</th><td>{all_rows['sensitivity']}</td></tr>
<tr><th>specificity (all)</th><td>{all_rows['specificity']}</td></tr>
<tr><th>sensitivity (unleaked)</th><td>{un_rows['sensitivity']}</td></tr>
<tr><th>generated</th><td>{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}</td></tr>
</table></section>
<section id="metrics"><h2>Metrics with bootstrap 95% confidence intervals</h2>
<table><tr><th>metric</th><th>all images</th><th>unleaked subset</th></tr>
{''.join(f'<tr><td>{n}</td><td>{all_rows[n]}</td><td>{un_rows[n]}</td></tr>' for n in all_rows)}
</table><p>Unleaked subset: test images with no near duplicate (pHash within
{report.get('leakage', {}).get('max_hamming_distance', '?')} bits) in the training data. A metric is n/a where
the subset has no images of a class.</p></section>
<section id="per-type"><h2>Sensitivity by tumor type</h2><table>
<tr><th>type</th><th>all images</th><th>unleaked subset</th></tr>"""


def _per_type(report: dict) -> list[str]:
    """One row per tumor type: its sensitivity on all images and on the unleaked subset."""
    def cell(x: dict | None) -> str:
        return f"{_f(x['value'])} <small>({_f(x['ci95'][0])}-{_f(x['ci95'][1])}), n={x['n']}</small>" if x else "n/a"

    unleaked = report.get("unleaked") or {}
    rows = [f"<tr><td>{html.escape(name)}</td><td>{cell(v)}</td>"
            f"<td>{cell(unleaked.get('sensitivity_by_type', {}).get(name))}</td></tr>"
            for name, v in report["sensitivity_by_type"].items()]
    return [*rows, "</table></section>"]


def _leakage(leak: dict | None) -> list[str]:
    """How many test images have a near duplicate in the training data (the unleaked subset is the honest part)."""
    if leak:
        text = (f"<p>{leak['leaked_images']} of {leak['leaked_images'] + leak['unleaked_images']} test images "
                f"have a near duplicate (pHash within {leak['max_hamming_distance']} bits; "
                f"{leak['leaked_at_distance_0']} at distance 0) in <code>{html.escape(leak['train_data'])}</code>. "
                "Metrics on all images are inflated by them; the unleaked subset is the honest part.</p>")
    else:
        text = "<p>No training data was given or found, so leakage was not measured.</p>"
    return ['<section id="leakage"><h2>Leakage between training and test data</h2>', text, "</section>"]


def _mistakes(worst: dict[str, list[dict]]) -> list[str]:
    """Thumbnails of the most confident missed tumors and false alarms, each with its P(tumor)."""
    e = html.escape
    parts = ['<section id="errors"><h2>Most confident mistakes</h2>']
    for key, title in (("false_negatives", "Missed tumors (false negatives)"),
                       ("false_positives", "False alarms (false positives)")):
        thumbs = "".join(f'<figure><img alt="{e(r["path"])}" src="{_thumbnail(r["image"])}"><figcaption>'
                         f'{e(r["path"])}<br>P(tumor) {r["tumor_probability"]:.3f}</figcaption></figure>'
                         for r in worst[key])
        parts.append(f"<h3>{title}</h3><div class=\"thumbs\">{thumbs or '<p>none</p>'}</div>")
    return [*parts, "</section>"]
