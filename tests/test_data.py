"""TFDS loading: real MNIST splits, and clear errors for missing or corrupt files."""

from __future__ import annotations

import os

import numpy as np
import pytest

from jaxopt_lab import cli
from jaxopt_lab.training import data
from jaxopt_lab.training.data import DatasetError, load_dataset

MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def test_mnist_splits_are_device_arrays_of_the_documented_shapes(mnist):
    assert mnist.name == "mnist" and mnist.num_classes == 10
    assert mnist.train_images.shape == (60000, 28, 28, 1)
    assert mnist.test_images.shape == (10000, 28, 28, 1)
    assert mnist.train_images.dtype == np.uint8 and mnist.train_labels.dtype == np.int32
    assert mnist.train_labels.shape == (60000,) and mnist.test_labels.shape == (10000,)
    counts = np.bincount(np.asarray(mnist.train_labels), minlength=10)
    assert counts.sum() == 60000 and counts.min() > 5000  # every digit well represented
    assert int(mnist.train_images.max()) == 255 and int(mnist.train_images.min()) == 0


def test_unknown_dataset_name_is_rejected():
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'"):
        load_dataset("cifar10")


def test_empty_manual_dir_names_the_missing_files_and_where_they_go(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(DatasetError) as error:
        load_dataset(data_dir=str(tmp_path / "tfds"), manual_dir=str(manual), download=False)
    message = str(error.value)
    assert str(manual) in message
    for filename in MNIST_FILES:
        assert filename in message


def truncate(payload: bytes) -> bytes:
    return payload[:1000]


def garble(payload: bytes) -> bytes:
    """Same size, one flipped byte in the middle: only the hash can tell."""
    middle = len(payload) // 2
    return payload[:middle] + bytes([payload[middle] ^ 0xFF]) + payload[middle + 1 :]


@pytest.mark.parametrize("corrupt", [truncate, garble])
def test_corrupt_file_gives_a_checksum_error(tmp_path, corrupt):
    manual = tmp_path / "manual"
    manual.mkdir()
    source = os.environ["MNIST_DIR"]
    for filename in MNIST_FILES:
        os.symlink(os.path.join(source, filename), manual / filename)
    corrupted = manual / "train-labels-idx1-ubyte.gz"
    payload = corrupt(corrupted.read_bytes())
    corrupted.unlink()
    corrupted.write_bytes(payload)
    with pytest.raises(DatasetError, match="checksum mismatch") as error:
        load_dataset(data_dir=str(tmp_path / "tfds"), manual_dir=str(manual), download=False)
    assert "train-labels-idx1-ubyte.gz" in str(error.value)


def test_cli_reports_missing_files_without_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data, "_resolves", lambda host: False)  # behave as offline
    monkeypatch.delenv("MNIST_DIR")
    monkeypatch.delenv(data.DATA_ROOT_VARIABLE)
    code = cli.main(["train", "--data-dir", str(tmp_path / "tfds"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    assert str(tmp_path / "tfds" / "downloads" / "manual") in err
    assert "train-images-idx3-ubyte.gz" in err
    assert not (tmp_path / "run").exists()


def test_mnist_dir_is_not_used_for_other_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_DIR", str(tmp_path))
    monkeypatch.delenv(data.DATA_ROOT_VARIABLE)
    with pytest.raises(DatasetError, match="downloads/manual"):
        load_dataset("fashion_mnist", data_dir=str(tmp_path / "tfds"), download=False)


def test_an_unwritable_data_dir_is_reported_with_its_own_cause(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(DatasetError) as error:
        load_dataset(data_dir=str(blocker / "tfds"), download=False)
    message = str(error.value)
    assert f"cannot write to the TFDS data directory {blocker / 'tfds'}" in message
    assert "Not a directory" in message and "missing" not in message


def test_a_read_only_data_dir_is_reported_as_read_only(tmp_path):
    read_only = tmp_path / "tfds"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        probe = read_only / "probe"
        try:
            probe.write_text("")  # root ignores permissions: nothing to test then
            pytest.skip("permissions are not enforced for this user")
        except PermissionError:
            pass
        with pytest.raises(DatasetError, match="Permission denied") as error:
            load_dataset(data_dir=str(read_only), download=False)
        assert "missing" not in str(error.value)
    finally:
        read_only.chmod(0o755)


def test_the_console_shows_no_tensorflow_or_tfds_lines(tmp_path):
    """Loading (and preparing) data prints one progress bar and nothing from TF or absl."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    script = (
        "from jaxopt_lab.training.data import load_dataset\n"
        f"load_dataset('mnist', data_dir={str(tmp_path / 'tfds')!r}, download=False, "
        "progress=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(repo)},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for noise in ("oneDNN", "absl", "tensorflow", "Downloading and preparing", "Generating"):
        assert noise not in output
    assert result.stdout == ""
    bars = {line.split(":")[0] for line in result.stderr.replace("\r", "\n").splitlines() if line}
    assert bars == {"data mnist"}


def test_kept_arrays_equal_what_tfds_reads_and_a_later_load_skips_tensorflow(mnist):
    import subprocess
    import sys

    kept = data._read_arrays(data._arrays_file("mnist", None))  # written by the fixture
    assert kept is not None
    read = data._read_tfds("mnist", None, None, download=False, progress=False)
    assert kept.provenance == read.provenance and kept.num_classes == read.num_classes == 10
    for split in ("train", "test"):
        for kept_array, read_array in zip(kept.splits[split], read.splits[split], strict=True):
            assert kept_array.dtype == read_array.dtype
            assert np.array_equal(kept_array, read_array)
    np.testing.assert_array_equal(mnist.test_labels, read.splits["test"][1])
    script = (
        "import sys\nfrom jaxopt_lab.training.data import load_dataset\n"
        "dataset = load_dataset('mnist', download=False)\n"
        "print('tensorflow' in sys.modules, dataset.provenance.split_sha256['test'])"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", read.provenance.split_sha256["test"]]


def test_kept_arrays_that_do_not_match_their_hashes_are_read_again(mnist, tmp_path, monkeypatch):
    path = tmp_path / "arrays" / "mnist.npz"
    monkeypatch.setattr(data, "_arrays_file", lambda name, data_dir: path)
    read = data._read_tfds("mnist", None, None, download=False, progress=False)
    images, labels = read.splits["test"]
    tampered = labels.copy()
    tampered[0] = (tampered[0] + 1) % 10  # one label changed, the record kept
    splits = {**read.splits, "test": (images, tampered)}
    data._write_arrays(path, data._HostSplits(splits, read.num_classes, read.provenance))
    with pytest.warns(UserWarning, match="do not match"):
        dataset = load_dataset("mnist", download=False)
    np.testing.assert_array_equal(dataset.test_labels, labels)  # TFDS's labels, not the file's
    assert dataset.provenance == read.provenance
    assert data._read_arrays(path) is not None  # and the file was written again, intact


def test_an_unwritable_arrays_folder_only_costs_time(mnist, tmp_path, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setattr(data, "_arrays_file", lambda name, data_dir: blocker / "mnist.npz")
    dataset = load_dataset("mnist", download=False)
    np.testing.assert_array_equal(dataset.test_labels, mnist.test_labels)
    assert not (blocker / "mnist.npz").exists()
