"""The IDX reader and the named data sets, on small files made by the tests."""

import gzip
import struct

import numpy as np
import pytest

from gridstudy.data import load_dataset, read_idx, read_idx_split, to_uint8
from gridstudy.errors import UserError


def write_idx(path, array, compress=True):
    codes = {np.uint8: 0x08, np.int32: 0x0C}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    (gzip.open if compress else open)(path, "wb").write(payload)
    return path


def make_folder(root, n_train=7, n_test=3, compress=True):
    rng = np.random.default_rng(0)
    ext = ".gz" if compress else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{prefix}-images-idx3-ubyte{ext}",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{ext}",
                  rng.integers(0, 10, n, dtype=np.uint8), compress)
    return root


def test_read_idx_counts_come_from_the_header(tmp_path):
    array = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    for compress in (True, False):
        path = write_idx(tmp_path / f"x{compress}", array, compress)
        assert np.array_equal(read_idx(path), array)
    ints = np.array([1, -2, 300], dtype=np.int32)
    assert np.array_equal(read_idx(write_idx(tmp_path / "i", ints)), ints)


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_folder_and_scaling(tmp_path, compress):
    make_folder(tmp_path, compress=compress)
    data = load_dataset("mnist", tmp_path)
    assert data.train_x.shape == (7, 784) and data.test_x.shape == (3, 784)
    assert data.train_x.min() >= -1 and data.train_x.max() <= 1
    raw = read_idx(tmp_path / ("train-images-idx3-ubyte" + (".gz" if compress else "")))
    assert np.array_equal(to_uint8(data.train_x), raw)


def test_torchvision_raw_layout_and_env_var(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    make_folder(raw)
    monkeypatch.setenv("GRIDSTUDY_DATA_DIR", str(tmp_path))
    assert load_dataset("mnist").train_x.shape == (7, 784)


def test_missing_folder_is_one_line_error(tmp_path):
    with pytest.raises(UserError) as info:
        load_dataset("mnist", tmp_path / "nowhere")
    assert "train-images-idx3-ubyte" in str(info.value) and "--data-dir" in str(info.value)
    assert "\n" not in str(info.value)


def test_wrong_magic_names_the_file(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"\x01\x02\x08\x03" + b"\x00" * 20))
    with pytest.raises(UserError, match="bad.gz: wrong magic number"):
        read_idx(path)


def test_truncated_file_names_the_file(tmp_path):
    path = write_idx(tmp_path / "t.gz", np.zeros((5, 28, 28), dtype=np.uint8))
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))
    with pytest.raises(UserError, match="t.gz: truncated"):
        read_idx(path)
    (tmp_path / "cut.gz").write_bytes(path.read_bytes()[:30])  # a cut gzip stream
    with pytest.raises(UserError, match="cut.gz"):
        read_idx(tmp_path / "cut.gz")


def test_label_count_mismatch(tmp_path):
    make_folder(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(2, dtype=np.uint8))
    with pytest.raises(UserError, match="3 images but 2 labels"):
        read_idx_split(tmp_path, "test")


def test_unknown_dataset():
    with pytest.raises(UserError, match="unknown dataset"):
        load_dataset("cifar10")


def test_mnist5k_is_offline_balanced_and_split():
    data = load_dataset("mnist5k")
    assert data.train_x.shape == (4000, 784) and data.test_x.shape == (1000, 784)
    assert data.train_y.bincount().tolist() == [400] * 10
    assert data.test_y.bincount().tolist() == [100] * 10
    assert data.fingerprint() == load_dataset("mnist5k").fingerprint()
