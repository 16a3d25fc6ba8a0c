"""The table's schema: the score registry, the labels of the config columns, and the import
graph that keeps analysis apart from training (analysis/schema.py)."""

from __future__ import annotations

import ast
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from analysis.schema import CURVE_SCORES, PAPER_NAMES, SCORE_NAMES, SCORES, compute_scores
from analysis.scores import PROB_EPS, i_prime
from gridstudy.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gridstudy", "analysis")
TRAINING = {f"gridstudy.{m}" for m in ("models", "losses", "train", "fused", "stacked", "study",
                                         "tune", "classifier")}


def _toy_inputs(seed: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(10, 0.2), size=200)
    return probs, rng.normal(size=(200, 16)).astype(np.float32), rng.normal(size=(300, 16))


def test_compute_scores_keys_and_values():
    probs, feats, real = _toy_inputs()
    scores = compute_scores(probs, feats, real)
    assert list(scores) == [*SCORE_NAMES, "prob_eps"]
    assert scores["prob_eps"] == PROB_EPS
    assert scores["i_prime"] == pytest.approx(i_prime(probs))
    assert scores["n_classes_covered"] == 10.0
    assert all(np.isfinite(v) for v in scores.values())
    assert 0.0 <= scores["precision"] <= 1.0 and 0.0 <= scores["recall"] <= 1.0


def test_compute_scores_takes_a_subset_and_records_its_eps():
    probs, feats, real = _toy_inputs()
    scores = compute_scores(probs, feats, real, eps=1e-6, names=["i_prime", "recall"])
    assert list(scores) == ["i_prime", "recall", "prob_eps"]
    assert scores["prob_eps"] == 1e-6
    assert scores["i_prime"] == pytest.approx(i_prime(probs, 1e-6))
    with pytest.raises(ValueError, match="unknown score 'fid'.*i_prime"):
        compute_scores(probs, feats, real, names=["fid"])


@pytest.mark.parametrize("where", ["probs", "features", "real_features"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_compute_scores_non_finite_gives_nan(where, bad):
    probs, feats, real = _toy_inputs()
    arrays = {"probs": probs, "features": feats, "real_features": real}
    arrays[where] = arrays[where].copy()
    arrays[where][0, 0] = bad
    scores = compute_scores(**arrays)
    assert all(math.isnan(scores[name]) for name in SCORE_NAMES)
    assert scores["prob_eps"] == PROB_EPS


def test_registry_entries():
    assert SCORES["i_prime"].label == "I'" and SCORES["i_prime"].higher_is_better
    assert not SCORES["frechet_distance"].higher_is_better
    assert all(name == score.name for name, score in SCORES.items())
    # precision and recall cost a k-NN search each: not computed during training
    assert "i_prime" in CURVE_SCORES and "recall" not in CURVE_SCORES


def test_every_config_field_has_a_label():
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    assert set(PAPER_NAMES) == fields - {"model", "seed"}


# --- the import graph -----------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str, known: set[str]) -> str | None:
    """The project module ``name`` refers to (a submodule, else its package), if any."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Module -> project modules it imports, at the top level or inside functions."""
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            edges |= {t for n in names if (t := _resolve(n, known)) and t != module}
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_analysis_imports_no_training_module():
    graph = import_graph()
    bad = {m: sorted(e & TRAINING) for m, e in graph.items()
           if m.startswith("analysis") and e & TRAINING}
    assert not bad


# What analysis may read of gridstudy: how tables, images and errors are stored and raised.
TABLE_IO = {"gridstudy", "gridstudy.results", "gridstudy.errors", "gridstudy.images",
            "gridstudy.config"}


def test_analysis_imports_only_gridstudys_table_io():
    """gridstudy uses analysis (scores, schema, stability); analysis reads gridstudy's tables
    (results, images, errors) and nothing else of it."""
    graph = import_graph()
    bad = {m: sorted(t for t in e if t.startswith("gridstudy") and t not in TABLE_IO)
           for m, e in graph.items() if m.startswith("analysis")}
    assert not {m: e for m, e in bad.items() if e}


def test_no_module_is_part_of_an_import_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
