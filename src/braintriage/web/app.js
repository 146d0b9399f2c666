// braintriage clinic page: uploads scans to the local API and shows one card per scan.
"use strict";

const state = { results: [], worklist: false, allHeatmaps: false, model: null };
const $ = (id) => document.getElementById(id);

function percent(p) { return (100 * p).toFixed(1) + "%"; }

async function loadModel() {
  try {
    const r = await fetch("/api/v1/model");
    state.model = await r.json();
    const m = state.model;
    $("model-info").textContent = `Model ${m.architecture}, braintriage ${m.package_version}; ` +
      `flags a scan when P(tumor) ≥ ${m.threshold.toFixed(2)}.`;
  } catch (e) {
    $("model-info").textContent = "Model information unavailable.";
  }
}

async function analyse(fileList) {
  const files = Array.from(fileList);
  if (!files.length) return;
  $("status").textContent = `Analysing ${files.length} scan${files.length > 1 ? "s" : ""}…`;
  const batchSize = 16;
  let failed = 0;
  for (let i = 0; i < files.length; i += batchSize) {
    const form = new FormData();
    files.slice(i, i + batchSize).forEach((f) => form.append("files", f, f.name));
    try {
      const r = await fetch("/api/v1/predict?heatmap=true", { method: "POST", body: form });
      const body = await r.json();
      if (body.results) {
        state.results.push(...body.results);
      } else {
        const message = typeof body.detail === "string" ? body.detail : `error ${r.status}`;
        files.slice(i, i + batchSize).forEach((f) => state.results.push({ filename: f.name, error: message }));
      }
    } catch (e) {
      files.slice(i, i + batchSize).forEach((f) => state.results.push({ filename: f.name, error: "no answer from the server" }));
    }
    render();
  }
  failed = state.results.filter((r) => r.tumor_probability === null || r.tumor_probability === undefined).length;
  const flagged = state.results.filter((r) => r.prediction === "tumor").length;
  $("status").textContent = `${state.results.length} scan(s) analysed: ${flagged} flagged for review` +
    (failed ? `, ${failed} could not be read.` : ".");
}

function card(result, index) {
  const li = document.createElement("li");
  const article = document.createElement("article");
  li.appendChild(article);
  const failed = result.tumor_probability === null || result.tumor_probability === undefined;
  const unreliable = result.reliable === false;  // only inputs unlike brain MRI: the warning replaces the verdict
  article.className = "card " + (failed ? "error" : unreliable ? "warning" : result.prediction);
  article.setAttribute("aria-label", result.filename);
  const name = document.createElement("p");
  name.className = "filename";
  name.textContent = result.filename;

  if (result.tumor_probability === null || result.tumor_probability === undefined) {
    const v = document.createElement("p");
    v.className = "verdict";
    v.textContent = "Could not be analysed";
    const why = document.createElement("p");
    why.className = "secondary";
    why.textContent = result.error;
    article.append(v, why, name);
    return li;
  }
  const figure = document.createElement("figure");
  figure.className = "scan";
  const img = document.createElement("img");
  img.src = "data:image/png;base64," + result.image;
  img.alt = "Scan " + result.filename;
  figure.appendChild(img);
  let heat = null;
  if (result.heatmap) {
    heat = document.createElement("img");
    heat.className = "heat";
    heat.src = "data:image/png;base64," + result.heatmap;
    heat.alt = "Heat map: where the model found evidence of a tumor";
    heat.hidden = !(state.allHeatmaps || result._showHeat);
    figure.appendChild(heat);
  }
  const verdict = document.createElement("p");
  verdict.className = "verdict";
  verdict.textContent = unreliable ? "No verdict: " + result.warning
    : result.prediction === "tumor" ? "Tumor suspected: refer for specialist review" : "No tumor detected";
  const prob = document.createElement("p");
  prob.className = "probability";
  prob.textContent = `Probability of tumor: ${percent(result.tumor_probability)}`;
  article.append(figure, verdict);
  if (!unreliable) article.appendChild(prob);  // no confident numbers for an input unlike brain MRI
  if (result.study) {
    const st = document.createElement("p");
    st.className = "secondary study";
    st.textContent = `Study ${result.study}: ${result.slices} slice${result.slices === 1 ? "" : "s"}; most suspicious: ` +
      `${result.top_slices.join(", ")} (shown)`;
    article.appendChild(st);
  }
  if (result.predicted_type && result.type_probabilities && !unreliable) {
    const t = document.createElement("p");
    t.className = "secondary type";
    const label = result.predicted_type.replace("_", " ");
    t.textContent = `Most likely type: ${label} (${percent(result.type_probabilities[result.predicted_type])})`;
    article.appendChild(t);
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
  const printed = document.createElement("p");
  printed.className = "print-only secondary";
  printed.textContent = `Model ${state.model ? state.model.architecture + ", braintriage " + state.model.package_version : ""}; ` +
    `threshold ${result.threshold.toFixed(2)}. Decision support, not a diagnosis: a flag means refer for specialist review.`;
  if (result.warning && !unreliable) {  // a study with slices left out
    const w = document.createElement("p");
    w.className = "secondary warning";
    w.textContent = result.warning;
    article.appendChild(w);
  }
  if (result.error) {  // a study scored although some slices could not be read
    const warn = document.createElement("p");
    warn.className = "secondary";
    warn.textContent = result.error;
    article.appendChild(warn);
  }
  article.append(name, printed);
  return li;
}

function render() {
  const list = $("results");
  list.replaceChildren();
  let rows = state.results.slice();
  if (state.worklist) {
    const score = (r) => (r.tumor_probability === null || r.tumor_probability === undefined ? -1 : r.tumor_probability);
    rows.sort((a, b) => score(b) - score(a));
  }
  rows.forEach((r, i) => list.appendChild(card(r, i)));
  $("results-section").hidden = state.results.length === 0;
}

function exportCsv() {
  const cols = ["filename", "study", "tumor_probability", "prediction", "predicted_type", "slices", "threshold",
                "warning", "error"];
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
  $("print").addEventListener("click", () => window.print());
  $("clear").addEventListener("click", () => { state.results = []; $("status").textContent = ""; render(); });
});
