"""The digits, MNIST (IDX) and UCR (.ts) sources: real files written here, real training runs."""

from __future__ import annotations

import gzip
import importlib.util
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from latentsweep.data import load_digits, load_mnist, load_ucr, prepare, read_idx, read_ts
from latentsweep.errors import ConfigError, DataError
from latentsweep.pipeline import load_data, train

HAS_AEON = importlib.util.find_spec("aeon") is not None


# --- helpers ------------------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray, gz: bool = False, cut: int = 0) -> Path:
    """An IDX file as published (magic 0 0 0x08 ndim, big-endian dims, uint8 data)."""
    array = np.asarray(array, dtype=np.uint8)
    raw = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.tobytes()
    raw = raw[: len(raw) - cut]
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def write_mnist(folder: Path, n_train: int = 12, n_test: int = 5, gz: bool = False) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, (n_train, 28, 28))
    write_idx(folder / "train-images-idx3-ubyte", train_images, gz)
    write_idx(folder / "train-labels-idx1-ubyte", np.arange(n_train) % 10, gz)
    write_idx(folder / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28)), gz)
    write_idx(folder / "t10k-labels-idx1-ubyte", (np.arange(n_test) + 3) % 10, gz)
    return train_images


def write_ts(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("# written by the test\n" + header.strip() + "\n" + "\n".join(rows) + "\n")
    return path


UNI_HEADER = """@problemName Toy
@timeStamps false
@missing false
@univariate true
@equalLength true
@seriesLength 5
@classLabel true up down
@data"""


def toy_ucr(folder: Path, n_train: int = 24, n_test: int = 8, length_range=(20, 40)) -> Path:
    """A variable-length univariate problem, NaN-padded like the archive's, with gaps '?'."""
    folder.mkdir(parents=True, exist_ok=True)
    header = """@problemName Toy
@timeStamps false
@missing true
@univariate true
@equalLength false
@classLabel true up down
@data"""
    rng = np.random.default_rng(1)
    longest = length_range[1]
    for name, n in (("TRAIN", n_train), ("TEST", n_test)):
        rows = []
        for i in range(n):
            length = int(rng.integers(*length_range))
            up = i % 2 == 0
            t = np.linspace(0, 1, length)
            values = [f"{v:.4f}" for v in (t if up else 1 - t) + rng.normal(0, 0.05, length)]
            values[length // 2] = "?"
            values += ["NaN"] * (longest - length)  # padding to equal row width
            rows.append(",".join(values) + (":up" if up else ":down"))
        write_ts(folder / f"Toy_{name}.ts", header, rows)
    return folder


# --- digits -------------------------------------------------------------------------------------
def test_digits_rows_as_sequence_in_unit_range():
    data = load_digits(n_samples=100)
    assert len(data) == 100 and data.image_shape == (8, 8)
    assert data.n_channels == 8 and set(data.lengths.tolist()) == {8}
    assert float(data.values.min()) == 0.0 and float(data.values.max()) == 1.0
    assert data.class_names == [str(d) for d in range(10)]
    assert data.labels[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    from sklearn.datasets import load_digits as sk_digits

    first = torch.as_tensor(sk_digits().images[3] / 16.0, dtype=torch.float32)
    assert torch.allclose(data[3], first)  # row r of the image is time step r
    prepared = prepare(data, normalize="none", min_length=8)
    assert prepared.spec.unit_range and prepared.spec.image_shape == (8, 8)
    assert prepared.spec.fixed_length == 8 and prepared.spec.n_classes == 10


def test_digits_schema_rejects_impossible_subset(make_cfg):
    from latentsweep.config import validate

    with pytest.raises(ConfigError, match="data.n_samples"):
        validate(make_cfg(["data=digits", "data.n_samples=5000"], tiny=False))


# --- IDX / MNIST --------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_idx_reader_round_trip(tmp_path, gz):
    array = np.random.default_rng(0).integers(0, 256, (3, 4, 5))
    path = write_idx(tmp_path / "images-idx3-ubyte", array, gz=gz)
    assert path.suffix == (".gz" if gz else "")
    out = read_idx(path)
    assert out.shape == (3, 4, 5) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_reader_truncated_file(tmp_path, gz):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 4, 5)), gz=gz, cut=7)
    with pytest.raises(DataError, match="truncated") as err:
        read_idx(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_idx_reader_damaged_gzip_and_bad_magic(tmp_path):
    good = write_idx(tmp_path / "x-idx1-ubyte", np.arange(10), gz=True)
    cut = tmp_path / "cut-idx1-ubyte.gz"
    cut.write_bytes(good.read_bytes()[:-12])  # download stopped half-way
    with pytest.raises(DataError, match="damaged or incomplete"):
        read_idx(cut)
    bogus = tmp_path / "bogus-idx1-ubyte"
    bogus.write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(bogus)


def test_mnist_from_flat_gz_files(tmp_path):
    train_images = write_mnist(tmp_path / "mnist", gz=True)
    data = load_mnist(root=str(tmp_path / "mnist"))
    assert len(data) == 17 and data.image_shape == (28, 28) and data.n_channels == 28
    assert data.split == ["train"] * 12 + ["test"] * 5
    assert data.labels.tolist()[:12] == list(range(10)) + [0, 1]
    assert torch.allclose(data[2], torch.as_tensor(train_images[2] / 255.0, dtype=torch.float32))
    prepared = prepare(data, normalize="none", val_fraction=0.25)  # validation from TRAIN, TEST held out
    assert prepared.report["n_test"] == 5 and prepared.test.ids == data.ids[12:]
    assert sorted(prepared.train.ids + prepared.val.ids) == sorted(data.ids[:12])
    assert prepared.spec.unit_range and prepared.spec.image_shape == (28, 28)


def test_mnist_torchvision_layout_and_limit(tmp_path):
    write_mnist(tmp_path / "data" / "MNIST" / "raw", gz=False)
    data = load_mnist(root=str(tmp_path / "data"), limit=4)
    assert data.split == ["train"] * 4 + ["test"] * 4
    assert data.ids[0] == "mnist-train-00000" and data.ids[-1] == "mnist-test-00003"


def test_mnist_missing_files_say_where_and_how(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        load_mnist(root=str(tmp_path / "empty"))
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "empty") in message
    assert "train-images-idx3-ubyte" in message and "data.download=true" in message


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None,
                    reason="torchvision is installed: download would be attempted")
def test_mnist_download_without_torchvision_says_so(tmp_path):
    with pytest.raises(DataError, match="needs torchvision"):
        load_mnist(root=str(tmp_path), download=True)


# --- UCR .ts ------------------------------------------------------------------------------------
def test_ts_univariate_equal_length_with_labels(tmp_path):
    path = write_ts(tmp_path / "A_TRAIN.ts", UNI_HEADER,
                    ["1,2,3,4,5:up", "5,4,3,2,1:down", "0.5,1.5,2.5,3.5,4.5:up"])
    ts = read_ts(path)
    assert ts.header["problemname"] == "Toy" and ts.class_names == ["up", "down"]
    assert [s.shape for s in ts.series] == [(5, 1)] * 3
    assert ts.labels == ["up", "down", "up"]
    np.testing.assert_array_equal(ts.series[1][:, 0], [5, 4, 3, 2, 1])


def test_ts_multivariate_with_missing_and_variable_length(tmp_path):
    header = """@problemName Multi
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b c
@data"""
    write_ts(tmp_path / "Multi_TRAIN.ts", header, [
        "1,2,3,4:10,20,30,40:a",
        "1,?,3,NaN,NaN:5,6,?,NaN,NaN:b",  # gaps inside, then padding
        "7,8,9:1,1,1:c",
    ])
    write_ts(tmp_path / "Multi_TEST.ts", header, ["0,1:2,3:c", "4,5,6,7,8,9:1,2,3,4,5,6:a"])
    ts = read_ts(tmp_path / "Multi_TRAIN.ts")
    assert [s.shape for s in ts.series] == [(4, 2), (5, 2), (3, 2)]
    assert np.isnan(ts.series[1]).sum() == 6  # read as written: NaN kept

    data = load_ucr("Multi", path=str(tmp_path))  # missing=interpolate
    assert data.n_channels == 2 and data.lengths.tolist() == [4, 3, 3, 2, 6]  # padding cut
    np.testing.assert_allclose(data[1].numpy(), [[1, 5], [2, 6], [3, 6]])  # linear, edge held
    assert data.split == ["train"] * 3 + ["test"] * 2
    assert data.class_names == ["a", "b", "c"] and data.labels.tolist() == [0, 1, 2, 2, 0]

    kept = load_ucr("Multi", path=str(tmp_path), missing="keep")
    assert int(torch.isnan(kept.values).sum()) == 2  # only the gaps, not the padding
    with pytest.raises(DataError, match="NaN"):
        prepare(kept)  # prepare()'s non-finite check decides
    assert prepare(kept, drop_nonfinite=True, min_length=2).report["dropped_nonfinite_steps"] == 2

    dropped = load_ucr("Multi", path=str(tmp_path), missing="drop")
    assert len(dropped) == 4 and "Multi-train-0001" not in dropped.ids
    with pytest.raises(DataError, match=r"Multi_TRAIN\.ts:11: missing value at step 1"):
        load_ucr("Multi", path=str(tmp_path), missing="error")


def test_ts_timestamps_are_dropped_in_order(tmp_path):
    header = "@problemName S\n@timeStamps true\n@univariate true\n@classLabel true 1 2\n@data"
    path = write_ts(tmp_path / "S_TRAIN.ts", header, [
        "(2007-01-01 00:00:00,241.97),(2007-01-01 00:01:00,241.75),(2007-01-01 00:02:00,?):1"])
    ts = read_ts(path)
    np.testing.assert_array_equal(ts.series[0][:2, 0], [241.97, 241.75])
    assert np.isnan(ts.series[0][2, 0]) and ts.labels == ["1"]


@pytest.mark.parametrize(("header", "rows", "line", "needle"), [
    ("@problemName X\n@univariate true\n@classLabel true a b", [], 5, "no @data"),
    (UNI_HEADER.replace("@univariate true", "@univariate false\n@dimensions 2"),
     ["1,2,3,4,5:6,7,8,9,10:up", "1,2,3,4,5:up"], 12, "1 dimension(s), expected 2"),
    (UNI_HEADER, ["1,2,3,4,5:up", "1,2,x,4,5:down"], 11, "'x' is not a number"),
    (UNI_HEADER, ["1,2,3,4,5:sideways"], 10, "not declared in @classLabel"),
    (UNI_HEADER, ["1,2,3:up"], 10, "3 values but @seriesLength 5"),
    (UNI_HEADER.replace("@missing false", "@missing perhaps"), ["1,2,3,4,5:up"], 4, "malformed header"),
    (UNI_HEADER.replace("@problemName Toy", "problemName Toy"), ["1,2,3,4,5:up"], 2, "before @data"),
])
def test_ts_malformed_file_names_file_and_line(tmp_path, header, rows, line, needle):
    path = write_ts(tmp_path / "Bad_TRAIN.ts", header, rows)
    with pytest.raises(DataError) as err:
        read_ts(path)
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: ") and needle in message and "\n" not in message


def test_ucr_missing_files_name_folder_and_fix(tmp_path):
    with pytest.raises(DataError) as err:
        load_ucr("FordA", path=str(tmp_path))
    assert str(tmp_path) in str(err.value) and "data.path" in str(err.value)


@pytest.mark.skipif(HAS_AEON, reason="aeon is installed: its bundled sets are found")
def test_ucr_without_path_or_aeon_says_how_to_get_data():
    with pytest.raises(DataError, match=r"pip install \.\[ucr\].*data\.path"):
        load_ucr("ArrowHead")


@pytest.mark.skipif(not HAS_AEON, reason="aeon not installed (pip install .[ucr])")
def test_ucr_bundled_pickup_gesture_from_aeon():
    data = load_ucr("PickupGestureWiimoteZ")
    assert len(data) == 100 and data.split.count("train") == 50 and data.split.count("test") == 50
    assert data.n_channels == 1 and len(data.class_names) == 10
    assert int(data.lengths.min()) < int(data.lengths.max())  # variable length, padding cut
    assert bool(torch.isfinite(data.values).all())


# --- end to end: compose + train ----------------------------------------------------------------
def _val_losses(cfg) -> tuple[float, list[float]]:
    seen: list[float] = []
    value = train(cfg, callbacks=[lambda epoch, metrics: seen.append(metrics["val_loss"])])
    return value, seen


def test_train_rnn_ae_on_digits(make_cfg):
    cfg = make_cfg(["model=rnn_ae", "data=digits", "data.n_samples=200", "trainer.max_epochs=3",
                    "model.hidden_size=16", "model.latent_dim=4", "model.loss=auto",
                    "optimizer.lr=0.01", "trainer.progress=false", "tracking.enabled=false",
                 "trainer.num_threads=1"], tiny=False)
    value, losses = _val_losses(cfg)
    assert math.isfinite(value) and len(losses) == 3
    assert losses[-1] < losses[0]  # BCE on [0, 1] pixels goes down


def test_train_rnn_ae_on_ucr_folder(make_cfg, tmp_path):
    folder = toy_ucr(tmp_path / "ucr")
    overrides = ["data=ucr", "data.name=Toy", f"data.path={folder}", "data.batch_size=8", "model=rnn_ae",
                 "model.hidden_size=16", "model.latent_dim=4", "trainer.max_epochs=4",
                 "optimizer.lr=0.01", "trainer.progress=false", "tracking.enabled=false",
                 "trainer.num_threads=1"]
    prepared = load_data(make_cfg(overrides, tiny=False).data, seed=0)
    assert prepared.report["n_train"] + prepared.report["n_val"] == 24  # validation carved from TRAIN
    assert prepared.report["n_test"] == 8  # TEST held out
    assert prepared.spec.fixed_length is None and prepared.spec.n_classes == 2
    assert prepared.spec.max_length < 40  # NaN padding cut, gaps interpolated

    fixed = load_data(make_cfg(overrides + ["data.fixed_length=16"], tiny=False).data, seed=0)
    assert fixed.spec.fixed_length == 16  # what conv/mlp models need

    value, losses = _val_losses(make_cfg(overrides, tiny=False))
    assert math.isfinite(value) and losses[-1] < losses[0]


def test_ucr_schema_rejects_unknown_missing_policy(make_cfg):
    from latentsweep.config import validate

    with pytest.raises(ConfigError, match="data.missing"):
        validate(make_cfg(["data=ucr", "data.missing=guess"], tiny=False))
