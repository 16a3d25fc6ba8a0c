"""Drawing of ``gridstudy explore``: an :class:`~analysis.explore.ExploreInfo` as one HTML file.

The page is self-contained: Bokeh's JavaScript (``bokeh.min.js``, 1.3 MB, from the installed
package), the study's runs as one JSON object of column arrays, the embedded sample grids as
PNG data URIs and the page's own script (``analysis/explore.js``) are all inline, so the file
works from ``file://`` with no network. Bokeh draws the plots; ``explore.js`` filters the runs,
counts them and refills the plots' data sources in the page, with no server.
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import pandas as pd
from bokeh.embed import json_item
from bokeh.models import (
    ColumnDataSource,
    CustomJS,
    FixedTicker,
    HoverTool,
    LinearAxis,
    Range1d,
    TapTool,
)
from bokeh.palettes import Viridis256
from bokeh.plotting import figure
from bokeh.resources import Resources
from matplotlib.colors import to_hex

from analysis import explore
from analysis.explore import CURVES_FILE, ExploreInfo, FilterSpec, level_codes
from analysis.table import (
    MODEL_COLORS,
    axis_label,
    higher_is_better,
    model_label,
    models_present,
    score_label,
)
from gridstudy import results
from gridstudy.errors import UserError

HERE = Path(__file__).parent
SCATTER_Y_PREFERENCE: tuple[str, ...] = ("n_classes_covered", "frechet_distance", "precision")
TOOLS = "pan,box_zoom,reset,save"


def _level_text(column: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if column == "model":
        return model_label(value)
    if isinstance(value, float | np.floating):
        return f"{value:g}"
    return str(value)


def _floats(values: pd.Series) -> list[float | None]:
    """Floats for JSON: NaN and infinities become null (JSON has no NaN)."""
    arr = values.to_numpy(dtype=float)
    return [v if math.isfinite(v) else None for v in arr.tolist()]


def _round_sig(values: pd.Series, digits: int = 4) -> list[float | None]:
    arr = values.to_numpy(dtype=float).copy()
    ok = np.isfinite(arr) & (arr != 0)
    scale = 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(arr[ok]))))
    arr[ok] = np.round(arr[ok] * scale) / scale
    return [v if math.isfinite(v) else None for v in arr.tolist()]


def _filter_data(spec: FilterSpec, values: pd.Series) -> tuple[dict[str, Any], list]:
    """A filter's description for the page and the column as the page stores it."""
    meta: dict[str, Any] = {"column": spec.column, "label": axis_label(spec.column),
                            "kind": spec.kind}
    if spec.kind == "levels":
        meta["levels"] = [_level_text(spec.column, v) for v in spec.levels]
        return meta, level_codes(values, spec.levels).tolist()
    meta.update(low=spec.low, high=spec.high)
    return meta, _floats(values)


def _curve_data(info: ExploreInfo) -> dict[str, list] | None:
    """Curves as column arrays in run order, with offsets: run i is rows offsets[i]:offsets[i+1]."""
    if info.curves is None:
        return None
    index = pd.Series(np.arange(len(info.runs)), index=info.runs["run_id"])
    frame = info.curves.assign(run=info.curves["run_id"].map(index))
    frame = frame.sort_values(["run", "step"], kind="stable")
    counts = np.bincount(frame["run"].to_numpy(dtype=int), minlength=len(info.runs))
    out: dict[str, list] = {"offsets": np.concatenate([[0], np.cumsum(counts)]).tolist()}
    for col in frame.columns.drop(["run_id", "run"]):
        out[col] = _round_sig(frame[col])
    return out


def _scatter_default(info: ExploreInfo) -> list[str]:
    others = [s for s in info.scores if s != info.score]
    preferred = [s for s in SCATTER_Y_PREFERENCE if s in others]
    return [info.score, (preferred or others or [info.score])[0]]


def page_data(info: ExploreInfo) -> dict[str, Any]:
    """Everything the page script needs, as JSON-ready lists (columns as arrays)."""
    runs, columns, filters = info.runs, {}, []
    for spec in info.filters:
        meta, columns[spec.column] = _filter_data(spec, runs[spec.column])
        filters.append(meta)
    status_levels = sorted(runs["status"].fillna("missing").unique()) if "status" in runs else []
    columns["run_id"] = runs["run_id"].astype(str).tolist()
    columns["status"] = (level_codes(runs["status"].fillna("missing"), status_levels).tolist()
                         if status_levels else [0] * len(runs))
    for score in info.scores:
        columns[score] = _floats(runs[score])
    index = {rid: i for i, rid in enumerate(columns["run_id"])}
    images = info.samples.images
    return {
        "study": info.study, "score": info.score, "scatter": _scatter_default(info),
        "models": [{"key": m, "label": model_label(m), "color": _color(m)}
                   for m in models_present(runs)],
        "scores": [{"name": s, "label": score_label(s), "higher": higher_is_better(s),
                    "edges": info.edges[s].tolist()} for s in info.scores],
        "filters": filters, "axes": info.axes, "parallel": info.parallel,
        "palette": list(Viridis256[::4]), "status_levels": status_levels or ["ok"],
        "runs": columns,
        "samples": {str(index[rid]): uri for rid, uri in images.items() if rid in index},
        "kept_not_embedded": sorted(index[r] for r in info.samples.kept - set(images)
                                    if r in index),
        "sample_budget_mb": round(info.samples.budget / 1e6, 1),
        "curves": _curve_data(info), "curves_file": CURVES_FILE,
    }


def _color(model: str) -> str:
    return to_hex(MODEL_COLORS.get(model, "tab:gray"))


def _figure(**kwargs: Any) -> Any:
    fig = figure(sizing_mode="stretch_width", tools=TOOLS, toolbar_location="above", **kwargs)
    fig.toolbar.logo = None
    fig.outline_line_color = None
    return fig


def _histogram_figure(info: ExploreInfo) -> Any:
    edges = info.edges[info.score]
    fig = _figure(height=330, x_range=Range1d(edges[0], edges[-1], name="fig2-x"),
                  y_range=Range1d(0, 100, name="fig2-y"))
    fig.xaxis.axis_label = score_label(info.score)
    fig.xaxis[0].name = "fig2-xaxis"
    fig.yaxis.axis_label = "% of the model's scored runs"
    for model in models_present(info.runs):
        source = ColumnDataSource({"left": [], "right": [], "top": [], "count": []},
                                  name=f"hist-{model}")
        fig.quad(left="left", right="right", bottom=0, top="top", source=source,
                 fill_color=_color(model), fill_alpha=0.45, line_color=_color(model),
                 legend_label=model_label(model))
    fig.add_tools(HoverTool(tooltips=[("bin", "@left{0.[000]} to @right{0.[000]}"),
                                      ("share", "@top{0.0}%"), ("runs", "@count")]))
    fig.legend.location = "top_right"
    fig.legend.click_policy = "hide"
    return fig


def _parallel_figure(info: ExploreInfo) -> Any:
    n_axes = len(info.parallel) + 1
    fig = _figure(height=360, x_range=Range1d(-0.3, n_axes - 0.5), y_range=Range1d(-0.06, 1.06))
    fig.multi_line(xs="xs", ys="ys", line_color="color", line_alpha=0.25, line_width=1,
                   source=ColumnDataSource({"xs": [], "ys": [], "color": []}, name="pc-lines"),
                   name="pc-glyph")
    fig.segment(x0=list(range(n_axes)), y0=[0] * n_axes, x1=list(range(n_axes)),
                y1=[1] * n_axes, line_color="#444", line_width=1.5)
    labels = _parallel_labels(info)
    for source in (ColumnDataSource(labels),
                   ColumnDataSource({"x": [], "y": [], "text": []}, name="pc-score-labels")):
        fig.text(x="x", y="y", text="text", source=source, text_font_size="9pt",
                 text_baseline="middle", x_offset=5, background_fill_color="white",
                 background_fill_alpha=0.75)
    fig.xaxis.ticker = FixedTicker(ticks=list(range(n_axes)))
    fig.xaxis.major_label_overrides = {i: axis_label(a) for i, a in enumerate(info.parallel)}
    fig.xaxis.major_label_overrides[n_axes - 1] = score_label(info.score)
    fig.xaxis[0].name = "pc-xaxis"
    fig.yaxis.visible = False
    fig.ygrid.visible = fig.xgrid.visible = False
    return fig


def _parallel_labels(info: ExploreInfo) -> dict[str, list]:
    """Level labels beside each hyperparameter axis (positions as explore.js computes them)."""
    specs = {s.column: s for s in info.filters}
    out: dict[str, list] = {"x": [], "y": [], "text": []}
    for i, axis in enumerate(info.parallel):
        spec = specs[axis]
        if spec.kind == "levels":
            n = len(spec.levels)
            ys = [0.5] if n == 1 else [k / (n - 1) for k in range(n)]
            texts = [_level_text(axis, v) for v in spec.levels]
        else:
            ys, texts = [0.0, 1.0], [f"{spec.low:g}", f"{spec.high:g}"]
        out["x"] += [i] * len(ys)
        out["y"] += ys
        out["text"] += texts
    return out


def _scatter_figure(info: ExploreInfo) -> Any:
    x, y = _scatter_default(info)
    fig = _figure(height=330, title=" ", x_range=Range1d(0, 1, name="sc-x"),
                  y_range=Range1d(0, 1, name="sc-y"))
    fig.title.name = "sc-title"
    source = ColumnDataSource({"x": [], "y": [], "color": [], "run": [], "run_id": [],
                               "model": []}, name="sc-points")
    fig.scatter("x", "y", source=source, color="color", alpha=0.55, size=5,
                selection_color="black", nonselection_alpha=0.3)
    fig.xaxis.axis_label, fig.yaxis.axis_label = score_label(x), score_label(y)
    fig.xaxis[0].name, fig.yaxis[0].name = "sc-xaxis", "sc-yaxis"
    fig.add_tools(TapTool(), HoverTool(tooltips=[("run", "@run_id"), ("model", "@model"),
                                                 ("x", "@x{0.[000]}"), ("y", "@y{0.[000]}")]))
    source.selected.js_on_change("indices", CustomJS(
        args={"source": source}, code="if (window.gsPickFromScatter) gsPickFromScatter(source);"))
    return fig


def _curve_figure() -> Any:
    """The selected run's training curve: I' and classes covered (left axis), losses (right)."""
    source = ColumnDataSource({"step": [], "i_prime": [], "n_classes_covered": [], "loss_d": [],
                               "loss_g": []}, name="cv-source")
    fig = _figure(height=260, x_range=Range1d(0, 1, name="cv-x"),
                  y_range=Range1d(0, 1, name="cv-y"))
    fig.extra_y_ranges = {"loss": Range1d(0, 1, name="cv-yloss")}
    fig.add_layout(LinearAxis(y_range_name="loss", axis_label="loss"), "right")
    fig.xaxis.axis_label = "step"
    fig.yaxis[0].axis_label = "I', classes covered"
    lines = (("i_prime", "I'", "#1f77b4", "solid", "default"),
             ("n_classes_covered", "classes covered", "#2ca02c", "solid", "default"),
             ("loss_d", "loss D", "#d62728", "dashed", "loss"),
             ("loss_g", "loss G", "#ff7f0e", "dashed", "loss"))
    for column, label, color, dash, y_range in lines:
        fig.line("step", column, source=source, color=color, line_width=2, line_dash=dash,
                 y_range_name=y_range, legend_label=label)
        fig.scatter("step", column, source=source, color=color, size=4, y_range_name=y_range)
    legend = fig.legend[0]
    legend.orientation, legend.label_text_font_size = "horizontal", "9pt"
    fig.add_layout(legend, "below")
    return fig


def plot_items(info: ExploreInfo) -> dict[str, Any]:
    """Bokeh's JSON of each plot, keyed by the id of the page element it fills."""
    return {"gs-fig2": json_item(_histogram_figure(info)),
            "gs-parallel": json_item(_parallel_figure(info)),
            "gs-scatter": json_item(_scatter_figure(info)),
            "gs-curves": json_item(_curve_figure())}


def _cell(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else f"{value:.3g}"
    return html.escape(str(value))


def html_table(frame: pd.DataFrame) -> str:
    """A plain HTML table of ``frame`` (floats to 3 significant digits)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table class='gs-stats'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _comparison(frame: pd.DataFrame, first: str) -> pd.DataFrame:
    out = pd.DataFrame({first: frame[first] if first == "panel" else frame[first].map(
        lambda s: f"{score_label(s)} ({'higher' if higher_is_better(s) else 'lower'} better)")})
    out["comparison"] = (frame["model_a"].map(model_label) + " vs "
                         + frame["model_b"].map(model_label))
    for col in ("n_a", "n_b", "median_a", "median_b", "u_pvalue", "ks_stat", "cliffs_delta"):
        out[col] = frame[col]
    out["better"] = frame["better"].map(lambda m: model_label(m) if m != "tie" else m)
    return out


def headline_html(info: ExploreInfo) -> str:
    """The report's headline statistics as HTML (status counts, tests, success shares)."""
    h, score = info.headline, info.score
    counts = h.counts.assign(model=h.counts["model"].map(model_label))
    parts = ["<h3>Runs per model</h3>", html_table(counts)]
    if len(h.comparison):
        parts += ["<h3>EBGAN vs GAN under every score (all runs on this page)</h3>",
                  "<p>Mann-Whitney U p-value and two-sample KS on scored runs; Cliff's δ = "
                  "P(a &gt; b) − P(a &lt; b) on raw values.</p>",
                  html_table(_comparison(h.comparison, "score")),
                  f"<h3>Per Figure 2 panel ({html.escape(score_label(score))})</h3>",
                  html_table(_comparison(h.panels, "panel"))]
    else:
        parts.append("<p>No EBGAN/GAN pair in this study: no comparison.</p>")
    success = h.success
    if len(success):
        sign = "≥" if higher_is_better(score) else "≤"
        shares = pd.DataFrame({
            "model": success["model"].map(model_label), "successes": success["n_success"],
            "n": success["n"], "share": success["share"], "95% CI low": success["ci_low"],
            "95% CI high": success["ci_high"]})
        parts += [f"<h3>Successful runs: {html.escape(score_label(score))} {sign} "
                  f"{success['threshold'].iloc[0]:g}</h3>",
                  "<p>Diverged runs without a score count as unsuccessful; failed runs are "
                  f"left out ({int(success['n_excluded'].sum())} excluded).</p>",
                  html_table(shares)]
    return "\n".join(parts)


def _inline_json(value: Any) -> str:
    """JSON safe inside a <script> element (no '</' can close it early)."""
    return json.dumps(value, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")


def _bokeh_js() -> str:
    js = "\n".join(Resources(mode="inline", components=["bokeh"]).js_raw)
    if "</script" in js.lower():
        raise RuntimeError("bokeh's JavaScript contains '</script'; it cannot be inlined as is")
    return js


def render_page(info: ExploreInfo, *, selection: str | None = None) -> str:
    """The explorer page of ``info`` as one self-contained HTML document."""
    n = len(info.runs)
    subtitle = f"{n:,} runs" + (f" where <code>{html.escape(selection)}</code>"
                                if selection else "")
    template = Template((HERE / "explore.html").read_text(encoding="utf-8"))
    return template.substitute(
        title=html.escape(f"gridstudy explore: {info.study}"), study=html.escape(info.study),
        subtitle=subtitle, css=(HERE / "explore.css").read_text(encoding="utf-8"),
        bokeh_js=_bokeh_js(), data=_inline_json(page_data(info)),
        plots=_inline_json(plot_items(info)), headline=headline_html(info),
        script=(HERE / "explore.js").read_text(encoding="utf-8"))


def write_explorer(study_dir: str | Path, out: str | Path | None = None, *,
                   score: str = "i_prime", where: str | None = None) -> Path:
    """Write the explorer page of ``study_dir`` (default ``results/NAME/explore.html``)."""
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise UserError(f"{study_dir}: no such study folder")
    df = results.load_results(study_dir)
    if where:
        selected = results.query_results(df, where)
        if selected.empty:
            raise UserError(f"--where {where!r} selects none of the {len(df)} runs")
        df = selected
    names = df["study"].dropna().unique() if "study" in df else []
    study = str(names[0]) if len(names) == 1 else study_dir.resolve().name
    explore.check_score(df, score, study)
    out = Path(out) if out else study_dir / "explore.html"
    _check_writable(out)  # before the work, not after it
    samples = explore.study_samples(study_dir, df, score)
    info = explore.explore_info(df, study=study, score=score, samples=samples,
                                curves=explore.load_curves(study_dir))
    return _write_atomic(render_page(info, selection=where), out)


def _check_writable(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: not writable ({exc.strerror or exc})") from None
    if not os.access(out.parent, os.W_OK):
        raise UserError(f"--out {out}: not writable (no write permission on {out.parent})")


def _write_atomic(text: str, out: Path) -> Path:
    """Write ``text`` to ``out`` through a temporary file: never a half-written page."""
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}-", suffix=".tmp", dir=out.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, results.new_file_mode())  # a page to share: not mkstemp's 0600
        os.replace(tmp, out)
    except OSError as exc:
        raise UserError(f"--out {out}: not writable ({exc.strerror or exc})") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return out
