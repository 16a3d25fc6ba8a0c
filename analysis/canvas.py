"""What every figure module shares: the files ``plot_study`` writes, how a figure is saved,
and the wording common to several figures. Imported by the figure modules, importing none of them.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from analysis.table import higher_is_better, score_label

POOLING_NOTE = ("Seeds of one configuration are pooled. Diverged runs that were still scored are "
                "included; 'not scored' counts runs with a NaN score (failed, or diverged before "
                "scoring), which are left out of the percentages.")
# File stems written by plot_study; the report links them by these names.
FIGURE_STEMS: dict[str, str] = {
    "fig2": "fig2_histograms",
    "fig3": "fig3_optim_lr",
    "fig4": "fig4_samples",
    "ecdf": "ecdf",
    "axes": "median_per_axis",
    "margin": "margin",
    "traj": "trajectories",
    "traj_optim": "trajectories_optim",
    "traj_optim_classes": "trajectories_optim_classes",
    "best_final": "best_vs_final",
    "scale": "scale",
}


def score_axis_label(score: str) -> str:
    """A score axis's label with its direction, e.g. "I' (higher is better)"."""
    return f"{score_label(score)} ({'higher' if higher_is_better(score) else 'lower'} is better)"


def save_figure(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write ``fig`` as ``stem.png`` and ``stem.pdf`` under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=110)
    # The layout is in figure units, the same for both files: freeze it instead of solving the
    # constrained layout a second time (a third of the time of a save).
    fig.set_layout_engine("none")
    fig.savefig(paths[1])
    return paths
