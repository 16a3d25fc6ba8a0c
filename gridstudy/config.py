"""The run configuration: one frozen, typed dataclass holding every hyperparameter of a run.

Its field names are the YAML keys of search spaces, the ``--set`` keys of the CLI and the
columns of the results table. Defaults live here and nowhere else. The fields' labels (the
paper's names for the grid's axes: nLayerG, sizeD, ...) are in the table's schema,
:data:`analysis.schema.PAPER_NAMES`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from gridstudy.errors import UserError

MODELS = ("gan", "ebgan", "ebgan_pt")
OPTIMIZERS = ("adam", "sgd")
MARGIN_SCHEDULES = ("constant", "linear", "cosine")
G_LOSSES = ("non_saturating", "minimax")
DATASETS = ("mnist5k", "mnist", "fashion-mnist")

# EBGAN-PT's default weight for the pulling-away term (paper, Section 4.1: 0.1).
PT_WEIGHT_DEFAULT = 0.1


@dataclass(frozen=True)
class RunConfig:
    """Every hyperparameter of one GAN or EBGAN run (see docs/schema.md for the columns)."""

    model: str = "gan"  # gan, ebgan, or ebgan_pt (EBGAN with the pulling-away term)
    n_layers_g: int = 3  # linear layers in G, output layer included (nLayerG)
    size_g: int = 800  # hidden width of G (sizeG)
    n_layers_d: int = 3  # linear layers in D; for EBGAN encoder layers + 1 decoder (nLayerD)
    size_d: int = 256  # hidden width of D (sizeD)
    dropout_d: bool = False  # dropout after each hidden layer of D (dropoutD)
    dropout_rate: float = 0.5  # dropout probability when dropout_d
    optim_d: str = "adam"  # optimizer of D: adam or sgd (optimD)
    optim_g: str = "adam"  # optimizer of G: adam or sgd (optimG)
    lr: float = 1e-3  # learning rate of both networks (lr)
    adam_beta1: float = 0.5  # Adam's beta1, the DCGAN setting
    sgd_momentum: float = 0.0  # plain SGD, as the paper's grid names it
    margin: float = 10.0  # EBGAN margin m at the first step (paper: 10)
    margin_schedule: str = "constant"  # constant, linear or cosine decay to margin_end
    margin_end: float = 0.0  # margin at the last step when the schedule decays
    pt_weight: float | None = None  # pulling-away weight; None: 0.1 for ebgan_pt, else 0
    g_loss: str = "non_saturating"  # GAN generator loss: non_saturating or minimax
    z_dim: int = 100  # latent dimension
    init_std_g: float = 0.02  # std of G's initial weights (biases start at 0)
    init_std_d: float = 0.002  # std of D's initial weights (biases start at 0)
    batch_size: int = 64  # samples per step, real and generated
    steps: int = 3000  # training steps, each one D update then one G update
    n_eval: int = 5000  # generated samples scored at the end
    eval_every: int = 300  # steps between evaluations during training (0: none); 3000 -> 10
    n_eval_curve: int = 500  # samples scored at each (at most n_eval): the first of its noise
    dataset: str = "mnist5k"  # mnist5k (bundled, offline), mnist or fashion-mnist
    train_size: int = 0  # training digits used: the first N of the data set's split (0: all)
    scorer: str = ""  # data set whose classifier and test digits score the run ("": dataset)
    seed: int = 0  # seeds weights, data order, noise and dropout

    def __post_init__(self) -> None:
        if self.pt_weight is None:
            default = PT_WEIGHT_DEFAULT if self.model == "ebgan_pt" else 0.0
            object.__setattr__(self, "pt_weight", default)
        _validate(self)

    @property
    def is_ebgan(self) -> bool:
        return self.model in ("ebgan", "ebgan_pt")

    @property
    def scored_on(self) -> str:
        """The data set whose classifier and real test digits score this run."""
        return self.scorer or self.dataset

    @property
    def architecture(self) -> tuple:
        """The fields that fix the networks' shapes: runs sharing it can be trained fused."""
        return (self.is_ebgan, self.n_layers_g, self.size_g, self.n_layers_d, self.size_d,
                self.dropout_d, self.z_dim, self.batch_size, self.steps, self.n_eval,
                self.eval_every, self.n_eval_curve, self.dataset, self.train_size,
                self.scored_on, self.init_std_g, self.init_std_d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def run_id(self) -> str:
        """A stable 16-hex-digit hash of every field (model, config and seed).

        Fields added after the first kept studies (:data:`LATER_FIELDS`) enter the hash only
        when they differ from their defaults, so that adding a field renames no earlier run.
        """
        values = {k: v for k, v in self.to_dict().items()
                  if k not in LATER_FIELDS or v != FIELDS[k].default}
        canonical = json.dumps(values, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes``; a new model gets its own default pt_weight unless given."""
        values = {**self.to_dict(), **changes}
        if "model" in changes and "pt_weight" not in changes:
            values["pt_weight"] = None
        return config_from_dict(values)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(RunConfig)}
# Fields added after results/reference-cpu was kept; see RunConfig.run_id.
LATER_FIELDS: tuple[str, ...] = ("eval_every", "n_eval_curve", "train_size", "scorer")
FIELD_TYPES: dict[str, str] = {name: str(f.type) for name, f in FIELDS.items()}

def config_from_dict(values: dict[str, Any], source: str = "config") -> RunConfig:
    """Build a RunConfig, rejecting unknown keys and badly typed values with one-line errors."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise UserError(f"{source}: unknown key {unknown[0]!r}; valid keys: {', '.join(FIELDS)}")
    coerced = {key: coerce_value(key, value, source) for key, value in values.items()}
    return RunConfig(**coerced)


def coerce_value(key: str, value: Any, source: str = "config") -> Any:
    """Check one value against its field's type; ints are accepted where floats are expected."""
    kind = FIELD_TYPES[key]
    where = f"{source}: {key}"
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise UserError(f"{where}: expected true or false, got {value!r}")
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"{where}: expected an integer, got {value!r}")
    if kind in ("float", "float | None"):
        if value is None and kind == "float | None":
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise UserError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, str):
        return value
    raise UserError(f"{where}: expected a string, got {value!r}")


def parse_assignment(text: str, source: str = "--set") -> tuple[str, Any]:
    """Parse ``key=value`` from the command line into a typed (key, value) pair."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"{source}: expected key=value, got {text!r}")
    if key not in FIELDS:
        raise UserError(f"{source}: unknown key {key!r}; valid keys: {', '.join(FIELDS)}")
    raw = raw.strip()
    kind = FIELD_TYPES[key]
    value: Any = raw
    if kind == "bool":
        lowered = raw.lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise UserError(f"{source}: {key}: expected true or false, got {raw!r}")
        value = lowered in ("true", "1", "yes")
    elif kind in ("int", "float", "float | None"):
        try:
            value = float(raw)
        except ValueError:
            raise UserError(f"{source}: {key}: expected a number, got {raw!r}") from None
    return key, coerce_value(key, value, source)


def _validate(c: RunConfig) -> None:
    def fail(key: str, message: str) -> None:
        raise UserError(f"config: {key}: {message}")

    choices = {"model": MODELS, "optim_d": OPTIMIZERS, "optim_g": OPTIMIZERS,
               "margin_schedule": MARGIN_SCHEDULES, "g_loss": G_LOSSES, "dataset": DATASETS,
               "scorer": ("", *DATASETS)}
    for key, allowed in choices.items():
        if getattr(c, key) not in allowed:
            fail(key, f"{getattr(c, key)!r} is not one of {', '.join(allowed)}")
    for key in ("n_layers_g", "n_layers_d"):
        if getattr(c, key) < 2:
            fail(key, "must be an integer >= 2 (an input and an output layer), "
                      f"got {getattr(c, key)}")
    for key in ("size_g", "size_d", "z_dim", "batch_size", "steps", "n_eval"):
        if getattr(c, key) < 1:
            fail(key, f"must be a positive integer, got {getattr(c, key)}")
    if c.train_size < 0:
        fail("train_size", f"must be >= 0 (0: every training digit), got {c.train_size}")
    if c.eval_every < 0:
        fail("eval_every", f"must be >= 0 (0 turns evaluation during training off), "
                           f"got {c.eval_every}")
    if c.n_eval_curve < 2:
        fail("n_eval_curve", f"must be at least 2 (the Fréchet distance needs two samples), "
                             f"got {c.n_eval_curve}")
    if c.batch_size < 2:
        fail("batch_size", "must be at least 2 (batch norm and the pulling-away term need pairs)")
    positive = ("lr", "init_std_g", "init_std_d")
    for key in positive:
        value = getattr(c, key)
        if not (math.isfinite(value) and value > 0):
            fail(key, f"must be a finite number > 0, got {value}")
    for key in ("margin", "margin_end", "pt_weight", "sgd_momentum"):
        value = getattr(c, key)
        if not (math.isfinite(value) and value >= 0):
            fail(key, f"must be a finite number >= 0, got {value}")
    for key in ("dropout_rate", "adam_beta1"):
        if not 0 <= getattr(c, key) < 1:
            fail(key, f"must be in [0, 1), got {getattr(c, key)}")
    if c.seed < 0:
        fail("seed", f"must be >= 0, got {c.seed}")
    if c.model == "ebgan_pt" and c.pt_weight == 0:
        fail("pt_weight", "ebgan_pt needs pt_weight > 0 (use model ebgan for no pulling-away term)")
    if c.model != "ebgan_pt" and c.pt_weight != 0:
        fail("pt_weight", "only ebgan_pt uses the pulling-away term; "
                          f"got {c.pt_weight} for {c.model}")
