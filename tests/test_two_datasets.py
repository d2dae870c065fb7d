"""MNIST and Fashion-MNIST ship files of the same names: preparing the second in a data
directory that holds the first must still give the second's own pixels and labels."""

from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pytest
from conftest import SHARED_DATA

from jaxopt_lab import cli
from jaxopt_lab.training import data
from jaxopt_lab.training.data import load_dataset


def idx_array(path) -> np.ndarray:
    """An IDX file (the MNIST format) read directly: the oracle, independent of TFDS."""
    raw = gzip.decompress(path.read_bytes())
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """MNIST, then Fashion-MNIST, prepared offline in one fresh TFDS data directory."""
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    mnist = load_dataset(
        "mnist", data_dir=data_dir, manual_dir=str(SHARED_DATA / "mnist"), download=False
    )
    fashion = load_dataset(
        "fashion_mnist",
        data_dir=data_dir,
        manual_dir=str(SHARED_DATA / "fashion_mnist"),
        download=False,
    )
    return mnist, fashion, data_dir


def test_the_second_dataset_has_its_own_pixels_and_labels(both):
    mnist, fashion, _ = both
    folder = SHARED_DATA / "fashion_mnist"
    train_images = idx_array(folder / "train-images-idx3-ubyte.gz")
    train_labels = idx_array(folder / "train-labels-idx1-ubyte.gz")
    test_labels = idx_array(folder / "t10k-labels-idx1-ubyte.gz")
    # The files' own statistics: mean pixel 72.94 (MNIST's is 33.32), 6000 of each class.
    assert float(np.asarray(fashion.train_images).mean()) == pytest.approx(train_images.mean())
    assert float(np.asarray(fashion.train_images).mean()) == pytest.approx(72.94, abs=0.01)
    assert float(np.asarray(mnist.train_images).mean()) == pytest.approx(33.32, abs=0.01)
    assert np.bincount(np.asarray(fashion.train_labels)).tolist() == [6000] * 10
    # TFDS may shuffle examples: compare sorted label multisets and the set of images.
    np.testing.assert_array_equal(np.sort(fashion.train_labels), np.sort(train_labels))
    np.testing.assert_array_equal(np.sort(fashion.test_labels), np.sort(test_labels))
    ours = {row.tobytes() for row in np.asarray(fashion.train_images[:500]).reshape(500, -1)}
    theirs = {row.tobytes() for row in train_images.reshape(len(train_images), -1)}
    assert ours <= theirs


def test_provenance_tells_the_two_apart_and_matches_the_files(both):
    mnist, fashion, _ = both
    assert fashion.provenance.name == "fashion_mnist" and mnist.provenance.name == "mnist"
    assert fashion.provenance.split_sizes == {"train": 60000, "test": 10000}
    for name, dataset in (("mnist", mnist), ("fashion_mnist", fashion)):
        for filename, checksum in dataset.provenance.source_sha256.items():
            actual = hashlib.sha256((SHARED_DATA / name / filename).read_bytes()).hexdigest()
            assert checksum == actual
    assert fashion.provenance.split_sha256["train"] != mnist.provenance.split_sha256["train"]


@pytest.mark.slow
def test_the_seed_job_on_fashion_mnist_reaches_fashion_accuracy(both, tmp_path, monkeypatch):
    _, fashion, _ = both
    monkeypatch.setattr(data, "load_dataset", lambda *args, **kwargs: fashion)
    out = tmp_path / "run"
    argv = ["train", "--dataset", "fashion_mnist", "--epochs", "5", "--out", str(out)]
    assert cli.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # Fashion-MNIST's seed job reaches about 0.87; on MNIST's digits it would be 0.977.
    assert 0.85 <= metrics["test_accuracy"] <= 0.90
    assert metrics["data"]["name"] == "fashion_mnist"
    assert metrics["data"]["split_sha256"] == fashion.provenance.split_sha256
