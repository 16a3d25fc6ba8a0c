"""Horizontal fusion: train K runs of one architecture at once, with stacked parameters.

A study trains thousands of small fully connected GANs that differ only in hyperparameters that
leave the networks' shapes alone (optimizers, lr, margin, PT weight, dropout rate, seed, ...).
A small run on one CPU thread spends most of its time on per-op overhead, so
:func:`train_fused` trains runs sharing :attr:`RunConfig.architecture` together: each weight is
one (K, out, in) tensor, each linear layer one batched matrix product, each optimizer step one
fused-kernel call per block of runs with equal optimizer settings. The step has no Python loop
over runs except to draw each run's random numbers from its own generator.

Each run gets bit for bit what :func:`gridstudy.train.train_run` gives it alone (on CPU, for a
batch size that is a multiple of 32, like the default 64; see below), which is the only kind of
agreement that survives a few hundred chaotic Adam steps (:mod:`gridstudy.stacked` says why):

- initial weights: each run's modules are built as train_run builds them
  (``torch.manual_seed(seed)``, ``build_models``) and their parameters stacked;
- random draws: each run has its own generator, seeded as train_run's, drawing the same tensors
  in the same order every step (indices, noise, D's dropout masks for its three forwards);
- layers: linear layers, batch norm (per run over its own batch, with G's running statistics)
  and the pulling-away term's Gram matrix go through :mod:`gridstudy.stacked`, whose batched
  kernels are checked against the per-run ones and replaced by a loop where they differ;
- optimizers: torch's fused Adam and SGD kernels, which ``make_optimizer`` uses too, given each
  run's tensors separately with its own lr, betas or momentum;
- divergence: a run whose loss is not finite at step t leaves the stack after step t's update,
  where train_run stops; its weights are copied out and the others go on untouched;
- evaluation: each run's weights go back into its own ``Generator`` and are sampled and scored
  by train.py's ``generate`` and the run's scorer.

Elementwise ops and reductions over a per-run vector of B values run in SIMD blocks of 32 floats;
with B not a multiple of 32 a lone run and a stacked one split those differently and agree only
to rounding. On CPU, groups above CPU_GROUP_WEIGHTS weights are trained as several smaller
groups. ``train_seconds`` of a fused run is its share of its group's wall time: the time until
it stopped divided by the number of runs in the group.

The groups of one call are trained one after another; each group's results are handed to
``on_group_done`` as the group ends. A group in training can be snapshotted and resumed
(:mod:`gridstudy.snapshot`): its snapshot holds the stacked weights and G's running statistics,
the optimizers' states, each active run's generator state, the slot order, the runs that already
stopped (their copied-out G, losses, step and step statistics), every run's curve so far, the
step statistics since the last point, and the step. Per-run settings and each step's scratch
draws are rebuilt from the configs, so a resumed group computes exactly what it would have.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from typing import Any

import torch
from torch import nn

from gridstudy.classifier import Scorer
from gridstudy.config import RunConfig
from gridstudy.evaluation import CurveRecorder, grad_norms
from gridstudy.losses import (
    ebgan_d_loss,
    ebgan_g_loss,
    energy,
    gan_d_loss,
    gan_g_loss,
    scheduled_margin,
)
from gridstudy.models import build_models
from gridstudy.snapshot import SnapshotPolicy, new_snapshot
from gridstudy.stacked import StackedNet, stacked_gram
from gridstudy.train import RunResult, finish_run, make_optimizer

ADAM_BETA2, ADAM_EPS = 0.999, 1e-8  # torch.optim.Adam's defaults, which make_optimizer keeps
# Most weights (all runs together) trained in one group on a CPU; more are split into groups
# trained one after another. Big networks are compute- and memory-bound even alone, and K of
# them stacked only evict each other from cache: (5, 400, 5, 128) ran fastest at 4 per group.
CPU_GROUP_WEIGHTS = 4_000_000
# The option values this trainer implements by itself (its optimizer kernels and its model
# branches), written out rather than read from config.py: a value added there is refused here,
# with UnsupportedOption, until fusion implements it; it is never trained as another value.
# Losses, margin schedules and generator losses go through gridstudy.losses, shared with
# train_run, which raises on any value it does not know.
FUSED_CHOICES: dict[str, tuple[str, ...]] = {
    "model": ("gan", "ebgan", "ebgan_pt"),
    "optim_d": ("adam", "sgd"),
    "optim_g": ("adam", "sgd"),
}

__all__ = ["FUSED_CHOICES", "UnsupportedOption", "check_fused_kernels", "train_fused"]

OnGroupDone = Callable[[list[RunResult]], None]  # a group's results, as the group ends


class UnsupportedOption(ValueError):
    """A run asks for an option value the fused trainer does not implement."""


def train_fused(runs: list[RunConfig], train_x: torch.Tensor, scorer: Scorer, *,
                device: str | torch.device = "cpu", snapshots: SnapshotPolicy | None = None,
                resume: dict[str, Any] | None = None, on_group_done: OnGroupDone | None = None
                ) -> list[RunResult]:
    """Train ``runs`` (one architecture) side by side, then sample and score each.

    Returns one result per run, in the order of ``runs``, each equal to ``train_run``'s (see the
    module docstring for when bit for bit), and hands each group's results to
    ``on_group_done`` as soon as the group ends. ``snapshots`` is handed a snapshot of the group
    in training whenever it is due; ``resume``, a snapshot of a group of some of ``runs``, makes
    that group continue from it first (the other runs start fresh). Raises ``ValueError`` for
    runs of different architectures or a snapshot of other runs, :class:`UnsupportedOption` for
    an option value this trainer does not implement (``FUSED_CHOICES``), and
    ``NotImplementedError`` where torch's private fused optimizer kernels fail
    :func:`check_fused_kernels` on ``device``.
    """
    if not runs:
        return []
    if len({c.architecture for c in runs}) > 1:
        raise ValueError("fused runs must share one architecture (RunConfig.architecture)")
    _check_options(runs)
    device = torch.device(device)
    check_fused_kernels(str(device))
    data, results = train_x.to(device), {}
    for group_runs, snapshot in _resumed_groups(runs, device, resume):
        group = _FusedGroup(group_runs, data, device, scorer)
        if snapshot is not None:
            group.load(snapshot)
        group.train(snapshots)
        done = [_result(c, end, scorer, device, group.started_at)
                for c, end in zip(group_runs, group.ends, strict=True)]
        results.update({id(c): result for c, result in zip(group_runs, done, strict=True)})
        if on_group_done is not None:
            on_group_done(done)
    return [results[id(c)] for c in runs]


def _resumed_groups(runs: list[RunConfig], device: torch.device,
                    resume: dict[str, Any] | None) -> list[tuple[list[RunConfig], dict | None]]:
    """The groups to train, each with the snapshot it continues from: the snapshot's group
    first, then the other runs grouped as :func:`_groups` groups them."""
    if resume is None:
        return [(group, None) for group in _groups(runs, device)]
    by_id = {c.run_id(): c for c in runs}
    ids = resume.get("run_ids") or []
    if resume.get("kind") != "fused" or not ids or not set(ids) <= set(by_id):
        raise ValueError("the snapshot is not of a fused group of these runs")
    rest = [c for c in runs if c.run_id() not in set(ids)]
    return [([by_id[i] for i in ids], resume)] + [(g, None) for g in _groups(rest, device)]


def _check_options(runs: list[RunConfig]) -> None:
    for c in runs:
        for key, allowed in FUSED_CHOICES.items():
            if getattr(c, key) not in allowed:
                raise UnsupportedOption(f"fused training does not implement {key}="
                                        f"{getattr(c, key)!r} (it does {', '.join(allowed)}); "
                                        "train such runs one at a time (--no-fuse)")


def _groups(runs: list[RunConfig], device: torch.device) -> list[list[RunConfig]]:
    """The runs trained together: one generator loss each (a group calls ``gan_g_loss`` once
    for all its runs), all of them on an accelerator, CPU_GROUP_WEIGHTS' worth on a CPU."""
    size = sys.maxsize
    if device.type == "cpu" and runs:
        weights = sum(p.numel() for net in build_models(runs[0]) for p in net.parameters())
        size = max(1, CPU_GROUP_WEIGHTS // weights)
    groups = []
    for kind in dict.fromkeys(c.g_loss for c in runs):
        same = [c for c in runs if c.g_loss == kind]
        groups += [same[i:i + size] for i in range(0, len(same), size)]
    return groups


@cache
def check_fused_kernels(device: str) -> None:
    """Check torch's private fused Adam and SGD kernels against ``torch.optim`` once per process
    and device, two steps on a small tensor for each setting the trainer uses (Adam; SGD
    without and with momentum). Called as :class:`_StackedOptimizer` calls them, they must give
    bit for bit what ``make_optimizer`` gives a lone run (the public fused path, which train_run
    uses), and agree to rounding with torch.optim's plain single-tensor implementation (a check
    on the kernel itself). Raises ``NotImplementedError`` saying what failed, so the caller
    trains one run at a time.
    """
    gen = torch.Generator().manual_seed(0)
    start, grads = torch.randn(2, 3, 5, generator=gen), torch.randn(2, 2, 3, 5, generator=gen)
    settings = [("adam", RunConfig(lr=1e-3)), ("sgd", RunConfig(optim_d="sgd", lr=1e-2)),
                ("sgd", RunConfig(optim_d="sgd", lr=1e-2, sgd_momentum=0.9))]
    for name, c in settings:
        label = f"torch._fused_{name}_ ({name}, lr {c.lr}, momentum {c.sgd_momentum})"
        try:
            fused = _fused_steps(name, c, start.to(device), grads.to(device))
            solo = _solo_steps(name, c, start.to(device), grads.to(device), fused=True)
            plain = _solo_steps(name, c, start.to(device), grads.to(device), fused=False)
        except Exception as exc:  # a changed private signature, a missing kernel, ...
            raise NotImplementedError(f"{label} fails on {device} ({type(exc).__name__}: "
                                      f"{exc}); training one run at a time") from None
        if not torch.equal(fused, solo):
            raise NotImplementedError(f"{label} as fusion calls it disagrees with torch.optim's "
                                      f"fused {name} on {device}; training one run at a time")
        if not torch.allclose(fused, plain, rtol=1e-5, atol=1e-7):
            raise NotImplementedError(f"{label} disagrees with torch.optim's plain {name} on "
                                      f"{device}; training one run at a time")


def _fused_steps(name: str, c: RunConfig, start: torch.Tensor, grads: torch.Tensor
                 ) -> torch.Tensor:
    param = start.clone()
    opt = _StackedOptimizer([param], [_optimizer_setting(name, c)] * len(start))
    for g in grads:
        opt.step((g,))
    return param


def _solo_steps(name: str, c: RunConfig, start: torch.Tensor, grads: torch.Tensor, *,
                fused: bool) -> torch.Tensor:
    """Each run's own optimizer: as train_run makes it, or torch.optim's plain implementation."""
    out = []
    for k in range(len(start)):
        param = nn.Parameter(start[k].clone())
        opt = make_optimizer(name, [param], c)
        if not fused:
            opt = type(opt)([param], **{**opt.defaults, "fused": False, "foreach": False})
        for g in grads:
            param.grad = g[k].clone()
            opt.step()
        out.append(param.detach())
    return torch.stack(out)


@dataclass
class _RunEnd:
    """Where a run stopped: its generator (weights copied back) and last losses."""

    g_net: nn.Module
    loss_d: float = float("nan")
    loss_g: float = float("nan")
    diverged_step: int | None = None
    train_seconds: float = float("nan")
    curve: CurveRecorder | None = None
    sums: torch.Tensor | None = None  # step statistics since the curve's last point

    def state(self, stopped: bool) -> dict[str, Any]:
        """The curve so far and, once the run has ``stopped``, where it stopped."""
        assert self.curve is not None
        if not stopped:  # its weights are in the stacks
            return {"curve": self.curve.state()}
        return {"curve": self.curve.state(), "g": self.g_net.state_dict(), "loss_d": self.loss_d,
                "loss_g": self.loss_g, "diverged_step": self.diverged_step,
                "train_seconds": self.train_seconds, "sums": self.sums}

    def load_state(self, state: dict[str, Any], device: torch.device) -> None:
        assert self.curve is not None
        self.curve.load_state(state["curve"])
        if "g" in state:
            self.g_net.load_state_dict(state["g"])
            self.loss_d, self.loss_g = state["loss_d"], state["loss_g"]
            self.diverged_step, self.train_seconds = state["diverged_step"], state["train_seconds"]
            self.sums = None if state["sums"] is None else state["sums"].to(device)


def _result(c: RunConfig, end: _RunEnd, scorer: Scorer, device: torch.device,
            started_at: str) -> RunResult:
    """The run's row and samples, built by train_run's own last step."""
    return finish_run(c, end.g_net, scorer, device, started_at=started_at, loss_d=end.loss_d,
                      loss_g=end.loss_g, diverged_step=end.diverged_step,
                      train_seconds=end.train_seconds, fused=True, curve=end.curve,
                      sums=end.sums)


class _StackedOptimizer:
    """Each run's own Adam or SGD over stacked parameters, through torch's fused kernels.

    Runs with equal settings sit next to each other (see :func:`_run_order`) and one kernel call
    updates a block of them. The kernel gets each run's tensors separately, not a block's slice:
    it splits a tensor between threads and SIMD lanes by its size, and the last bit of the
    result depends on that split. State matches torch.optim's: Adam's moments and a float step
    count, SGD's momentum buffer (a copy of the first gradient, as torch makes it).
    """

    def __init__(self, params: list[torch.Tensor], settings: list[tuple]) -> None:
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.momentum = [torch.zeros_like(p) for p in params]
        self.t = torch.zeros((), dtype=torch.float32, device=params[0].device)
        self.first = True
        self._set(params, settings)

    def _set(self, params: list[torch.Tensor], settings: list[tuple]) -> None:
        self.settings, self.blocks = settings, []
        start = 0
        for stop in range(1, len(settings) + 1):
            if stop == len(settings) or settings[stop] != settings[start]:
                self.blocks.append((start, stop, settings[start]))
                start = stop
        self.views = [tuple(_each_run([t.detach() for t in state], a, b) for state in
                            (params, self.exp_avg, self.exp_avg_sq, self.momentum))
                      for a, b, _ in self.blocks]

    def state(self) -> dict[str, Any]:
        """The moments, momentum buffers and step count (the live tensors), for a snapshot.

        Buffers no run uses (Adam's moments without Adam runs, momentum buffers without SGD
        momentum, as in the paper's grid) stay zero and are left out: they are a quarter to a
        half of a snapshot's bytes, and its cost is its bytes."""
        adam = any(name == "adam" for name, _, _ in self.settings)
        momentum = any(name == "sgd" and setting for name, _, setting in self.settings)
        return {"exp_avg": self.exp_avg if adam else None,
                "exp_avg_sq": self.exp_avg_sq if adam else None,
                "momentum": self.momentum if momentum else None,
                "t": self.t, "first": self.first}

    def load_state(self, state: dict[str, Any], params: list[torch.Tensor],
                   settings: list[tuple]) -> None:
        """Take :meth:`state` of an optimizer of ``params`` with ``settings`` (one a run)."""
        dev = params[0].device
        for name in ("exp_avg", "exp_avg_sq", "momentum"):
            saved = state[name]
            setattr(self, name, [torch.zeros_like(p) for p in params] if saved is None
                    else [t.to(dev, copy=True) for t in saved])
        self.t, self.first = state["t"].to(dev, copy=True), state["first"]
        self._set(params, settings)

    def select(self, slots: torch.Tensor, params: list[torch.Tensor]) -> None:
        for state in (self.exp_avg, self.exp_avg_sq, self.momentum):
            state[:] = [s[slots] for s in state]
        self._set(params, [self.settings[i] for i in slots.tolist()])

    @torch.no_grad()
    def step(self, grads: tuple[torch.Tensor, ...]) -> None:
        self.t += 1
        for (a, b, (name, lr, setting)), (p, m, v, u) in zip(self.blocks, self.views,
                                                             strict=True):
            g = _each_run(grads, a, b)
            if name == "adam":
                torch._fused_adam_(p, g, m, v, [], [self.t] * len(p), lr=lr, beta1=setting,
                                   beta2=ADAM_BETA2, weight_decay=0.0, eps=ADAM_EPS,
                                   amsgrad=False, maximize=False)
            else:
                torch._fused_sgd_(p, g, u if setting else [], weight_decay=0.0, momentum=setting,
                                  lr=lr, dampening=0.0, nesterov=False, maximize=False,
                                  is_first_step=self.first and setting != 0)
        self.first = False


def _each_run(stacked: list[torch.Tensor] | tuple[torch.Tensor, ...], a: int, b: int
              ) -> list[torch.Tensor]:
    """Runs a..b-1 of every stacked tensor, one view per run and tensor."""
    return [view for t in stacked for view in t[a:b].unbind(0)]


def _optimizer_setting(name: str, c: RunConfig) -> tuple:
    return (name, c.lr, c.adam_beta1 if name == "adam" else c.sgd_momentum)


def _run_order(runs: list[RunConfig]) -> list[int]:
    """Indices of ``runs`` with equal D and then G optimizer settings next to each other."""
    def key(i: int) -> tuple:
        c = runs[i]
        return (_optimizer_setting(c.optim_d, c), _optimizer_setting(c.optim_g, c))
    return sorted(range(len(runs)), key=key)


class _FusedGroup:
    """The runs trained together: stacked networks, optimizers, generators and settings.

    Slot k of every stacked tensor is run ``runs[order[k]]``; a run that diverges is removed
    from every stacked tensor at once, so the others keep their slices and the group shrinks.
    """

    def __init__(self, runs: list[RunConfig], data: torch.Tensor, device: torch.device,
                 scorer: Scorer) -> None:
        self.runs, self.data, self.device = runs, data, device
        self.start = time.perf_counter()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.step = 0  # steps done
        nets = []
        for c in runs:  # as train_run: seed, then build (the initial weights)
            torch.manual_seed(c.seed)
            nets.append(tuple(net.to(device) for net in build_models(c)))
        self.ends = [_RunEnd(g_net, curve=CurveRecorder(c, scorer, device))
                     for (g_net, _), c in zip(nets, runs, strict=True)]
        self.track = self.ends[0].curve.on  # one schedule: eval_every is in the architecture
        self.sums: torch.Tensor | None = None  # (K, 6) step statistics since the last point
        self.order = _run_order(runs)
        active = [runs[i] for i in self.order]
        batch = runs[0].batch_size
        self.g = StackedNet([nets[i][0] for i in self.order], batch, running_stats=True)
        self.d = StackedNet([nets[i][1] for i in self.order], batch, running_stats=False)
        self.opt_d = _StackedOptimizer(self.d.params,
                                       [_optimizer_setting(c.optim_d, c) for c in active])
        self.opt_g = _StackedOptimizer(self.g.params,
                                       [_optimizer_setting(c.optim_g, c) for c in active])
        self.gens = [torch.Generator(device=device).manual_seed(c.seed) for c in active]
        self.n_drop = sum(kind == "dropout" for kind, _ in self.d.ops)
        self._per_run(active)

    def _per_run(self, active: list[RunConfig]) -> None:
        """Settings and buffers with one row per slot, so that divergence can drop rows."""
        self.has_drop = [c.dropout_d and c.dropout_rate > 0 for c in active]
        self.per_run = self._per_run_tensors(active)

    def _per_run_tensors(self, active: list[RunConfig]) -> dict[str, torch.Tensor]:
        c0, k, dev = active[0], len(active), self.device
        p = [c.dropout_rate if drop else 0.0 for c, drop in zip(active, self.has_drop,
                                                                strict=True)]
        size_d = self.d.params[0].shape[1]
        return {
            "margin": torch.tensor([[scheduled_margin(c.margin, c.margin_schedule, t, c.steps,
                                                      c.margin_end) for t in range(c.steps)]
                                    for c in active], device=dev),
            "pt": torch.tensor([c.pt_weight for c in active], device=dev),
            "p": torch.tensor(p, device=dev).view(k, 1, 1, 1),
            "one_minus_p": torch.tensor([1.0 - q for q in p], device=dev).view(k, 1, 1),
            "idx": torch.zeros(k, c0.batch_size, dtype=torch.long, device=dev),
            "z": torch.zeros(k, c0.batch_size, c0.z_dim, device=dev),
            "u": torch.zeros(k, 3 * self.n_drop, c0.batch_size, size_d, device=dev),
        }

    def train(self, snapshots: SnapshotPolicy | None = None) -> None:
        """Every remaining step for every run, retiring runs as they diverge or finish,
        evaluating them where their curves are due (after divergence is handled, as train_run
        does), and handing ``snapshots`` a snapshot where one is due."""
        curve, steps = self.ends[0].curve, self.runs[0].steps
        for step in range(self.step, steps):
            self._draw()
            loss_d, loss_g, stats = self._step(step)
            if stats is not None:
                self.sums = stats if self.sums is None else self.sums + stats
            bad = ~(torch.isfinite(loss_d) & torch.isfinite(loss_g))
            if bad.any():  # the step's one sync
                self._retire(bad, loss_d, loss_g, step)
                if not self.gens:
                    return
            if curve is not None and curve.due(step + 1):
                self._evaluate(step + 1)
            self.step = step + 1
            if snapshots is not None and self.step < steps and snapshots.due(self.step):
                snapshots.save(self.snapshot())
        self._retire(torch.ones_like(bad), loss_d, loss_g, None)

    def snapshot(self) -> dict[str, Any]:
        """The group's snapshot after ``self.step`` steps; its tensors are the live ones."""
        active = set(self.order)
        state = {"order": self.order, "g": self.g.state(), "d": self.d.state(),
                 "opt_g": self.opt_g.state(), "opt_d": self.opt_d.state(),
                 "gens": [g.get_state() for g in self.gens], "sums": self.sums,
                 "ends": [end.state(i not in active) for i, end in enumerate(self.ends)],
                 "elapsed": time.perf_counter() - self.start}
        return new_snapshot("fused", [c.run_id() for c in self.runs], self.step, self.device,
                            self.started_at, state)

    def load(self, snapshot: dict[str, Any]) -> None:
        """Continue from ``snapshot``, a snapshot of this group (ValueError otherwise)."""
        if snapshot.get("run_ids") != [c.run_id() for c in self.runs]:
            raise ValueError("the snapshot is not of this group's runs")
        s = snapshot["state"]
        self.order = [int(i) for i in s["order"]]
        active = [self.runs[i] for i in self.order]
        self.g.load_state(s["g"])
        self.d.load_state(s["d"])
        self.opt_d.load_state(s["opt_d"], self.d.params,
                              [_optimizer_setting(c.optim_d, c) for c in active])
        self.opt_g.load_state(s["opt_g"], self.g.params,
                              [_optimizer_setting(c.optim_g, c) for c in active])
        self.gens = [torch.Generator(device=self.device) for _ in active]
        for gen, gen_state in zip(self.gens, s["gens"], strict=True):
            gen.set_state(gen_state)
        self._per_run(active)
        self.sums = None if s["sums"] is None else s["sums"].to(self.device)
        for end, end_state in zip(self.ends, s["ends"], strict=True):
            end.load_state(end_state, self.device)
        self.step, self.started_at = snapshot["step"], snapshot["started_at"]
        self.start = time.perf_counter() - s["elapsed"]  # the time before the snapshot counts

    def _evaluate(self, steps_done: int) -> None:
        """An intermediate curve point of every active run, from its weights copied back into
        its own generator (sampled as train_run samples its live one)."""
        for slot, i in enumerate(self.order):
            end = self.ends[i]
            self.g.copy_into(end.g_net, slot)
            end.curve.evaluate(end.g_net, steps_done, None if self.sums is None
                               else self.sums[slot])
        self.sums = None

    def _eval_seconds(self) -> float:
        return sum(end.curve.seconds for end in self.ends)

    def _draw(self) -> None:
        """Each run's draws for one step, from its own generator, in train_run's order."""
        t, n = self.per_run, len(self.data)
        one_call = self.device.type == "cpu"  # CPU draws are sequential: 3L masks in one call
        for k, g in enumerate(self.gens):
            idx, z, u = t["idx"][k], t["z"][k], t["u"][k]
            torch.randint(0, n, idx.shape, generator=g, out=idx)
            torch.randn(z.shape, generator=g, out=z)
            if self.has_drop[k]:
                for rows in [u] if one_call else u:
                    torch.rand(rows.shape, generator=g, out=rows)

    def _step(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """train_step for every run: one D update, then one G update on the same fakes.

        Returns per-run L_D, L_G (K,) and, when the curves are recorded, each run's
        ``evaluation.STEP_STATS`` (K, 6), computed as train_step computes them."""
        t = self.per_run
        real = self.data.index_select(0, t["idx"].view(-1)).view(*t["idx"].shape, -1)
        masks: list[tuple] = [(None, None)] * 3
        if self.n_drop:
            keep = (t["u"] >= t["p"]).unflatten(1, (3, self.n_drop))
            masks = [(keep[:, i], t["one_minus_p"]) for i in range(3)]
        fake, _ = self.g.forward(t["z"])
        fixed = fake.detach()
        out_real, _ = self.d.forward(real, *masks[0])
        out_fake, _ = self.d.forward(fixed, *masks[1])
        loss_d, energies = self._d_loss(real, fixed, out_real, out_fake, step)
        grads_d = torch.autograd.grad(loss_d.sum(), self.d.params)
        self.opt_d.step(grads_d)
        out, code = self.d.forward(fake, *masks[2], frozen=True)
        loss_g = self._g_loss(fake, out, code)
        grads_g = torch.autograd.grad(loss_g.sum(), self.g.params)
        stats = None
        if self.track:
            k = len(self.gens)
            stats = torch.stack([loss_d.detach(), loss_g.detach(), grad_norms(grads_d, k),
                                 grad_norms(grads_g, k), *energies], dim=1)
        self.opt_g.step(grads_g)
        return loss_d.detach(), loss_g.detach(), stats

    def _d_loss(self, real: torch.Tensor, fake: torch.Tensor, out_real: torch.Tensor,
                out_fake: torch.Tensor, step: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-run L_D (K,): losses.ebgan_d_loss (Eq. 1), one margin per run, or gan_d_loss;
        and the mean energies of the real and the fake batch (NaN for the GAN)."""
        if self.runs[0].is_ebgan:
            margin = self.per_run["margin"][:, step].unsqueeze(1)
            e_real, e_fake = energy(out_real, real), energy(out_fake, fake)
            energies = [e_real.detach().mean(-1), e_fake.detach().mean(-1)]
            return ebgan_d_loss(e_real, e_fake, margin), energies
        loss = gan_d_loss(out_real.squeeze(2), out_fake.squeeze(2))
        return loss, [torch.full_like(loss.detach(), float("nan"))] * 2

    def _g_loss(self, fake: torch.Tensor, out: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Per-run L_G (K,): losses.ebgan_g_loss (Eq. 2, + PT) or gan_g_loss of the group's kind."""
        if self.runs[0].is_ebgan:
            # exactly Eq. 2 + 0 * f_PT for runs without the term in a group that has it
            pt = self.per_run["pt"] if any(c.pt_weight for c in self.runs) else 0.0
            return ebgan_g_loss(energy(out, fake), code, pt, gram=stacked_gram)
        return gan_g_loss(out.squeeze(2), self.runs[0].g_loss)

    def _retire(self, done: torch.Tensor, loss_d: torch.Tensor, loss_g: torch.Tensor,
                step: int | None) -> None:
        """Copy out the runs at ``done`` (bool (K,)) and drop them from the stacks."""
        seconds = (time.perf_counter() - self.start - self._eval_seconds()) / len(self.runs)
        ld, lg = loss_d.tolist(), loss_g.tolist()
        for slot in done.nonzero().flatten().tolist():
            end = self.ends[self.order[slot]]
            self.g.copy_into(end.g_net, slot)
            end.loss_d, end.loss_g, end.diverged_step = ld[slot], lg[slot], step
            end.train_seconds = seconds
            end.sums = None if self.sums is None else self.sums[slot]
        keep = (~done).nonzero().flatten()
        self.g.select(keep)
        self.d.select(keep)
        self.opt_d.select(keep, self.d.params)
        self.opt_g.select(keep, self.g.params)
        kept = keep.tolist()
        self.order = [self.order[i] for i in kept]
        self.gens = [self.gens[i] for i in kept]
        self.has_drop = [self.has_drop[i] for i in kept]
        self.per_run = {name: t[keep] for name, t in self.per_run.items()}
        self.sums = None if self.sums is None else self.sums[keep]

