/* gridstudy explore: filters, run counts, plots, runs table and run details of one study.
 *
 * Everything is computed here, in the page, from the inline JSON "gs-data" (the runs as column
 * arrays; level-coded columns hold indices into their filter's levels). Bokeh draws the plots
 * whose JSON is in "gs-plots"; this script refills their data sources whenever a control moves.
 * Runs without a finite score are counted ("k not scored") and left out of what needs the score.
 */
"use strict";

const D = JSON.parse(document.getElementById("gs-data").textContent);
const PLOTS = JSON.parse(document.getElementById("gs-plots").textContent);
const N = D.runs.run_id.length;
const SCORES = Object.fromEntries(D.scores.map((s) => [s.name, s]));
const FILTERS = Object.fromEntries(D.filters.map((f) => [f.column, f]));
const MODEL_CODE = D.runs.model;  // codes into D.models (the model filter lists them in order)
const S = {score: D.score, x: D.scatter[0], y: D.scatter[1], sort: D.score,
           desc: SCORES[D.score].higher, top: 20, selected: -1};
let shown = [];  // indices of the runs that pass every filter

function byId(id) { return document.getElementById(id); }
function esc(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
                                                  '"': "&quot;"}[c]));
}
function fmt(v) {
  if (v === null || v === undefined) return "";
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 1000 ? v.toFixed(0) : Number(v.toPrecision(4)).toString();
}
function tickText(v, span) {  // 3 significant digits; a float's rounding noise near 0 is 0
  return Math.abs(v) < 1e-9 * span ? "0" : Number(v.toPrecision(3)).toString();
}
function plotModel(name) {
  for (const doc of Bokeh.documents) {
    const found = doc.get_model_by_name(name);
    if (found) return found;
  }
  throw new Error(`gridstudy explore: no plot element named ${name}`);
}

/* ---- controls ---------------------------------------------------------------------------- */

function levelCounts(f) {
  const counts = new Array(f.levels.length).fill(0);
  for (const code of D.runs[f.column]) counts[code] += 1;
  return counts;
}

function buildFilters() {
  const box = byId("gs-filters");
  for (const f of D.filters) {
    const set = document.createElement("fieldset");
    set.dataset.column = f.column;
    set.innerHTML = `<legend>${esc(f.label)}</legend>`;
    if (f.kind === "levels") {
      const counts = levelCounts(f);
      f.inputs = f.levels.map((level, code) => {
        const label = document.createElement("label");
        label.innerHTML = `<input type="checkbox" checked data-column="${esc(f.column)}" ` +
          `data-level="${esc(level)}"> ${esc(level)} ` +
          `<span class="gs-count-level">(${counts[code]})</span>`;
        set.appendChild(label);
        return label.querySelector("input");
      });
    } else {
      set.innerHTML += `<label>from <input type="number" step="any" value="${f.low}" ` +
        `data-column="${esc(f.column)}" data-bound="low"></label>` +
        `<label>to <input type="number" step="any" value="${f.high}" ` +
        `data-column="${esc(f.column)}" data-bound="high"></label>` +
        `<span class="gs-hint">missing values always pass</span>`;
      f.inputs = [set.querySelector("[data-bound=low]"), set.querySelector("[data-bound=high]")];
    }
    box.appendChild(set);
  }
  box.addEventListener("change", refresh);
  byId("gs-reset").addEventListener("click", () => {
    for (const f of D.filters) {
      if (f.kind === "levels") f.inputs.forEach((input) => { input.checked = true; });
      else { f.inputs[0].value = f.low; f.inputs[1].value = f.high; }
    }
    refresh();
  });
}

function buildSelects() {
  const options = D.scores.map((s) => `<option value="${s.name}">${esc(s.label)}</option>`);
  for (const [id, key] of [["gs-score", "score"], ["gs-x", "x"], ["gs-y", "y"]]) {
    const select = byId(id);
    select.innerHTML = options.join("");
    select.value = S[key];
    select.addEventListener("change", () => {
      S[key] = select.value;
      if (key === "score") { S.sort = S.score; S.desc = SCORES[S.score].higher; }
      refresh();
    });
  }
  byId("gs-top").addEventListener("change", (event) => {
    S.top = Math.max(1, parseInt(event.target.value, 10) || 1);
    drawTable();
  });
}

/* ---- filtering and counts ---------------------------------------------------------------- */

function applyFilters() {
  const pass = new Uint8Array(N).fill(1);
  for (const f of D.filters) {
    const column = D.runs[f.column];
    if (f.kind === "levels") {
      const keep = f.inputs.map((input) => input.checked);
      for (let i = 0; i < N; i++) if (!keep[column[i]]) pass[i] = 0;
    } else {
      const low = parseFloat(f.inputs[0].value), high = parseFloat(f.inputs[1].value);
      for (let i = 0; i < N; i++) {
        const v = column[i];
        if (v !== null && ((!Number.isNaN(low) && v < low) || (!Number.isNaN(high) && v > high)))
          pass[i] = 0;
      }
    }
  }
  shown = [];
  for (let i = 0; i < N; i++) if (pass[i]) shown.push(i);
}

function drawCounts() {
  const values = D.runs[S.score];
  const runs = D.models.map(() => 0), notScored = D.models.map(() => 0);
  for (const i of shown) {
    const m = MODEL_CODE[i];
    if (m >= D.models.length) continue;
    runs[m] += 1;
    if (values[i] === null) notScored[m] += 1;
  }
  const total = `<span id="gs-total" data-runs="${shown.length}"><b>${shown.length}</b> of ` +
    `${N} runs</span>: `;
  byId("gs-counts").innerHTML = total + D.models.map((m, k) =>
    `<span class="gs-count" data-model="${m.key}" data-runs="${runs[k]}" ` +
    `data-not-scored="${notScored[k]}"><span class="gs-swatch" ` +
    `style="background:${m.color}"></span>${esc(m.label)}: <b>${runs[k]}</b> runs ` +
    `(${notScored[k]} not scored)</span>`).join("");
}

/* ---- plots -------------------------------------------------------------------------------- */

function binOf(edges, v) {  // numpy's histogram bins: [e_k, e_k+1), the last one closed
  const last = edges.length - 1;
  if (!(v >= edges[0] && v <= edges[last])) return -1;
  if (v === edges[last]) return last - 1;
  let lo = 0, hi = last;
  while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (v >= edges[mid]) lo = mid; else hi = mid; }
  return lo;
}

function drawHistogram() {
  const score = SCORES[S.score], edges = score.edges, values = D.runs[S.score];
  const counts = D.models.map(() => new Array(edges.length - 1).fill(0));
  const scored = D.models.map(() => 0);
  for (const i of shown) {
    const m = MODEL_CODE[i], b = values[i] === null ? -1 : binOf(edges, values[i]);
    if (m < D.models.length && b >= 0) { counts[m][b] += 1; scored[m] += 1; }
  }
  let highest = 0;
  D.models.forEach((model, m) => {
    const top = counts[m].map((c) => (scored[m] ? 100 * c / scored[m] : 0));
    highest = Math.max(highest, ...top);
    plotModel(`hist-${model.key}`).data = {left: edges.slice(0, -1), right: edges.slice(1),
                                           top, count: counts[m]};
  });
  const x = plotModel("fig2-x"), y = plotModel("fig2-y");
  x.setv({start: edges[0], end: edges[edges.length - 1]});
  y.setv({start: 0, end: Math.max(5, Math.ceil(highest * 1.08))});
  plotModel("fig2-xaxis").axis_label = axisTitle(score);
}

function fitRange(name, values) {  // a Range1d around the finite values, 4% padding
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (lo > hi) { lo = 0; hi = 1; }
  const pad = hi > lo ? 0.04 * (hi - lo) : Math.max(0.5, Math.abs(lo) * 0.1);
  plotModel(name).setv({start: lo - pad, end: hi + pad});
}

function axisTitle(score) {
  return `${score.label} (${score.higher ? "higher" : "lower"} is better)`;
}

function axisPosition(column, i) {
  const f = FILTERS[column], v = D.runs[column][i];
  if (f.kind === "levels") return f.levels.length === 1 ? 0.5 : v / (f.levels.length - 1);
  if (v === null) return null;
  return f.high > f.low ? (v - f.low) / (f.high - f.low) : 0.5;
}

function goodness(score, v) {  // 0 worst .. 1 best of the score's range, for colours
  const lo = score.edges[0], hi = score.edges[score.edges.length - 1];
  const t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
  return score.higher ? t : 1 - t;
}

function drawParallel() {
  const score = SCORES[S.score], values = D.runs[S.score], axes = D.parallel;
  const lo = score.edges[0], hi = score.edges[score.edges.length - 1];
  const positions = axes.map((_, k) => k).concat([axes.length]);
  const lines = [];
  let skipped = 0;
  for (const i of shown) {
    if (values[i] === null) { skipped += 1; continue; }
    const y = axes.map((column) => axisPosition(column, i));
    y.push(hi > lo ? (values[i] - lo) / (hi - lo) : 0.5);
    lines.push([goodness(score, values[i]), y]);
  }
  lines.sort((a, b) => a[0] - b[0]);  // the best runs are drawn last, on top
  const last = D.palette.length - 1;
  plotModel("pc-lines").data = {xs: lines.map(() => positions), ys: lines.map((l) => l[1]),
                                color: lines.map((l) => D.palette[Math.round(l[0] * last)])};
  plotModel("pc-glyph").glyph.line_alpha = Math.min(0.5, Math.max(0.03, 60 / (lines.length + 1)));
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  plotModel("pc-score-labels").data = {x: ticks.map(() => axes.length), y: ticks,
                                       text: ticks.map((t) => tickText(lo + t * (hi - lo), hi - lo))};
  const short = score.label.split(" (")[0];  // "Fréchet distance (classifier ...)" is too wide
  const labels = axes.map((c, k) => [k, FILTERS[c].label]).concat([[axes.length, short]]);
  plotModel("pc-xaxis").major_label_overrides = new Map(labels);  // a Bokeh Dict is a JS Map
  byId("gs-parallel-note").textContent = `${lines.length} scored runs drawn` +
    (skipped ? `; ${skipped} runs without a ${score.label} are not drawn` : "") +
    `. Colour: ${score.label}, yellow is better; the best runs are drawn on top. ` +
    "A hyperparameter's levels are spread evenly along its axis.";
}

function drawScatter() {
  const X = SCORES[S.x], Y = SCORES[S.y], xv = D.runs[S.x], yv = D.runs[S.y];
  const data = {x: [], y: [], color: [], run: [], run_id: [], model: []};
  let skipped = 0;
  for (const i of shown) {
    if (xv[i] === null || yv[i] === null) { skipped += 1; continue; }
    const model = D.models[MODEL_CODE[i]];
    data.x.push(xv[i]); data.y.push(yv[i]); data.run.push(i);
    data.run_id.push(D.runs.run_id[i]);
    data.color.push(model ? model.color : "#888");
    data.model.push(model ? model.label : "?");
  }
  fitRange("sc-x", X.edges);
  fitRange("sc-y", Y.edges);
  const source = plotModel("sc-points");
  source.selected.indices = [];
  source.data = data;
  plotModel("sc-xaxis").axis_label = axisTitle(X);
  plotModel("sc-yaxis").axis_label = axisTitle(Y);
  plotModel("sc-title").text = `${data.x.length} runs` +
    (skipped ? ` (${skipped} without both scores not drawn)` : "");
}

window.gsPickFromScatter = function (source) {
  const picked = source.selected.indices;
  if (picked.length) selectRun(source.data.run[picked[0]]);
};

/* ---- runs table --------------------------------------------------------------------------- */

function tableColumns() {
  const levels = ["seed", ...D.axes].filter((c) => FILTERS[c]);
  return [{key: "run_id", label: "run"}, {key: "model", label: "model"},
          {key: "status", label: "status"},
          ...D.scores.map((s) => ({key: s.name, label: s.label, num: true})),
          ...levels.map((c) => ({key: c, label: FILTERS[c].label}))];
}

function cellText(key, i) {
  const v = D.runs[key][i];
  if (key === "status") return D.status_levels[v];
  const f = FILTERS[key];
  if (f && f.kind === "levels") return f.levels[v];
  return typeof v === "number" ? fmt(v) : (v === null ? "" : String(v));
}

function sortedShown() {
  const column = D.runs[S.sort], sign = S.desc ? -1 : 1;
  return shown.slice().sort((a, b) => {
    const va = column[a], vb = column[b];
    if (va === null || vb === null) return (va === null) - (vb === null);
    if (va < vb) return -sign;
    if (va > vb) return sign;
    return a - b;
  });
}

function drawTable() {
  const columns = tableColumns(), rows = sortedShown().slice(0, S.top);
  const head = columns.map((c) => `<th data-key="${c.key}">${esc(c.label)}` +
    (c.key === S.sort ? (S.desc ? " ▼" : " ▲") : "") + "</th>").join("");
  const body = rows.map((i) => `<tr data-run="${i}"${i === S.selected ? ' class="gs-selected"' : ""}>` +
    columns.map((c) => `<td${c.num ? ' class="gs-num"' : ""}>${esc(cellText(c.key, i))}</td>`)
      .join("") + "</tr>").join("");
  byId("gs-table").innerHTML = `<thead><tr>${head}</tr></thead><tbody>${body}</tbody>`;
  const label = (tableColumns().find((c) => c.key === S.sort) || {label: S.sort}).label;
  byId("gs-table-note").textContent = `${rows.length} of the ${shown.length} runs under the ` +
    `filters, by ${label} ${S.desc ? "descending" : "ascending"}; click a header to sort, ` +
    "a row to see its samples and training curve";
}

function onTableClick(event) {
  const header = event.target.closest("th");
  if (header) {
    const key = header.dataset.key;
    if (S.sort === key) S.desc = !S.desc;
    else { S.sort = key; S.desc = SCORES[key] ? SCORES[key].higher : false; }
    drawTable();
    return;
  }
  const row = event.target.closest("tr[data-run]");
  if (row) selectRun(parseInt(row.dataset.run, 10));
}

/* ---- the selected run --------------------------------------------------------------------- */

function describeRun(i) {
  const model = D.models[MODEL_CODE[i]];
  const config = ["seed", ...D.axes].filter((c) => FILTERS[c])
    .map((c) => `${FILTERS[c].label}=${cellText(c, i)}`).join(", ");
  byId("gs-run").innerHTML = `<b>${esc(D.runs.run_id[i])}</b> ` +
    `(${esc(model ? model.label : "?")}, ${esc(cellText("status", i))}): ${esc(config)}. ` +
    `${esc(SCORES[S.score].label)} = ${esc(fmt(D.runs[S.score][i]) || "not scored")}`;
}

async function selectRun(i) {
  S.selected = i;
  describeRun(i);
  const uri = D.samples[String(i)];
  let samples;
  if (uri) {
    samples = `<img id="gs-sample-img" alt="samples of run ${esc(D.runs.run_id[i])}" ` +
      `src="${uri}"><span class="gs-hint">the run's 64 kept samples</span>`;
  } else if (D.kept_not_embedded.includes(i)) {
    samples = `<span class="gs-hint">Samples kept in the study but not embedded in this page: ` +
      `it holds the samples of the best runs of each model, up to ${D.sample_budget_mb} MB.` +
      "</span>";
  } else {
    samples = '<span class="gs-hint">No samples kept for this run (a study exported with ' +
      "<code>gridstudy results export --best K</code> keeps the best K per model).</span>";
  }
  byId("gs-samples").innerHTML = samples;
  for (const tr of document.querySelectorAll("#gs-table tbody tr")) {
    tr.classList.toggle("gs-selected", parseInt(tr.dataset.run, 10) === i);
  }
  await drawCurve(i);
}

let curvePlot = null;  // embedded on the first curve shown: a page without curves never pays
function embedCurvePlot() {
  if (!curvePlot) curvePlot = Bokeh.embed.embed_item(PLOTS["gs-curves"], "gs-curves");
  return curvePlot;
}

async function drawCurve(i) {
  const C = D.curves, note = byId("gs-curve-note"), box = byId("gs-curves");
  const start = C ? C.offsets[i] : 0, stop = C ? C.offsets[i + 1] : 0;
  if (stop === start) {
    note.textContent = C ? "No training curve recorded for this run."
      : `No training curve recorded (the study has no ${D.curves_file}).`;
    box.style.display = "none";
    return;
  }
  note.textContent = `Training curve: ${stop - start} recorded steps.`;
  box.style.display = "";
  await embedCurvePlot();
  if (S.selected !== i) return;  // another run was selected meanwhile
  const data = {};
  for (const key of ["step", "i_prime", "n_classes_covered", "loss_d", "loss_g"]) {
    data[key] = C[key].slice(start, stop).map((v) => (v === null ? NaN : v));
  }
  plotModel("cv-source").data = data;
  fitRange("cv-x", data.step);
  fitRange("cv-y", data.i_prime.concat(data.n_classes_covered));
  fitRange("cv-yloss", data.loss_d.concat(data.loss_g));
}

/* ---- start -------------------------------------------------------------------------------- */

function refresh() {
  applyFilters();
  for (const span of document.querySelectorAll(".gs-score-name")) {
    span.textContent = SCORES[S.score].label;
  }
  drawCounts();
  drawHistogram();
  drawParallel();
  drawScatter();
  drawTable();
  if (S.selected >= 0) describeRun(S.selected);  // the chosen score's value may have changed
}

async function start() {
  buildFilters();
  buildSelects();
  Bokeh.set_log_level("warn");
  performance.mark("gs-start");
  for (const id of ["gs-fig2", "gs-scatter", "gs-parallel"]) {
    await Bokeh.embed.embed_item(PLOTS[id], id);
  }
  performance.mark("gs-embedded");
  byId("gs-table").addEventListener("click", onTableClick);
  refresh();
  const best = sortedShown()[0];
  if (best !== undefined) await selectRun(best);
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  performance.mark("gs-ready");
  document.documentElement.dataset.ready = "1";
}

start().catch((error) => {
  console.error(error);
  document.querySelector("main").insertAdjacentHTML(
    "afterbegin", `<p id="gs-error" class="gs-full">The page failed to draw: ${esc(error)}</p>`);
});
