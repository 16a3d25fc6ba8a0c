"""Train, sample and score one GAN or EBGAN run. Knows nothing about Ray.

A run is deterministic given its config: every random draw (initial weights, minibatch indices,
noise, dropout masks) comes from generators seeded by ``config.seed``, in a fixed order per step:
minibatch indices (uniform, with replacement), then noise, then D's dropout masks on the real
batch, the fake batch in the D update, and the fake batch in the G update. Each step is one D
update followed by one G update on the same generated batch.

A non-finite loss ends the run early with status ``diverged`` and the step it happened at; the
run is still sampled, scored (NaN scores where the samples are not finite) and recorded. Runs
whose losses stayed finite but whose parameters or samples did not are ``diverged`` too, with
``diverged_step`` = ``steps``.

A run in training can be snapshotted and resumed (:mod:`gridstudy.snapshot`): the snapshot holds
G's and D's weights, both optimizers' states, the generator's state (which also draws D's
dropout masks), the step, the last losses, the curve so far and the step statistics summed since
its last point, so the resumed run draws and computes exactly what the uninterrupted one does.
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

import numpy as np
import torch

from analysis.stability import stability_measures
from gridstudy.classifier import Scorer
from gridstudy.config import RunConfig
from gridstudy.data import to_uint8
from gridstudy.evaluation import CurveRecorder, generate, grad_norms
from gridstudy.losses import (
    ebgan_d_loss,
    ebgan_g_loss,
    gan_d_loss,
    gan_g_loss,
    scheduled_margin,
)
from gridstudy.models import build_models, use_generator
from gridstudy.snapshot import SnapshotPolicy, new_snapshot

GRID_SAMPLES = 64  # samples kept per run as an 8x8 image grid


@dataclass
class RunResult:
    """One finished run: its table row and its 64 kept samples."""

    row: dict[str, Any]
    samples: np.ndarray = field(repr=False)  # uint8 (64, 28, 28)
    curve: list[dict[str, Any]] = field(default_factory=list, repr=False)  # one dict a point


def make_optimizer(name: str, params: Any, c: RunConfig) -> torch.optim.Optimizer:
    """SGD or Adam at ``c.lr``; fused kernels where this torch has them (1.6-1.9x faster on CPU)."""
    if name == "adam":
        kwargs: dict[str, Any] = {"lr": c.lr, "betas": (c.adam_beta1, 0.999)}
        cls: type[torch.optim.Optimizer] = torch.optim.Adam
    elif name == "sgd":
        kwargs = {"lr": c.lr, "momentum": c.sgd_momentum}
        cls = torch.optim.SGD
    else:  # never train an unknown optimizer as a known one
        raise ValueError(f"unknown optimizer {name!r}")
    params = list(params)
    try:
        return cls(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return cls(params, **kwargs)


def train_run(c: RunConfig, train_x: torch.Tensor, scorer: Scorer, *,
              device: str | torch.device = "cpu", snapshots: SnapshotPolicy | None = None,
              resume: dict[str, Any] | None = None) -> RunResult:
    """Train ``c`` on ``train_x`` (n, 784) in [-1, 1], then sample and score it.

    ``snapshots`` is handed a snapshot of the run (:mod:`gridstudy.snapshot`) whenever it is due;
    ``resume``, such a snapshot of this run, makes it continue from there and end bit for bit
    where the uninterrupted run ends. Snapshots change nothing about training.
    """
    run = _SoloRun(c, scorer, torch.device(device))
    if resume is not None:
        run.load(resume)
    run.train(train_x, snapshots)
    return run.finish()


class _SoloRun:
    """One run in training: its networks, optimizers, generator, curve, and how far it got."""

    def __init__(self, c: RunConfig, scorer: Scorer, device: torch.device) -> None:
        self.c, self.scorer, self.device = c, scorer, device
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.start = time.perf_counter()
        torch.manual_seed(c.seed)
        g_net, d_net = build_models(c)
        self.g_net, self.d_net = g_net.to(device), d_net.to(device)
        self.rng = torch.Generator(device=device).manual_seed(c.seed)
        use_generator(self.d_net, self.rng)  # D's dropout masks come from the run's stream
        self.opt_d = make_optimizer(c.optim_d, self.d_net.parameters(), c)
        self.opt_g = make_optimizer(c.optim_g, self.g_net.parameters(), c)
        self.curve = CurveRecorder(c, scorer, device)
        self.step = 0  # steps done
        self.loss_d = self.loss_g = math.nan
        self.diverged_step: int | None = None
        self.sums: torch.Tensor | None = None  # STEP_STATS summed since the last evaluation

    def train(self, train_x: torch.Tensor, snapshots: SnapshotPolicy | None) -> None:
        """The remaining steps, until the last or a non-finite loss."""
        c, device = self.c, self.device
        data = train_x.to(device)
        for step in range(self.step, c.steps):
            real = data[torch.randint(0, len(data), (c.batch_size,), generator=self.rng,
                                      device=device)]
            z = torch.randn(c.batch_size, c.z_dim, generator=self.rng, device=device)
            margin = scheduled_margin(c.margin, c.margin_schedule, step, c.steps, c.margin_end)
            ld, lg, stats = train_step(c, self.g_net, self.d_net, self.opt_d, self.opt_g, real,
                                       z, margin, track=self.curve.on)
            if stats is not None:
                self.sums = stats if self.sums is None else self.sums + stats
            self.loss_d, self.loss_g = ld.item(), lg.item()
            if not (math.isfinite(self.loss_d) and math.isfinite(self.loss_g)):
                self.diverged_step = step
                return
            if self.curve.due(step + 1):
                self.curve.evaluate(self.g_net, step + 1, self.sums)
                self.sums = None
            self.step = step + 1
            if snapshots is not None and self.step < c.steps and snapshots.due(self.step):
                snapshots.save(self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        """The run's snapshot after ``self.step`` steps; its tensors are the live ones."""
        state = {"g": self.g_net.state_dict(), "d": self.d_net.state_dict(),
                 "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                 "rng": self.rng.get_state(), "loss_d": self.loss_d, "loss_g": self.loss_g,
                 "sums": self.sums, "curve": self.curve.state(),
                 "elapsed": time.perf_counter() - self.start}
        return new_snapshot("solo", [self.c.run_id()], self.step, self.device, self.started_at,
                            state)

    def load(self, snapshot: dict[str, Any]) -> None:
        """Continue from ``snapshot``, a snapshot of this run (ValueError otherwise)."""
        if snapshot.get("kind") != "solo" or snapshot.get("run_ids") != [self.c.run_id()]:
            raise ValueError(f"not a snapshot of run {self.c.run_id()} trained alone")
        s = snapshot["state"]
        self.g_net.load_state_dict(s["g"])
        self.d_net.load_state_dict(s["d"])
        self.opt_g.load_state_dict(s["opt_g"])
        self.opt_d.load_state_dict(s["opt_d"])
        self.rng.set_state(s["rng"])
        self.loss_d, self.loss_g = s["loss_d"], s["loss_g"]
        self.sums = None if s["sums"] is None else s["sums"].to(self.device)
        self.curve.load_state(s["curve"])
        self.step, self.started_at = snapshot["step"], snapshot["started_at"]
        self.start = time.perf_counter() - s["elapsed"]  # the time before the snapshot counts

    def finish(self) -> RunResult:
        train_seconds = time.perf_counter() - self.start - self.curve.seconds
        d_finite = all(torch.isfinite(p).all() for p in self.d_net.parameters())
        return finish_run(self.c, self.g_net, self.scorer, self.device,
                          started_at=self.started_at, loss_d=self.loss_d, loss_g=self.loss_g,
                          diverged_step=self.diverged_step, train_seconds=train_seconds,
                          d_finite=d_finite, curve=self.curve, sums=self.sums)


def finish_run(c: RunConfig, g_net: torch.nn.Module, scorer: Scorer, device: torch.device, *,
               started_at: str, loss_d: float, loss_g: float, diverged_step: int | None,
               train_seconds: float, d_finite: bool = True, fused: bool = False,
               curve: CurveRecorder | None = None, sums: torch.Tensor | None = None
               ) -> RunResult:
    """Sample and score a trained generator and build the run's row (every trainer's last step).

    Status ``diverged`` when training stopped on a non-finite loss, or G's or D's parameters or
    the samples are not finite (then ``diverged_step`` = ``steps`` if no step was recorded).
    The final evaluation is also the last point of ``curve``, with the means of ``sums`` (the
    step statistics since its previous point).
    """
    score_start = time.perf_counter()
    samples = generate(g_net, c, device)
    scores = scorer.score(samples)
    score_seconds = time.perf_counter() - score_start
    finite = d_finite and all(torch.isfinite(p).all() for p in g_net.parameters())
    status = "ok"
    if diverged_step is not None or not finite or not torch.isfinite(samples).all():
        status = "diverged"
        diverged_step = c.steps if diverged_step is None else diverged_step
    steps_done = c.steps if diverged_step is None or diverged_step >= c.steps else (
        diverged_step + 1)
    points = curve.finish(steps_done, scores, len(samples), sums) if curve else []
    measures = stability_measures([p["step"] for p in points], [p["i_prime"] for p in points])
    row = {
        "run_id": c.run_id(), **c.to_dict(), **scores, **measures, "status": status, "error": "",
        "diverged_step": diverged_step, "loss_d": loss_d, "loss_g": loss_g, "fused": fused,
        "train_seconds": train_seconds, "score_seconds": score_seconds,
        "curve_seconds": curve.seconds if curve else 0.0, "classifier": scorer.name,
        "device": describe_device(device), "host": platform.node(), "started_at": started_at,
        **library_versions(),
    }
    return RunResult(row, to_uint8(samples[:GRID_SAMPLES]), points)


def train_step(c: RunConfig, g_net: torch.nn.Module, d_net: torch.nn.Module,
               opt_d: torch.optim.Optimizer, opt_g: torch.optim.Optimizer,
               real: torch.Tensor, z: torch.Tensor, margin: float, track: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One D update then one G update on the same generated batch.

    Returns (L_D, L_G, stats): with ``track``, stats are the step's ``evaluation.STEP_STATS``
    (losses, gradient norms, mean energies of the D update's real and fake batches), read from
    what the step computes anyway; else None.
    """
    fake = g_net(z)
    if c.is_ebgan:
        energy_real, _ = d_net(real)
        energy_fake, _ = d_net(fake.detach())
        loss_d = ebgan_d_loss(energy_real, energy_fake, margin)
        energies = [energy_real.detach().mean(-1), energy_fake.detach().mean(-1)]
    else:
        loss_d = gan_d_loss(d_net(real), d_net(fake.detach()))
        energies = [loss_d.new_full((), math.nan)] * 2
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    norm_d = grad_norms([p.grad for p in d_net.parameters()]) if track else None
    opt_d.step()
    if c.is_ebgan:
        energy_fake, codes = d_net(fake)
        loss_g = ebgan_g_loss(energy_fake, codes, c.pt_weight)
    else:
        loss_g = gan_g_loss(d_net(fake), c.g_loss)
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    stats = None
    if track:
        norm_g = grad_norms([p.grad for p in g_net.parameters()])
        stats = torch.stack([loss_d.detach(), loss_g.detach(), norm_d, norm_g, *energies])
    opt_g.step()
    return loss_d.detach(), loss_g.detach(), stats


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{torch.get_num_threads()}threads"


def library_versions() -> dict[str, str]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return ""

    return {"torch_version": torch.__version__, "ray_version": version("ray"),
            "gridstudy_version": version("gridstudy")}
