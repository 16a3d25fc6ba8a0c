"""Evaluating a generator during and after training: the fixed noise, sampling, the curve.

A run's training curve holds evaluations at fixed steps during training, one record per point.
Both trainers (``train.train_run``, one run; ``fused.train_fused``, K runs stacked) sum a few
statistics of every training step into one tensor (:data:`STEP_STATS`, one row per run), and
every ``eval_every`` steps hand the sums to the run's :class:`CurveRecorder`, which samples G
and scores the samples. The last point of a curve is the run's final evaluation.

Evaluation leaves training alone, so a run ends with the same weights and scores with or without
it (tests/test_curve.py): G is sampled in eval mode under ``torch.no_grad`` (its batch-norm
running statistics are read, not updated), from a noise tensor drawn once from a generator of
its own (the first ``n_eval_curve`` rows of the final evaluation's noise), and the statistics
only read the losses, energies and gradients that training computes anyway.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from analysis.schema import CURVE_SCORES, STEP_STATS
from gridstudy.classifier import Scorer
from gridstudy.config import RunConfig
from gridstudy.losses import scheduled_margin

# A trainer sums analysis.schema.STEP_STATS over the steps of an interval, in that order (a
# tensor (..., 6)); the curve records their means. Energies are NaN for the GAN.
EVAL_NOISE_SEED = 2017  # the fixed noise every run is sampled from, during training and at its end


def eval_noise(c: RunConfig, n: int | None = None) -> torch.Tensor:
    """The first ``n`` (default ``c.n_eval``) rows of the fixed evaluation noise (n_eval, z_dim).

    Drawn from a generator of its own, never from a run's training stream; the same for every
    run of a given ``n_eval`` and ``z_dim``.
    """
    z = torch.randn(c.n_eval, c.z_dim, generator=torch.Generator().manual_seed(EVAL_NOISE_SEED))
    return z if n is None else z[:n]


@torch.no_grad()
def generate(g_net: torch.nn.Module, c: RunConfig, device: torch.device,
             z: torch.Tensor | None = None) -> torch.Tensor:
    """Samples of ``g_net`` from ``z`` (default: the whole fixed evaluation noise), in eval mode
    (batch norm reads its running statistics and updates nothing), in chunks of 1,000."""
    z = eval_noise(c) if z is None else z
    g_net.eval()
    out = torch.cat([g_net(chunk.to(device)) for chunk in z.split(1000)])
    g_net.train()
    return out.cpu()


def grad_norms(grads: list[torch.Tensor], runs: int | None = None) -> torch.Tensor:
    """The L2 norm of a network's whole gradient: one number, or one per run.

    ``grads`` are the gradients of the network's parameters, each (*shape) for one run, or
    (K, *shape) for K stacked runs when ``runs`` = K. The sums of squares are added tensor by
    tensor in parameter order, so a run alone and the same run stacked add the same numbers in
    the same order.
    """
    rows = 1 if runs is None else runs
    total = None
    for g in grads:
        square = g.detach().reshape(rows, -1).pow(2).sum(1)
        total = square if total is None else total + square
    assert total is not None, "a network without parameters"
    norm = total.sqrt()
    return norm[0] if runs is None else norm


class CurveRecorder:
    """The curve of one run: its evaluation steps, noise, and the points recorded so far."""

    def __init__(self, c: RunConfig, scorer: Scorer, device: torch.device) -> None:
        self.c, self.scorer, self.device = c, scorer, device
        self.points: list[dict[str, Any]] = []
        self.seconds = 0.0  # spent on intermediate evaluations (not training)
        self._noise: torch.Tensor | None = None
        self._last_step = 0

    @property
    def on(self) -> bool:
        return self.c.eval_every > 0

    def due(self, steps_done: int) -> bool:
        """Whether an intermediate evaluation falls after ``steps_done`` steps (the final one is
        :meth:`finish`'s)."""
        return self.on and steps_done % self.c.eval_every == 0 and steps_done < self.c.steps

    def evaluate(self, g_net: torch.nn.Module, steps_done: int, sums: torch.Tensor | None
                 ) -> None:
        """Score ``n_eval_curve`` samples of ``g_net`` and record a point with the means of
        ``sums`` (6,), the step statistics summed since the previous point."""
        start = time.perf_counter()
        if self._noise is None:
            self._noise = eval_noise(self.c, min(self.c.n_eval_curve, self.c.n_eval))
        samples = generate(g_net, self.c, self.device, self._noise)
        scores = self.scorer.score(samples, names=CURVE_SCORES)
        self._record(steps_done, False, len(samples), scores, sums)
        self.seconds += time.perf_counter() - start

    def state(self) -> dict[str, Any]:
        """What a snapshot keeps of the curve (the noise is drawn again when needed)."""
        return {"points": self.points, "seconds": self.seconds, "last_step": self._last_step}

    def load_state(self, state: dict[str, Any]) -> None:
        self.points = [dict(p) for p in state["points"]]
        self.seconds, self._last_step = state["seconds"], state["last_step"]

    def finish(self, steps_done: int, scores: dict[str, float], n_samples: int,
               sums: torch.Tensor | None) -> list[dict[str, Any]]:
        """Record the final evaluation (the run's own scores) and return the whole curve."""
        if self.on:
            self._record(steps_done, True, n_samples, scores, sums)
        return self.points

    def _record(self, steps_done: int, final: bool, n_samples: int, scores: dict[str, float],
                sums: torch.Tensor | None) -> None:
        c, n_steps = self.c, steps_done - self._last_step
        self._last_step = steps_done
        means = ([math.nan] * len(STEP_STATS) if sums is None or n_steps <= 0
                 else (sums.double() / n_steps).tolist())
        margin = math.nan
        if c.is_ebgan:
            margin = scheduled_margin(c.margin, c.margin_schedule, steps_done - 1, c.steps,
                                      c.margin_end)
        self.points.append({"run_id": c.run_id(), "step": steps_done, "final": final,
                            "n_samples": n_samples, **dict(zip(STEP_STATS, means, strict=True)),
                            **{name: scores.get(name, math.nan) for name in CURVE_SCORES},
                            "margin": margin})
