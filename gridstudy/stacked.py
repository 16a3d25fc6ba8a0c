"""Batched ops over K runs' stacked weights that give each run bit for bit its own result.

Fused training (:mod:`gridstudy.fused`) must reproduce one-at-a-time training exactly, not
approximately: a GAN trained with Adam is chaotic at the level of a single rounding error (Adam
normalises each gradient element, so the rounding noise in, e.g., the gradient of a bias that
feeds batch norm moves it by a full learning rate; scaling the training data by 1 + 1e-7 changes
a run's losses by 10-20 % after 60 steps). Batched kernels usually compute exactly what the
per-run kernels compute, but not always: ``bmm`` takes another BLAS path than ``mm`` for a
one-column output, and batch norm over K * F channels puts some of a run's features in other
SIMD lanes than batch norm over F when F is not a multiple of the vector width.

So every batched op here is checked once per shape (and thread count) against what a lone run's
autograd computes, on random data, and a loop over runs replaces it where they differ
(:func:`linear_kernels`, :func:`batch_norm_kernel`). Results are cached for the process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from gridstudy.models import SeededDropout, apply_dropout

Tensor = torch.Tensor


@dataclass(frozen=True)
class LinearKernels:
    """The batched forms of a linear layer's products, each exact per run for one shape."""

    forward: Callable[[Tensor, Tensor, Tensor | None], Tensor]  # x (K,B,in), w (K,out,in), b
    grad_x: Callable[[Tensor, Tensor], Tensor]  # g (K,B,out), w -> (K,B,in)
    grad_w: Callable[[Tensor, Tensor], Tensor]  # g, x -> (K,out,in)
    grad_b: Callable[[Tensor], Tensor]  # g -> (K,out)


def _add_bias(y: Tensor, b: Tensor | None) -> Tensor:
    return y if b is None else y + b.unsqueeze(1)


_FORWARD: tuple[Callable[[Tensor, Tensor, Tensor | None], Tensor], ...] = (
    lambda x, w, b: (torch.bmm(x, w.transpose(1, 2)) if b is None
                     else torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))),
    lambda x, w, b: _add_bias(torch.bmm(w, x.transpose(1, 2)).transpose(1, 2).contiguous(), b),
    lambda x, w, b: torch.stack([F.linear(x[k], w[k], None if b is None else b[k])
                                 for k in range(len(w))]),
)
_GRAD_X: tuple[Callable[[Tensor, Tensor], Tensor], ...] = (
    lambda g, w: torch.bmm(g, w),
    lambda g, w: torch.stack([g[k].mm(w[k]) for k in range(len(w))]),
)
_GRAD_W: tuple[Callable[[Tensor, Tensor], Tensor], ...] = (
    lambda g, x: torch.bmm(g.transpose(1, 2), x),
    lambda g, x: torch.matmul(g.transpose(1, 2), x),
    lambda g, x: torch.stack([g[k].t().mm(x[k]) for k in range(len(x))]),
)
_GRAD_B: tuple[Callable[[Tensor], Tensor], ...] = (
    lambda g: g.sum(1),
    lambda g: torch.stack([g[k].sum(0) for k in range(len(g))]),
)


def _first_exact(candidates: tuple[Callable, ...], reference: Tensor, *args: Tensor) -> Callable:
    """The first candidate whose result on ``args`` equals ``reference`` bit for bit."""
    for candidate in candidates[:-1]:
        if torch.equal(candidate(*args), reference):
            return candidate
    return candidates[-1]  # the loop over runs, exact by construction


@cache
def linear_kernels(k: int, batch: int, d_in: int, d_out: int, bias: bool,
                   device: torch.device, threads: int) -> LinearKernels:
    """Kernels for ``F.linear`` (or ``x @ w.T`` without bias) on K runs of one shape."""
    del threads  # part of the cache key: BLAS may split work differently per thread count
    gen = torch.Generator().manual_seed(0)
    x, w, g = (torch.randn(shape, generator=gen).to(device)
               for shape in ((k, batch, d_in), (k, d_out, d_in), (k, batch, d_out)))
    b = torch.randn(k, d_out, generator=gen).to(device) if bias else None
    y, gx, gw, gb = _solo_linear(x, w, b, g)
    return LinearKernels(
        forward=_first_exact(_FORWARD, y, x, w, b),
        grad_x=_first_exact(_GRAD_X, gx, g, w),
        grad_w=_first_exact(_GRAD_W, gw, g, x),
        grad_b=_first_exact(_GRAD_B, gb, g) if bias else _GRAD_B[0],
    )


def _solo_linear(x: Tensor, w: Tensor, b: Tensor | None, g: Tensor
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Output and gradients of each run's linear layer, through autograd as train_run has them."""
    outs: list[list[Tensor]] = [[], [], [], []]
    for k in range(len(w)):
        xk = x[k].clone().requires_grad_()
        wk = w[k].clone().requires_grad_()
        bk = None if b is None else b[k].clone().requires_grad_()
        y = F.linear(xk, wk, bk) if bk is not None else xk @ wk.T
        y.backward(g[k])
        for out, t in zip(outs, (y.detach(), xk.grad, wk.grad, None if bk is None else bk.grad),
                          strict=True):
            out.append(t)
    y, gx, gw, gb = (torch.stack(o) if o[0] is not None else None for o in outs)
    return y, gx, gw, gb


class StackedLinear(torch.autograd.Function):
    """y = x @ w^T (+ b) per run, forward and backward through checked kernels."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, w: Tensor,
                b: Tensor | None, kernels: LinearKernels) -> Tensor:
        ctx.save_for_backward(x, w)
        ctx.kernels = kernels
        return kernels.forward(x, w, b)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, g: Tensor) -> tuple:
        x, w = ctx.saved_tensors
        kernels, g = ctx.kernels, g.contiguous()
        gx = kernels.grad_x(g, w) if ctx.needs_input_grad[0] else None
        gb = kernels.grad_b(g) if ctx.needs_input_grad[2] else None
        return gx, kernels.grad_w(g, x), gb, None


class StackedGram(torch.autograd.Function):
    """x @ x^T per run (the pulling-away term's Gram matrix), as train_run's ``unit @ unit.T``.

    Its gradient is the two matmul gradients added, as autograd adds them for a tensor used twice
    (floating-point addition of two terms does not depend on their order).
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor,
                kernels: LinearKernels) -> Tensor:
        ctx.save_for_backward(x)
        ctx.kernels = kernels
        return kernels.forward(x, x, None)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, g: Tensor) -> tuple:
        (x,) = ctx.saved_tensors
        kernels, g = ctx.kernels, g.contiguous()
        return kernels.grad_x(g, x) + kernels.grad_w(g, x), None


BatchNorm = Callable[[Tensor, Tensor | None, Tensor | None, Tensor, Tensor, float, float], Tensor]


def _batch_norm_flat(x: Tensor, mean: Tensor | None, var: Tensor | None, w: Tensor, b: Tensor,
                     momentum: float, eps: float) -> Tensor:
    """One ``F.batch_norm`` over a (B, K * F) view: each (run, feature) is its own channel."""
    k, n, f = x.shape
    y = F.batch_norm(x.transpose(0, 1).reshape(n, k * f),
                     None if mean is None else mean.view(-1), None if var is None else var.view(-1),
                     w.reshape(-1), b.reshape(-1), True, momentum, eps)
    return y.view(n, k, f).transpose(0, 1).contiguous()


def _batch_norm_loop(x: Tensor, mean: Tensor | None, var: Tensor | None, w: Tensor, b: Tensor,
                     momentum: float, eps: float) -> Tensor:
    """``F.batch_norm`` run by run, exact by construction (unbind: one backward node, not K)."""
    means = [None] * len(x) if mean is None else mean.unbind(0)
    variances = [None] * len(x) if var is None else var.unbind(0)
    return torch.stack([F.batch_norm(*args, True, momentum, eps) for args in
                        zip(x.unbind(0), means, variances, w.unbind(0), b.unbind(0),
                            strict=True)])


@cache
def batch_norm_kernel(k: int, batch: int, features: int, device: torch.device,
                      threads: int) -> BatchNorm:
    """Training-mode batch norm of K runs (K, B, F), per run; checked as :func:`linear_kernels`."""
    del threads  # part of the cache key
    gen = torch.Generator().manual_seed(0)
    x, w, b, g = (torch.randn(shape, generator=gen).to(device)
                  for shape in ((k, batch, features), (k, features), (k, features),
                                (k, batch, features)))
    results = [_run_batch_norm(fn, x, w, b, g) for fn in (_batch_norm_flat, _batch_norm_loop)]
    exact = all(torch.equal(a, c) for a, c in zip(*results, strict=True))
    return _batch_norm_flat if exact else _batch_norm_loop


def _run_batch_norm(fn: BatchNorm, x: Tensor, w: Tensor, b: Tensor, g: Tensor
                    ) -> tuple[Tensor, ...]:
    x, w, b = (t.clone().requires_grad_() for t in (x, w, b))
    mean, var = torch.zeros_like(w), torch.ones_like(w)
    y = fn(x, mean, var, w, b, 0.1, 1e-5)
    y.backward(g)
    return y.detach(), x.grad, w.grad, b.grad, mean, var


_KINDS: dict[type, str] = {nn.Linear: "linear", nn.BatchNorm1d: "bn", nn.ReLU: "relu",
                           nn.Tanh: "tanh", SeededDropout: "dropout"}


class StackedNet:
    """K copies of one network, parameters stacked on a leading run dimension.

    The layers are read from the modules in order (Linear, BatchNorm1d, ReLU, Tanh,
    SeededDropout); any other layer raises, so a change to models.py cannot slip past fusion.
    Batch norm keeps running statistics only where asked (G's are used at evaluation; D's never).
    """

    def __init__(self, modules: list[nn.Module], batch: int, running_stats: bool) -> None:
        # Runs whose dropout rate is 0 have no dropout layers: take the structure with them.
        self.ops = max((_read_ops(m) for m in modules), key=len)
        self.bn = [(b.momentum, b.eps) for b in _batch_norms(modules[0])]
        self.batch = batch
        with torch.no_grad():
            self.params = [torch.stack(p).requires_grad_()
                           for p in zip(*(m.parameters() for m in modules), strict=True)]
            per_layer = zip(*(_batch_norms(m) for m in modules), strict=True)
            self.stats = [(torch.stack([b.running_mean for b in layer]),
                           torch.stack([b.running_var for b in layer]))
                          for layer in per_layer] if running_stats else []
        self._plan()

    def _plan(self) -> None:
        """The checked kernels of every layer for the current number of runs."""
        k, dev, threads = len(self.params[0]), self.params[0].device, torch.get_num_threads()
        self.kernels: list = []
        for kind, i in self.ops:
            if kind == "linear":
                d_out, d_in = self.params[i].shape[1:]
                self.kernels.append(linear_kernels(k, self.batch, d_in, d_out, True, dev, threads))
            elif kind == "bn":
                features = self.params[i].shape[1]
                self.kernels.append(batch_norm_kernel(k, self.batch, features, dev, threads))
            else:
                self.kernels.append(None)

    def forward(self, x: Tensor, keep: Tensor | None = None, one_minus_p: Tensor | None = None,
                frozen: bool = False) -> tuple[Tensor, Tensor]:
        """x (K, B, in) -> (output (K, B, out), input of the last linear layer).

        ``frozen``: no gradients for this network's weights (D in the G update, whose weight
        gradients train_run computes and then discards), only through it to ``x``.
        """
        p = [t.detach() for t in self.params] if frozen else self.params
        n_bn, n_drop, last_in = 0, 0, x
        for (kind, i), kernel in zip(self.ops, self.kernels, strict=True):
            if kind == "linear":
                last_in = x
                x = StackedLinear.apply(x, p[i], p[i + 1], kernel)
            elif kind == "bn":
                mean, var = self.stats[n_bn] if self.stats else (None, None)
                x = kernel(x, mean, var, p[i], p[i + 1], *self.bn[n_bn])
                n_bn += 1
            elif kind == "relu":
                x = torch.relu(x)
            elif kind == "tanh":
                x = torch.tanh(x)
            elif keep is not None:  # dropout, as SeededDropout computes it
                x = apply_dropout(x, keep[:, n_drop], one_minus_p)
                n_drop += 1
        return x, last_in

    def select(self, slots: Tensor) -> None:
        """Keep only the runs at ``slots`` (the others diverged or finished)."""
        with torch.no_grad():
            self.params = [p[slots].requires_grad_() for p in self.params]
            self.stats = [(m[slots], v[slots]) for m, v in self.stats]
        if len(slots):
            self._plan()

    def state(self) -> dict[str, list]:
        """The stacked weights and running statistics (the live tensors), for a snapshot."""
        return {"params": [p.detach() for p in self.params],
                "stats": [[m, v] for m, v in self.stats]}

    def load_state(self, state: dict[str, list]) -> None:
        """Take weights and statistics from :meth:`state` (any number of runs)."""
        dev = self.params[0].device
        if len(state["params"]) != len(self.params) or len(state["stats"]) != len(self.stats):
            raise ValueError("the snapshot's networks do not have this network's layers")
        with torch.no_grad():
            self.params = [p.to(dev, copy=True).requires_grad_() for p in state["params"]]
            self.stats = [(m.to(dev, copy=True), v.to(dev, copy=True))
                          for m, v in state["stats"]]
        self._plan()

    @torch.no_grad()
    def copy_into(self, module: nn.Module, slot: int) -> None:
        """Write run ``slot``'s weights and running statistics into its own module."""
        for target, p in zip(module.parameters(), self.params, strict=True):
            target.copy_(p[slot])
        for bn, (mean, var) in zip(_batch_norms(module), self.stats, strict=True):
            bn.running_mean.copy_(mean[slot])
            bn.running_var.copy_(var[slot])


def _read_ops(module: nn.Module) -> list[tuple[str, int]]:
    """(kind, index of its first stacked parameter) of each layer of ``module``, in order."""
    ops, n_params = [], 0
    for layer in (m for m in module.modules() if not list(m.children())):
        kind = _KINDS.get(type(layer))
        if kind is None:
            raise NotImplementedError(f"fused training cannot stack {type(layer).__name__}")
        ops.append((kind, n_params))
        n_params += len(list(layer.parameters(recurse=False)))
    return ops


def _batch_norms(module: nn.Module) -> list[nn.BatchNorm1d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm1d)]


def stacked_gram(x: Tensor) -> Tensor:
    """x @ x^T per run, (K, N, d) -> (K, N, N), through checked kernels: the ``gram`` that the
    fused trainer gives ``losses.pulling_away_term`` so each run gets train_run's ``@``."""
    k, n, d = x.shape
    kernels = linear_kernels(k, n, d, n, False, x.device, torch.get_num_threads())
    return StackedGram.apply(x, kernels)
