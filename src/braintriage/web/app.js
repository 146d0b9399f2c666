// braintriage clinic page: uploads scans to the local API and shows one card per scan.
"use strict";

const state = { results: [], seen: [], worklist: false, allHeatmaps: false, table: false, needsReview: false,
                model: null, heatOpacity: 0.6 };
const STORE = "braintriage.results.v1";  // this browser only: results are never sent anywhere else
const $ = (id) => document.getElementById(id);

// The four outcomes (and a failed file), in worklist order, with the words the CLI uses too (verdicts.py).
const ORDER = ["tumor_suspected", "cannot_assess", "uncertain", "no_tumor_detected", "error"];
const HEADLINES = {
  tumor_suspected: "Tumor suspected: refer for specialist review",
  cannot_assess: "Could not be assessed: needs a human read",
  uncertain: "Uncertain: needs a human read",
  no_tumor_detected: "No tumor detected",
  error: "Could not be read",
};
const SUMMARY_WORDS = {
  tumor_suspected: "tumor suspected", cannot_assess: "could not be assessed", uncertain: "uncertain",
  no_tumor_detected: "clear", error: "could not be read",
};
const CLEAR_CAUTION = "A clear result does not rule out a tumor.";
// Types are learnt from the training collections; on other collections a shown type was often wrong
// (MODEL_CARD.md, "Known failure modes and limits").
const TYPE_CAUTION = "A hint for the specialist, not a finding: on scans from other collections the shown type "
  + "was often wrong.";
const verdictOf = (r) => r.verdict || "error";
const capitalised = (s) => s.charAt(0).toUpperCase() + s.slice(1);

async function loadModel() {
  try {
    const r = await fetch("/api/v1/model");
    state.model = await r.json();
    const m = state.model;
    const band = m.uncertain_band || { low: m.threshold, high: m.threshold };
    $("model-info").textContent = `Model ${m.architecture}, braintriage ${m.package_version}; ` +
      `flags a scan when P(tumor) ≥ ${band.high.toFixed(2)}` +
      (band.low < band.high ? `; uncertain from ${band.low.toFixed(2)}.` : ".");
  } catch (e) {
    $("model-info").textContent = "Model information unavailable.";
  }
}

// A file is the same file when its name, size and modification time are: it is answered once.
const fileKey = (f) => `${f.name}|${f.size}|${f.lastModified}`;

function save() {
  // Patient identifiers never leave the screen; the enlarged views are too big to keep.
  const kept = state.results.map(({ patient, native_image, slice_images, ...rest }) => rest);
  const keep = (results) => JSON.stringify({ results, seen: state.seen });
  try {
    localStorage.setItem(STORE, keep(kept));
    return "";
  } catch (e) {  // over the browser's quota: keep the results without their images
    try {
      localStorage.setItem(STORE, keep(kept.map(({ image, heatmap, ...rest }) => rest)));
      return " (images not kept in this browser: too many)";
    } catch (e2) {
      return " (not kept in this browser: storage full)";
    }
  }
}

function restore() {
  try {
    const kept = JSON.parse(localStorage.getItem(STORE) || "null");
    if (kept && Array.isArray(kept.results) && kept.results.length) {
      state.results = kept.results;
      state.seen = Array.isArray(kept.seen) ? kept.seen : [];
      render();
      $("status").textContent = summary(state.results) + " Kept from an earlier visit in this browser.";
    }
  } catch (e) {
    localStorage.removeItem(STORE);
  }
}

async function analyse(fileList) {
  const all = Array.from(fileList);
  const files = all.filter((f) => !state.seen.includes(fileKey(f)));
  const repeated = all.length - files.length;
  if (!files.length) {
    if (repeated) {
      $("status").textContent = summary(state.results) + ` ${repeated} file(s) already analysed: not sent again.`;
    }
    return;
  }
  $("status").textContent = `Analysing ${files.length} scan${files.length > 1 ? "s" : ""}…`;
  const batchSize = 16;
  let failed = 0;
  for (let i = 0; i < files.length; i += batchSize) {
    const form = new FormData();
    files.slice(i, i + batchSize).forEach((f) => form.append("files", f, f.name));
    try {
      const r = await fetch("/api/v1/predict?heatmap=true&views=true", { method: "POST", body: form });
      const body = await r.json();
      if (body.results) {
        state.results.push(...body.results.map((r) => ({ ...r, model: body.model, analysed_at: body.analysed_at })));
      } else {
        const message = typeof body.detail === "string" ? body.detail : `error ${r.status}`;
        files.slice(i, i + batchSize).forEach((f) => state.results.push({ filename: f.name, error: message }));
      }
    } catch (e) {
      files.slice(i, i + batchSize).forEach((f) => state.results.push({ filename: f.name, error: "no answer from the server" }));
    }
    render();
  }
  state.seen.push(...files.map(fileKey));
  const note = save();
  $("status").textContent = summary(state.results) + note +
    (repeated ? ` ${repeated} file(s) already analysed: not sent again.` : "");
}

function summary(results) {
  const counts = {};
  results.forEach((r) => { counts[verdictOf(r)] = (counts[verdictOf(r)] || 0) + 1; });
  const parts = ORDER.filter((v) => counts[v]).map((v) => `${counts[v]} ${SUMMARY_WORDS[v]}`);
  return `${results.length} scan(s) analysed: ${parts.join(", ")}.`;
}

function line(className, text) {
  const p = document.createElement("p");
  p.className = className;
  p.textContent = text;
  return p;
}

function card(result, index) {
  const li = document.createElement("li");
  const article = document.createElement("article");
  li.appendChild(article);
  const verdict = verdictOf(result);
  article.className = "card " + verdict;
  article.setAttribute("aria-label", result.filename);
  const name = line("filename", result.filename);

  if (verdict === "error") {
    article.append(line("verdict", HEADLINES.error), line("secondary", result.error), name);
    return li;
  }
  const figure = document.createElement("figure");
  figure.className = "scan";
  if (result.image) {
    const img = document.createElement("img");
    img.src = "data:image/png;base64," + result.image;
    img.alt = "Scan " + result.filename;
    figure.appendChild(img);
    figure.addEventListener("click", () => openViewer(result));  // the heat map lies over the scan
  }
  let heat = null;
  if (result.heatmap) {  // none for an input that could not be assessed
    heat = document.createElement("img");
    heat.className = "heat";
    heat.src = "data:image/png;base64," + result.heatmap;
    heat.alt = "Heat map: where the model found evidence of a tumor";
    heat.hidden = !(state.allHeatmaps || result._showHeat);
    heat.style.opacity = String(state.heatOpacity);
    figure.appendChild(heat);
  }
  article.append(figure, line("verdict", HEADLINES[verdict]));
  // Words first, the number second; for an input that could not be assessed the score is secondary.
  const score = `${capitalised(result.suspicion)} suspicion (${result.probability_text})`;
  if (verdict === "cannot_assess") {
    article.append(line("secondary reason", result.warning || result.error),
                   line("secondary probability", `Model score, not to be relied on: ${score}`));
  } else {
    article.appendChild(line("probability", score));
  }
  if (verdict === "no_tumor_detected") article.appendChild(line("caution", CLEAR_CAUTION));
  if (result.patient) {  // only with serve --show-identifiers; on screen only
    article.appendChild(line("identifiers", `Patient: ${[result.patient.patient_name, result.patient.patient_id]
      .filter(Boolean).join(", ")}`));
  }
  if (result.study) {
    article.appendChild(line("secondary study", `${result.description || "Study"} (${result.study}): ` +
      `${result.slices} slice${result.slices === 1 ? "" : "s"}; slice shown: ${result.shown_slice}, the most ` +
      `suspicious; next: ${result.top_slices.slice(1).join(", ") || "none"}`));
  }
  if (result.type) {  // only for a suspected tumor, and only when the type is likely enough to be right
    const label = result.type === "type uncertain" ? "Type uncertain" : `Likely type: ${result.type.replace("_", " ")}`;
    const typeLine = line("secondary type", label);
    typeLine.title = TYPE_CAUTION;
    article.appendChild(typeLine);
  }
  if (result.image) {
    const enlarge = document.createElement("button");
    enlarge.type = "button";
    enlarge.className = "enlarge";
    enlarge.textContent = result.study ? "View slices" : "Enlarge";
    enlarge.addEventListener("click", () => openViewer(result));
    article.appendChild(enlarge);
  }
  if (heat) {
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.className = "heat-toggle";
    toggle.setAttribute("aria-pressed", String(!heat.hidden));
    toggle.textContent = "Heat map";
    toggle.addEventListener("click", () => {
      result._showHeat = heat.hidden;
      heat.hidden = !heat.hidden;
      toggle.setAttribute("aria-pressed", String(!heat.hidden));
    });
    article.appendChild(toggle);
  }
  if (result.warning && verdict !== "cannot_assess") article.appendChild(line("secondary warning", result.warning));
  if (result.error && verdict !== "cannot_assess") {  // a study scored on its readable slices
    article.appendChild(line("secondary", result.error));
  }
  const printed = line("print-only secondary", `Model ${result.model || ""}; analysed ${result.analysed_at || ""}. ` +
    "Decision support, not a diagnosis: a flag means refer for specialist review. " + CLEAR_CAUTION);
  article.append(name, printed);
  return li;
}

function percentText(p) {  // as verdicts.probability_text: never 0% or 100%
  if (p === null || p === undefined) return "not readable";
  return p < 0.01 ? "< 1%" : p > 0.99 ? "> 99%" : `${Math.round(100 * p)}%`;
}

// The enlarged view: the scan at its own resolution; for a study, every slice with its own score.
function openViewer(result) {
  const dialog = $("viewer");
  const slider = $("viewer-slice");
  const labels = result.slice_labels || [];
  const shownIndex = Math.max(0, labels.indexOf(result.shown_slice));
  const show = (k) => {
    const atShown = !result.study || k === shownIndex;
    const png = atShown ? (result.native_image || result.image) : (result.slice_images || [])[k];
    $("viewer-image").src = png ? "data:image/png;base64," + png : "";
    $("viewer-image").alt = png ? `${result.filename}${result.study ? ", slice " + labels[k] : ""}` : "slice not available";
    $("viewer-caption").textContent = result.study
      ? `Slice ${labels[k]} (${k + 1} of ${labels.length}): P(tumor) ${percentText(result.slice_probabilities[k])}` +
        (k === shownIndex ? " — the most suspicious, shown on the card" : "")
      : `${result.filename}: ${HEADLINES[verdictOf(result)]}`;
  };
  $("viewer-title").textContent = result.study ? `${result.description || "Study"} (${result.study})` : result.filename;
  slider.hidden = !result.study || !result.slice_images;
  slider.max = String(Math.max(0, labels.length - 1));
  slider.value = String(shownIndex);
  slider.oninput = () => show(Number(slider.value));
  show(shownIndex);
  dialog.showModal();
}

function tableRow(result) {
  const tr = document.createElement("tr");
  const verdict = verdictOf(result);
  tr.className = verdict;
  const thumb = document.createElement("td");
  if (result.image) {
    const img = document.createElement("img");
    img.src = "data:image/png;base64," + result.image;
    img.alt = "Scan " + result.filename;
    thumb.appendChild(img);
  }
  const cell = (text) => { const td = document.createElement("td"); td.textContent = text || ""; return td; };
  let score = result.suspicion ? `${capitalised(result.suspicion)} (${result.probability_text})` : "";
  if (verdict === "cannot_assess") score = `Not assessed (model score ${result.probability_text}, not to be relied on)`;
  const type = result.type === "type uncertain" ? "Type uncertain" : (result.type || "").replace("_", " ");
  tr.append(thumb, cell(result.filename + (result.study ? ` (study, ${result.slices} slices)` : "")),
            cell(HEADLINES[verdict]), cell(score), cell(type));
  return tr;
}

function render() {
  let rows = state.results.slice();
  if (state.needsReview) rows = rows.filter((r) => ["tumor_suspected", "cannot_assess", "uncertain"].includes(verdictOf(r)));
  if (state.worklist) {  // by verdict (suspected, cannot assess, uncertain, clear, failed), then by score
    const score = (r) => (r.tumor_probability === null || r.tumor_probability === undefined ? -1 : r.tumor_probability);
    rows.sort((a, b) => ORDER.indexOf(verdictOf(a)) - ORDER.indexOf(verdictOf(b)) || score(b) - score(a));
  }
  const list = $("results");
  const table = $("results-table");
  list.replaceChildren();
  table.tBodies[0].replaceChildren();
  if (state.table) rows.forEach((r) => table.tBodies[0].appendChild(tableRow(r)));
  else rows.forEach((r, i) => list.appendChild(card(r, i)));
  list.hidden = state.table;
  table.hidden = !state.table;
  $("results-section").hidden = state.results.length === 0;
}

function exportCsv() {
  const cols = ["filename", "study", "verdict", "suspicion", "tumor_probability", "prediction", "type", "slices",
                "threshold", "warning", "error", "model", "analysed_at"];
  const quote = (v) => {
    let s = v === null || v === undefined ? "" : String(v);
    if (typeof v === "string" && /^[=+\-@\t\r]/.test(s)) s = "'" + s;  // a spreadsheet shows it, never runs it
    return /[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  };
  const lines = [cols.join(",")].concat(state.results.map((r) => cols.map((c) => quote(r[c])).join(",")));
  const url = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = "braintriage-results.csv";
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function toggleButton(id, key) {
  $(id).addEventListener("click", () => {
    state[key] = !state[key];
    $(id).setAttribute("aria-pressed", String(state[key]));
    render();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  loadModel();
  $("files").addEventListener("change", (e) => { analyse(e.target.files); e.target.value = ""; });
  const zone = $("dropzone");
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("dragging"); }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.remove("dragging"); }));
  zone.addEventListener("drop", (e) => analyse(e.dataTransfer.files));
  toggleButton("worklist", "worklist");
  toggleButton("all-heatmaps", "allHeatmaps");
  $("export").addEventListener("click", exportCsv);
  $("heat-opacity").addEventListener("input", (e) => {
    state.heatOpacity = Number(e.target.value) / 100;
    document.querySelectorAll("img.heat").forEach((img) => { img.style.opacity = String(state.heatOpacity); });
  });
  $("print").addEventListener("click", () => window.print());
  $("viewer-close").addEventListener("click", () => $("viewer").close());
  toggleButton("table-view", "table");
  toggleButton("needs-review", "needsReview");
  $("clear").addEventListener("click", () => {
    if (!confirm(`Clear all ${state.results.length} results from this page and from this browser's storage?`)) return;
    state.results = [];
    state.seen = [];
    localStorage.removeItem(STORE);
    $("status").textContent = "";
    render();
  });
  restore();
});
