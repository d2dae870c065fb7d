"""TFDS image-classification datasets (MNIST first), as arrays resident on the device.

:func:`load_dataset` goes through ``tfds.builder(name, data_dir=...)`` and
``download_and_prepare``, so a user with internet gets TFDS's own download. Offline,
TFDS reads the dataset's original files (for MNIST the four ``.gz`` files) from its
*manual directory* and checks them against the checksums it has registered. The manual
directory is, in order: the ``manual_dir`` argument, the environment variable
``MNIST_DIR`` (MNIST only: Fashion-MNIST and KMNIST ship files of the same names), or
TFDS's default ``<data_dir>/downloads/manual``.

Both splits are read once into uint8/int32 arrays and moved to the device once; training
then gathers batches from them without touching the host.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import jax
import numpy as np

SUPPORTED_DATASETS: tuple[str, ...] = ("mnist", "fashion_mnist", "kmnist")
IMAGE_SHAPE: tuple[int, int, int] = (28, 28, 1)


class DatasetError(RuntimeError):
    """The dataset cannot be prepared: files missing, corrupt, or not downloadable."""


@dataclass(frozen=True)
class Dataset:
    """Train and test splits on the device.

    Images are uint8 of shape ``(N, 28, 28, 1)``; labels are int32 of shape ``(N,)``.
    """

    name: str
    train_images: jax.Array
    train_labels: jax.Array
    test_images: jax.Array
    test_labels: jax.Array
    num_classes: int


def load_dataset(
    name: str = "mnist",
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    download: bool = True,
) -> Dataset:
    """Prepare TFDS dataset ``name`` if needed and return both splits on the device.

    Args:
      name: one of :data:`SUPPORTED_DATASETS`.
      data_dir: TFDS data directory (default: ``$TFDS_DATA_DIR`` or TFDS's default).
      manual_dir: directory holding the original files for an offline preparation.
      download: when files are missing from the manual directory, let TFDS download
        them. ``False`` fails at once instead.

    Raises:
      ValueError: ``name`` is not a supported dataset.
      DatasetError: the files are missing and cannot be downloaded, or a file does not
        match TFDS's registered checksum.
    """
    if name not in SUPPORTED_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(SUPPORTED_DATASETS)}")
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        _prepare(builder, _manual_dir(name, builder, manual_dir), download)
    info = builder.info
    if tuple(info.features["image"].shape) != IMAGE_SHAPE:
        raise ValueError(f"{name} has images of shape {info.features['image'].shape}, not 28x28x1")
    train_images, train_labels = _read_split(builder, "train")
    test_images, test_labels = _read_split(builder, "test")
    return Dataset(
        name=name,
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        num_classes=info.features["label"].num_classes,
    )


def _manual_dir(name: str, builder, manual_dir: str | None) -> Path:
    if manual_dir is not None:
        return Path(manual_dir).expanduser()
    if name == "mnist" and os.environ.get("MNIST_DIR"):
        return Path(os.environ["MNIST_DIR"]).expanduser()
    return Path(builder.data_dir_root) / "downloads" / "manual"


def _prepare(builder, manual_dir: Path, download: bool) -> None:
    """Run ``download_and_prepare``, turning TFDS's failures into one clear message."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

    url_infos = builder.url_infos or {}
    expected = sorted(info.filename for info in url_infos.values() if info.filename)
    missing = [filename for filename in expected if not (manual_dir / filename).is_file()]
    hosts = {urlparse(url).hostname for url in url_infos}
    if missing and not (download and all(_resolves(host) for host in hosts)):
        raise DatasetError(_missing_message(builder.name, manual_dir, missing, expected))
    config = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    try:
        builder.download_and_prepare(download_config=config)
    except NonMatchingChecksumError as error:
        raise DatasetError(
            f"checksum mismatch while preparing {builder.name}: {error}\n"
            f"A file in {manual_dir} is corrupt or truncated; replace it with the original "
            f"download ({', '.join(expected)})."
        ) from None
    except OSError as error:
        raise DatasetError(
            f"{_missing_message(builder.name, manual_dir, missing, expected)}\n"
            f"(download failed: {error})"
        ) from None


def _resolves(host: str | None) -> bool:
    """Whether ``host`` has an address: a fast offline check before TFDS's slow retries."""
    try:
        return host is not None and bool(socket.getaddrinfo(host, 443))
    except OSError:
        return False


def _missing_message(name: str, manual_dir: Path, missing: list[str], expected: list[str]) -> str:
    return (
        f"cannot prepare TFDS dataset {name!r} offline: {len(missing)} of its files are "
        f"missing from the manual directory {manual_dir}: "
        f"{', '.join(missing)}.\n"
        f"Put the original files ({', '.join(expected)}) in that directory, or point "
        "--manual-dir (or the environment variable MNIST_DIR, for mnist) at a directory "
        "that holds them."
    )


def _read_split(builder, split: str) -> tuple[jax.Array, jax.Array]:
    """Read a whole split in one batch and move it to the device once."""
    import tensorflow_datasets as tfds

    split_data = builder.as_dataset(split=split, batch_size=-1, as_supervised=True)
    images, labels = tfds.as_numpy(split_data)
    return jax.device_put(np.asarray(images, np.uint8)), jax.device_put(
        np.asarray(labels, np.int32)
    )
