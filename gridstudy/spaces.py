"""Search spaces: declarative YAML grids expanded into run configs.

A file holds one block, or several under ``blocks:`` so one study can compare models::

    description: what the study is for          # optional
    blocks:
      - name: gan                               # optional, for --dry-run listings
        model: gan                              # or an axis: model: [ebgan, ebgan_pt]
        axes:                                   # crossed: every combination is a run
          n_layers_g: [2, 3]
          lr: [0.001, 0.0001]
        zip:                                    # keys varied together, crossed with axes
          - {size_g: [100, 200], size_d: [32, 64]}   # (100, 32) and (200, 64), not 4 pairs
        fixed: {steps: 3000}                    # the same for every run of the block
        seeds: [0, 1, 2]                        # the grid is repeated per seed

Keys under ``axes`` and ``fixed`` are exactly the run config's fields. Everything is checked
before anything launches; each problem is a one-line error naming the file and the key.
"""

from __future__ import annotations

import itertools
import reprlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gridstudy.config import FIELDS, RunConfig, coerce_value
from gridstudy.errors import UserError, one_line

BLOCK_KEYS = ("name", "model", "axes", "zip", "fixed", "seeds")
FILE_KEYS = ("description", "blocks")
MAX_FILE_BYTES = 1 << 20  # a search space is a few KB of YAML; the shipped ones are under 4 KB
MAX_RUNS = 1_000_000  # checked before expanding: 160x the paper's largest grid (6,144 runs)
_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Block:
    """One grid: its axes and zipped groups crossed, with fixed values, repeated per seed.

    A zipped group is several keys whose lists are read in step, as one axis: the paper's
    paired widths, or a few chosen optimizer settings, without their full cross product.
    """

    name: str
    axes: dict[str, list[Any]]
    fixed: dict[str, Any]
    seeds: list[int]
    source: str
    zipped: tuple[dict[str, list[Any]], ...] = ()

    @property
    def varied(self) -> list[str]:
        """Every key that varies in the block: its axes and its zipped keys."""
        return [*self.axes, *(k for group in self.zipped for k in group)]

    def levels(self) -> list[list[dict[str, Any]]]:
        """Each axis and each zipped group as its list of levels ({key: value, ...})."""
        out = [[{key: v} for v in values] for key, values in self.axes.items()]
        for group in self.zipped:
            out.append([dict(zip(group, values, strict=True))
                        for values in zip(*group.values(), strict=True)])
        return out

    def size(self) -> int:
        n = len(self.seeds)
        for levels in self.levels():
            n *= len(levels)
        return n

    def expand(self, overrides: dict[str, Any] | None = None) -> list[RunConfig]:
        runs = []
        for combo in itertools.product(*self.levels()):
            varied = {k: v for level in combo for k, v in level.items()}
            for seed in self.seeds:
                values = {**self.fixed, **(overrides or {}), **varied, "seed": seed}
                try:
                    runs.append(RunConfig(**values))
                except UserError as exc:
                    where = ", ".join(f"{k}={v}" for k, v in varied.items())
                    raise UserError(f"{self.source}: block {self.name!r} ({where}): "
                                    f"{str(exc).removeprefix('config: ')}") from None
        return runs


@dataclass(frozen=True)
class SearchSpace:
    """The blocks of one or more files, and the runs they expand into (once, at load)."""

    blocks: list[Block]
    description: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    runs: tuple[RunConfig, ...] = ()  # every run, each once, in block order

    def summary(self) -> str:
        """What ``--dry-run`` prints: runs per model and per block, and each block's axes."""
        runs = self.runs
        per_model = Counter(r.model for r in runs)
        models = ", ".join(f"{m} {n}" for m, n in sorted(per_model.items()))
        lines = [f"{len(runs)} runs: {models}"]
        for block in self.blocks:
            lines.append(f"block {block.name!r} ({block.source}): {block.size()} runs, "
                         f"{len(block.seeds)} seed(s)")
            for key, values in block.axes.items():
                lines.append(f"  axis {key}: {values}")
            for group in block.zipped:
                pairs = [tuple(v) for v in zip(*group.values(), strict=True)]
                lines.append(f"  zip {', '.join(group)}: {pairs}")
            fixed = {**block.fixed, **self.overrides}
            if fixed:
                lines.append("  fixed: " + ", ".join(f"{k}={v}" for k, v in fixed.items()))
        return "\n".join(lines)


def load_space(paths: list[str | Path], overrides: dict[str, Any] | None = None) -> SearchSpace:
    """Read and validate search-space files; ``overrides`` (from ``--set``) apply to every run."""
    blocks: list[Block] = []
    descriptions = []
    for path in paths:
        file_blocks, description = _read_file(Path(path))
        blocks += file_blocks
        if description:
            descriptions.append(description)
    for key in overrides or {}:
        for block in blocks:
            if key in block.varied:
                raise UserError(f"--set {key}: {block.source} varies {key} as an axis; "
                                "remove it from the axes or drop --set")
    total = sum(block.size() for block in blocks)
    if total > MAX_RUNS:
        raise UserError(f"{', '.join(map(str, paths))}: {total:,} runs, more than any study can "
                        f"run (at most {MAX_RUNS:,}); shrink the axes or split the study")
    # Expanding validates every combination before anything launches; it happens here only,
    # and every later step (summary, size check, sweep) reads ``space.runs``.
    runs = expand_blocks(blocks, overrides or {})
    return SearchSpace(blocks, " ".join(descriptions), dict(overrides or {}), tuple(runs))


def expand_blocks(blocks: list[Block], overrides: dict[str, Any]) -> list[RunConfig]:
    """Every run of ``blocks``, each once: a config that two blocks share is one run."""
    seen: dict[str, RunConfig] = {}
    for block in blocks:
        for run in block.expand(overrides):
            seen.setdefault(run.run_id(), run)
    return list(seen.values())


def _read_text(path: Path) -> str:
    """The file's text: UTF-8 (a BOM is allowed), at most MAX_FILE_BYTES."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{path}: search space file not found") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise UserError(f"{path}: larger than {MAX_FILE_BYTES >> 10} KB; a search space is a "
                        "small YAML file (is this the right file?)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                        f"{exc.start}); a search space is a YAML file saved as UTF-8") from None


def _parse_yaml(path: Path, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UserError(f"{path}: malformed YAML{at}: {one_line(str(problem), 120)}") from None
    except RecursionError:
        raise UserError(f"{path}: malformed YAML: nested too deeply") from None


def _read_file(path: Path) -> tuple[list[Block], str]:
    doc = _parse_yaml(path, _read_text(path))
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a mapping with blocks: or model/axes/fixed/seeds")
    if "blocks" in doc:
        _check_keys(doc, FILE_KEYS, str(path))
        raw_blocks = doc["blocks"]
        if not isinstance(raw_blocks, list) or not raw_blocks:
            raise UserError(f"{path}: blocks: expected a non-empty list of blocks")
    else:
        raw_blocks = [{k: v for k, v in doc.items() if k != "description"}]
    blocks = [_parse_block(b, path, i) for i, b in enumerate(raw_blocks)]
    description = doc.get("description") or ""
    if not isinstance(description, str):
        raise UserError(f"{path}: description: expected text, got {_show(description)}")
    return blocks, description


def _parse_block(raw: Any, path: Path, index: int) -> Block:
    where = f"{path}: blocks[{index}]"
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping with model, axes, fixed, seeds")
    _check_keys(raw, BLOCK_KEYS, where)
    name = raw.get("name") or raw.get("model") or f"block{index}"
    if not isinstance(name, _SCALARS):
        raise UserError(f"{where}: name: expected text, got {_show(name)}")
    name = str(name)
    where = f"{path}: block {name!r}"
    axes_raw = _mapping(raw.get("axes", {}), f"{where}: axes")
    fixed_raw = _mapping(raw.get("fixed", {}), f"{where}: fixed")
    if "model" in raw:
        if "model" in axes_raw or "model" in fixed_raw:
            raise UserError(f"{where}: model is given twice (block and axes/fixed)")
        fixed_raw = {**fixed_raw, "model": raw["model"]}
    elif "model" not in axes_raw and "model" not in fixed_raw and not any(
            isinstance(g, dict) and "model" in g for g in raw.get("zip") or []):
        raise UserError(f"{where}: model: missing; set model: gan, ebgan or ebgan_pt")
    for key in ("seed",):
        if key in axes_raw or key in fixed_raw:
            raise UserError(f"{where}: {key}: use the block's seeds: list instead")
    axes = {key: _axis(values, f"{where}: axes.{key}", key) for key, values in axes_raw.items()}
    fixed = {key: _value(value, f"{where}: fixed.{key}", key) for key, value in fixed_raw.items()}
    zipped = _zipped(raw.get("zip", []), f"{where}: zip")
    keys = [*axes, *(k for group in zipped for k in group)]
    twice = sorted({k for k in keys if keys.count(k) > 1} | (set(keys) & set(fixed)))
    if twice:
        raise UserError(f"{where}: {twice[0]} is given twice (axes, zip or fixed)")
    seeds = _axis(raw.get("seeds", [0]), f"{where}: seeds", "seed")
    return Block(name, axes, fixed, seeds, str(path), zipped)


def _zipped(raw: Any, where: str) -> tuple[dict[str, list[Any]], ...]:
    """zip: a list of groups, each a mapping of keys to lists of one length, read in step."""
    if not isinstance(raw, list):
        raise UserError(f"{where}: expected a list of groups, e.g. "
                        "[{size_g: [100, 200], size_d: [32, 64]}]")
    groups = []
    for i, group in enumerate(raw):
        group = _mapping(group, f"{where}[{i}]")
        if not group:
            raise UserError(f"{where}[{i}]: empty group; give two or more keys")
        lists = {key: _axis_values(values, f"{where}[{i}].{key}", key)
                 for key, values in group.items()}
        lengths = {len(v) for v in lists.values()}
        if len(lengths) > 1:
            raise UserError(f"{where}[{i}]: lists of different lengths "
                            f"({', '.join(f'{k}: {len(v)}' for k, v in lists.items())}); "
                            "zipped keys are read in step")
        tuples = [repr(t) for t in zip(*lists.values(), strict=True)]
        repeated = [t for t, n in Counter(tuples).items() if n > 1]
        if repeated:
            raise UserError(f"{where}[{i}]: duplicate level {repeated[0]}")
        groups.append(lists)
    return tuple(groups)


def _check_keys(raw: dict, allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(map(str, raw)) - set(allowed))
    if unknown:
        raise UserError(f"{where}: unknown key {_show(unknown[0])}; allowed here: "
                        f"{', '.join(allowed)}")


def _mapping(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping of config keys to values")
    for key in raw:
        if key not in FIELDS:
            raise UserError(f"{where}: unknown key {_show(key)}; valid keys: {', '.join(FIELDS)}")
    return raw


def _value(value: Any, where: str, key: str) -> Any:
    """One value of ``key``, type-checked and range-checked alone (defaults elsewhere)."""
    if not isinstance(value, _SCALARS):  # never print a whole nested structure
        raise UserError(f"{where}: expected one value, got {_show(value)}")
    alone = {key: value}
    if key == "pt_weight" and value:  # pt_weight is only valid beside ebgan_pt
        alone["model"] = "ebgan_pt"
    try:
        alone[key] = value = coerce_value(key, value)
        RunConfig(**alone)
    except UserError as exc:
        raise UserError(f"{where}: {one_line(str(exc).split(f'{key}: ', 1)[-1], 200)}") from None
    except OverflowError:  # an integer too large for a float, where a number is expected
        raise UserError(f"{where}: {_show(value)} is too large") from None
    return value


def _axis_values(values: Any, where: str, key: str) -> list[Any]:
    """A list of checked values of ``key`` (duplicates allowed: a zipped list may repeat)."""
    if not isinstance(values, list):
        raise UserError(f"{where}: expected a list of values, got {values!r}")
    if not values:
        raise UserError(f"{where}: empty axis; give at least one value")
    return [_value(v, where, key) for v in values]
def _show(value: Any) -> str:
    """A short repr: bounded in depth and length whatever the YAML held (aliases included)."""
    return one_line(reprlib.repr(value), 80)


def _axis(values: Any, where: str, key: str) -> list[Any]:
    if not isinstance(values, list):
        raise UserError(f"{where}: expected a list of values, got {_show(values)}")
    if not values:
        raise UserError(f"{where}: empty axis; give at least one value")
    if key == "seed":
        checked = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
        if len(checked) != len(values) or any(v < 0 for v in checked):
            raise UserError(f"{where}: seeds must be integers >= 0")
    else:
        checked = _axis_values(values, where, key)
    duplicates = [v for v, n in Counter(map(repr, checked)).items() if n > 1]
    if duplicates:
        raise UserError(f"{where}: duplicate value {duplicates[0]}")
    return checked
