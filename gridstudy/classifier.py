"""The digit classifier that scores generated samples (I', IS and the feature-space scores).

A small ConvNet with three weight layers (conv 5x5 -> pool -> conv 5x5 -> pool -> linear),
trained on the training split of a run's data set with small random shifts, and cached on disk
keyed by data set name and content so every run of a study is scored by the same network.
Checkpoints hold tensors only and load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from analysis.schema import compute_scores
from analysis.scores import Gaussian, fit_gaussian
from gridstudy.data import IMAGE_SIDE, Dataset, cache_dir
from gridstudy.errors import UserError, one_line

FEATURE_DIM = 512  # width of the penultimate layer, the space of the Fréchet distance
CHECKPOINT_VERSION = 1


class ConvNet(nn.Module):
    """Images (n, 784) in [-1, 1] -> logits (n, 10); ``features`` gives the penultimate layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5)  # 28 -> 24, pooled to 12
        self.conv2 = nn.Conv2d(32, 32, 5)  # 12 -> 8, pooled to 4: 32 * 4 * 4 = 512 features
        self.dropout = nn.Dropout(0.3)
        self.fc = nn.Linear(FEATURE_DIM, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer (n, 512), in (channel, row, column) order.

        Out of training mode (scoring) the convolutions run in channels-last layout and each
        ReLU follows its pooling: on one CPU thread that is 2.7 times as fast over 500 samples
        (benchmarks/curve_cost.py), and it scores every sample of every run, during training and
        at its end. ReLU commutes with max pooling exactly (it is monotone); the layout changes
        the convolutions' rounding only (~1e-6).
        """
        h = x.view(-1, 1, IMAGE_SIDE, IMAGE_SIDE)
        if self.training:
            h = F.max_pool2d(F.relu(self.conv1(h)), 2)
            return F.max_pool2d(F.relu(self.conv2(h)), 2).flatten(1)
        h = F.relu(F.max_pool2d(_conv_channels_last(self.conv1, h), 2))
        return F.relu(F.max_pool2d(_conv_channels_last(self.conv2, h), 2)).contiguous().flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x)))


def _conv_channels_last(conv: nn.Conv2d, h: torch.Tensor) -> torch.Tensor:
    """``conv(h)`` computed in channels-last layout. The layout is forced by copying into
    channels-last strides: with one channel, ``.contiguous(memory_format=...)`` keeps the old
    strides (both layouts are contiguous) and the convolution stays channels-first."""
    def channels_last(t: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(t, memory_format=torch.channels_last).copy_(t)

    return F.conv2d(channels_last(h), channels_last(conv.weight), conv.bias)


@dataclass(frozen=True)
class Classifier:
    """A trained ConvNet with its provenance: what a study's scores depend on."""

    net: ConvNet
    dataset: str
    fingerprint: str
    test_accuracy: float

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities (n, 10) as float64 and penultimate features (n, 512) as float32."""
        self.net.eval()
        device = next(self.net.parameters()).device
        probs, feats = [], []
        for chunk in images.split(batch):
            f = self.net.features(chunk.to(device, torch.float32))
            logits = self.net.fc(f).double()
            probs.append(torch.softmax(logits, dim=1).cpu().numpy())
            feats.append(f.cpu().numpy())
        return np.concatenate(probs), np.concatenate(feats)

    def state(self) -> dict:
        """A plain dict of tensors and numbers: ships through Ray's object store and to disk."""
        return {"version": CHECKPOINT_VERSION, "state_dict": self.net.state_dict(),
                "dataset": self.dataset, "fingerprint": self.fingerprint,
                "test_accuracy": self.test_accuracy}

    @classmethod
    def from_state(cls, state: dict, source: str = "classifier") -> Classifier:
        """The classifier of a :meth:`state` dict; anything else is a one-line UserError."""
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
            raise UserError(f"{source}: not a gridstudy classifier checkpoint (version mismatch); "
                            "delete it to retrain")
        net = ConvNet()
        try:
            net.load_state_dict(state["state_dict"])
            provenance = (str(state["dataset"]), str(state["fingerprint"]),
                          float(state["test_accuracy"]))
        except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"{source}: checkpoint does not match the classifier "
                            f"({one_line(str(exc) or type(exc).__name__, 120)}); "
                            "delete it to retrain") from None
        net.eval()
        return cls(net, *provenance)


def classifier_path(data: Dataset, epochs: int = 15) -> Path:
    """Where the classifier of ``data`` is cached: keyed by data set name and content."""
    return cache_dir() / f"classifier-{data.name}-{data.fingerprint()}-e{epochs}.pt"


def load_or_train_classifier(data: Dataset, *, epochs: int = 15, verbose: bool = False
                             ) -> Classifier:
    """The cached classifier for ``data``, training and caching it on first use."""
    path = classifier_path(data, epochs)
    if path.exists():
        try:
            with warnings.catch_warnings():  # torch warns about a damaged file, then raises
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UserError(f"{path}: corrupt classifier checkpoint ({type(exc).__name__}); "
                            "delete it to retrain") from None
        classifier = Classifier.from_state(state, str(path))
        if classifier.fingerprint != data.fingerprint():
            raise UserError(f"{path}: checkpoint was trained on other data; delete it to retrain")
        return classifier
    classifier = train_classifier(data, epochs=epochs, verbose=verbose)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(classifier.state(), tmp)
    tmp.replace(path)
    return classifier


def train_classifier(data: Dataset, *, epochs: int = 15, batch_size: int = 64, seed: int = 0,
                     verbose: bool = False) -> Classifier:
    """Train the ConvNet on ``data``'s training split (Adam, random shifts of up to 2 pixels)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = ConvNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    x, y = data.train_x, data.train_y
    start = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(y), generator=generator)
        for idx in order.split(batch_size):
            loss = F.cross_entropy(net(_shift(x[idx], generator)), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        schedule.step()
        if verbose:
            print(f"classifier epoch {epoch + 1}/{epochs} loss {loss.item():.3f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    net.eval()
    classifier = Classifier(net, data.name, data.fingerprint(), 0.0)
    accuracy = evaluate_accuracy(classifier, data.test_x, data.test_y)
    return Classifier(net, data.name, data.fingerprint(), accuracy)


def evaluate_accuracy(classifier: Classifier, x: torch.Tensor, y: torch.Tensor) -> float:
    probs, _ = classifier.predict(x)
    return float((probs.argmax(1) == y.numpy()).mean())


def _shift(images: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Translate each image by a random whole number of pixels, padding with background (-1)."""
    n = images.shape[0]
    padded = F.pad(images.view(n, IMAGE_SIDE, IMAGE_SIDE), (max_shift,) * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2,), generator=generator).tolist()
    return padded[:, dy:dy + IMAGE_SIDE, dx:dx + IMAGE_SIDE].reshape(n, -1)


class Scorer:
    """Scores generated samples against a data set's real test digits with one classifier.

    The real digits' features are computed once, so scoring a run costs one classifier pass over
    its samples plus the score arithmetic (:func:`analysis.schema.compute_scores`).
    """

    def __init__(self, classifier: Classifier, real_x: torch.Tensor | None) -> None:
        self.classifier = classifier
        self._real_gaussian: Gaussian | None = None
        if real_x is not None:
            _, self.real_features = classifier.predict(real_x)

    @classmethod
    def from_features(cls, classifier: Classifier, real_features: np.ndarray) -> Scorer:
        """A scorer whose real-digit features were computed elsewhere (once, on the driver)."""
        scorer = cls(classifier, None)
        scorer.real_features = real_features
        return scorer

    @property
    def name(self) -> str:
        """Which classifier scores: its data set and the start of its content fingerprint."""
        return f"{self.classifier.dataset}:{self.classifier.fingerprint[:12]}"

    def score(self, samples: torch.Tensor, names: Iterable[str] | None = None
              ) -> dict[str, float]:
        """The registry's scores of ``samples`` (all, or ``names``); NaN when not finite."""
        probs, features = self.classifier.predict(samples)
        if self._real_gaussian is None and np.isfinite(self.real_features).all():
            self._real_gaussian = fit_gaussian(self.real_features)  # once per scorer
        return compute_scores(probs, features, self.real_features, names=names,
                              real_gaussian=self._real_gaussian)


def prepare_classifier(dataset: str, data_dir: str | None = None, *, data: Dataset | None = None,
                       verbose: bool = False) -> Classifier:
    """The cached classifier of a named data set (trained on first use)."""
    from gridstudy.data import load_dataset

    return load_or_train_classifier(data or load_dataset(dataset, data_dir), verbose=verbose)


def evaluate_classifier(dataset: str, data_dir: str | None) -> dict[str, float | str | int]:
    """Accuracy and scores of the real test images (t10k) in ``data_dir`` under the classifier
    of ``dataset``: the scores a perfect generator would get.

    I' and IS use every test image; the Fréchet distance and precision/recall compare the two
    halves of the test set (real against real), their noise floor.
    """
    from gridstudy.data import read_idx_split

    if data_dir is None:
        raise UserError("classifier evaluate needs --data-dir, a folder with the t10k IDX files")
    classifier = prepare_classifier(dataset, data_dir if dataset != "mnist5k" else None)
    test_x, test_y = read_idx_split(Path(data_dir), "test")
    probs, features = classifier.predict(test_x)
    accuracy = float((probs.argmax(1) == test_y.numpy()).mean())
    half = len(features) // 2
    feature_scores = compute_scores(probs[:half], features[:half], features[half:])
    whole = compute_scores(probs, features, features)
    return {"dataset": dataset, "classifier_fingerprint": classifier.fingerprint,
            "classifier_test_accuracy_own_split": classifier.test_accuracy,
            "n_test": len(probs), "accuracy": accuracy,
            **{k: whole[k] for k in whole if k not in ("frechet_distance", "precision", "recall")},
            "frechet_distance_half_vs_half": feature_scores["frechet_distance"],
            "precision_half_vs_half": feature_scores["precision"],
            "recall_half_vs_half": feature_scores["recall"]}
