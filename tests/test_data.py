"""orthojac.data: IDX/CIFAR readers, locating, verification, download, splits. Small files are written by
the tests; one test reads Debian's real Fashion-MNIST files when installed."""

from __future__ import annotations

import gzip
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from orthojac.data import (
    DATASETS,
    CIFARError,
    DatasetCorruptError,
    DatasetNotFoundError,
    IDXError,
    channel_stats,
    download,
    load_dataset,
    load_splits,
    locate,
    make_loaders,
    normalize,
    read_cifar_batch,
    read_idx,
    search_dirs,
    train_val_indices,
    verify_file,
    write_cifar_batch,
    write_idx,
)
from orthojac.data import datasets as ds
from orthojac.data.datasets import DEBIAN_FASHION_MNIST, DatasetInfo, FileSpec

# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_roundtrip(tmp_path: Path, suffix: str, dtype: type) -> None:
    a = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    write_idx(tmp_path / f"a{suffix}", a)
    b = read_idx(tmp_path / f"a{suffix}")
    assert tuple(b.shape) == (2, 3, 5)
    np.testing.assert_array_equal(b.numpy(), a)


def test_idx_truncated_and_bad_magic(tmp_path: Path) -> None:
    write_idx(tmp_path / "a", np.zeros((4, 3), np.uint8))
    raw = (tmp_path / "a").read_bytes()
    (tmp_path / "t").write_bytes(raw[:-2])
    with pytest.raises(IDXError, match=r"t: size 22 bytes, expected 24"):
        read_idx(tmp_path / "t")
    (tmp_path / "m").write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(IDXError, match="bad magic"):
        read_idx(tmp_path / "m")
    (tmp_path / "g.gz").write_bytes(gzip.compress(raw)[:-6])
    with pytest.raises(IDXError, match="truncated or corrupt"):
        read_idx(tmp_path / "g.gz")


# ---------------------------------------------------------------- a fake IDX data set with known hashes

def _tiny_idx(d: Path, n: int = 12, seed: int = 0, gz: bool = True) -> dict[str, bytes]:
    """Images (n, 4, 4) uint8 and labels in 0..2, for splits train (n) and test (n // 2)."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, m in (("train", n), ("t10k", n // 2)):
        for kind, arr in (("images-idx3-ubyte", rng.integers(0, 256, (m, 4, 4), dtype=np.uint8)),
                          ("labels-idx1-ubyte", (np.arange(m) % 3).astype(np.uint8))):
            name = f"{prefix}-{kind}"
            write_idx(d / (name + (".gz" if gz else "")), arr)
            out[name] = (d / (name + (".gz" if gz else ""))).read_bytes()
    return out


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, DatasetInfo]:
    """A registered data set "tiny" (IDX, 4×4 images, 3 classes) whose true files live in tmp/src; the
    environment is isolated (no ORTHOJAC_DATA, cache under tmp)."""
    src = tmp_path / "src"
    stored = _tiny_idx(src)
    spec = {}
    for name, b in stored.items():
        content = gzip.decompress(b)
        shape = (12, 4, 4) if name.startswith("train-images") else (6, 4, 4) if "images" in name else (
            (12,) if name.startswith("train") else (6,))
        spec[name] = FileSpec(name, shape, frozenset({f"sha256:{hashlib.sha256(b).hexdigest()}"}),
                              hashlib.sha256(content).hexdigest())
    info = DatasetInfo("tiny", "idx",
                       {"train": (spec["train-images-idx3-ubyte"], spec["train-labels-idx1-ubyte"]),
                        "test": (spec["t10k-images-idx3-ubyte"], spec["t10k-labels-idx1-ubyte"])},
                       (1, 4, 4), ("a", "b", "c"), urls=(src.as_uri() + "/",), subdir="tiny")
    monkeypatch.setitem(DATASETS, "tiny", info)
    monkeypatch.delenv("ORTHOJAC_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return src, info


def test_load_verified_from_explicit_root(tiny: tuple[Path, DatasetInfo]) -> None:
    src, info = tiny
    x, y = load_dataset("tiny", src, "train")
    assert x.shape == (12, 1, 4, 4) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    raw = read_idx(src / "train-images-idx3-ubyte.gz")
    torch.testing.assert_close(x[:, 0], raw.float() / 255, rtol=0, atol=0)
    assert verify_file(src / "train-images-idx3-ubyte.gz", info.splits["train"][0])[0] == "hash"
    xu, _ = load_dataset("tiny", src, "test", dtype=None)
    assert xu.dtype == torch.uint8 and xu.shape == (6, 1, 4, 4)


def test_raw_and_recompressed_files_pass_by_content_hash(tiny: tuple[Path, DatasetInfo], tmp_path: Path) -> None:
    src, info = tiny
    d = tmp_path / "raw"
    d.mkdir()
    for f in src.iterdir():
        (d / f.name.removesuffix(".gz")).write_bytes(gzip.decompress(f.read_bytes()))
    assert verify_file(d / "train-labels-idx1-ubyte", info.splits["train"][1])[0] == "content-hash"
    x, y = load_dataset("tiny", d, "train")
    assert x.shape == (12, 1, 4, 4)
    # re-compressed with another level: different .gz bytes, same content
    g = tmp_path / "regz"
    g.mkdir()
    for f in src.iterdir():
        (g / f.name).write_bytes(gzip.compress(gzip.decompress(f.read_bytes()), compresslevel=1, mtime=1))
    assert verify_file(g / "t10k-labels-idx1-ubyte.gz", info.splits["test"][1])[0] == "content-hash"


def test_format_only_verification_when_no_content_hash_is_known(tmp_path: Path) -> None:
    """Like raw MNIST files: only the .gz hash is published, so a raw file is checked by format alone,
    while a .gz with another hash is refused."""
    write_idx(tmp_path / "lab", np.arange(5, dtype=np.uint8))
    write_idx(tmp_path / "lab.gz", np.arange(5, dtype=np.uint8))
    spec = FileSpec("lab", (5,), frozenset({"sha256:" + "0" * 64}), None)
    assert verify_file(tmp_path / "lab", spec)[0] == "format"
    with pytest.raises(DatasetCorruptError, match=r"lab\.gz: checksum does not match"):
        verify_file(tmp_path / "lab.gz", spec)


def test_corrupt_file_is_an_error_naming_it(tiny: tuple[Path, DatasetInfo], tmp_path: Path) -> None:
    src, _ = tiny
    bad = tmp_path / "bad"
    _tiny_idx(bad, seed=1)  # valid IDX files, but not the published ones
    with pytest.raises(DatasetCorruptError, match=r"train-images-idx3-ubyte\.gz: SHA-256 does not match.*delete"):
        load_dataset("tiny", bad, "train")
    trunc = tmp_path / "trunc"
    trunc.mkdir()
    for f in src.iterdir():
        (trunc / f.name).write_bytes(f.read_bytes())
    p = trunc / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-9])
    with pytest.raises(DatasetCorruptError, match=r"t10k-images-idx3-ubyte\.gz: not a readable gzip"):
        load_dataset("tiny", trunc, "test")
    # without verification the format check still catches a truncated raw file
    (trunc / "t10k-images-idx3-ubyte.gz").unlink()
    (trunc / "t10k-images-idx3-ubyte").write_bytes(gzip.decompress((src / "t10k-images-idx3-ubyte.gz")
                                                                   .read_bytes())[:-3])
    with pytest.raises(DatasetCorruptError, match="truncated or corrupt"):
        load_dataset("tiny", trunc, "test", verify=False)


def test_search_order_env_subdir_and_cache(tiny: tuple[Path, DatasetInfo], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    src, _ = tiny
    with pytest.raises(DatasetNotFoundError) as e:
        locate("tiny", "train")
    msg = str(e.value)
    assert "train-images-idx3-ubyte[.gz]" in msg and "ORTHOJAC_DATA" in msg and "download" in msg
    env = tmp_path / "env"
    _tiny_idx(env / "tiny")  # ORTHOJAC_DATA/<name>/ is searched too
    monkeypatch.setenv("ORTHOJAC_DATA", str(env))
    assert locate("tiny", "test")[0] == env / "tiny" / "t10k-images-idx3-ubyte.gz"
    dirs = search_dirs("tiny")
    assert dirs[:2] == [env, env / "tiny"] and dirs[-1] == tmp_path / "cache" / "orthojac" / "tiny"
    # an explicit root is used alone: files elsewhere are not silently taken instead
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "nowhere")):
        locate("tiny", "train", tmp_path / "nowhere")
    # a directory with only part of a split is an error, not skipped
    part = tmp_path / "part"
    part.mkdir()
    (part / "train-labels-idx1-ubyte.gz").write_bytes((src / "train-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(DatasetCorruptError, match="not train-images-idx3-ubyte"):
        locate("tiny", "train", part)


def test_download_verifies_then_renames(tiny: tuple[Path, DatasetInfo], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    src, info = tiny
    paths = download("tiny", "train", progress=False)  # from the file:// mirror into the cache
    cache = tmp_path / "cache" / "orthojac" / "tiny"
    assert paths == [cache / "train-images-idx3-ubyte.gz", cache / "train-labels-idx1-ubyte.gz"]
    assert (cache / "train-images-idx3-ubyte.gz").read_bytes() == (src / "train-images-idx3-ubyte.gz").read_bytes()
    x, _ = load_dataset("tiny", split="test", download=True, progress=False)
    assert x.shape == (6, 1, 4, 4)
    assert sorted(p.name for p in cache.iterdir()) == sorted(p.name for p in src.iterdir())  # no temp files left
    # a mirror serving wrong bytes: nothing is written, the error names the file
    evil = tmp_path / "evil"
    _tiny_idx(evil, seed=5)
    monkeypatch.setitem(DATASETS, "tiny", DatasetInfo(info.name, info.fmt, info.splits, info.in_shape,
                                                      info.classes, urls=(evil.as_uri() + "/",), subdir="tiny"))
    target = tmp_path / "dl"
    with pytest.raises(DatasetNotFoundError, match="could not download train-images-idx3-ubyte.gz"):
        download("tiny", "train", target, progress=False)
    assert list(target.iterdir()) == []
    # an existing bad file is never overwritten
    (target / "train-images-idx3-ubyte.gz").write_bytes(b"junk")
    with pytest.raises(DatasetCorruptError, match="train-images-idx3-ubyte.gz"):
        download("tiny", "train", target, progress=False)
    assert (target / "train-images-idx3-ubyte.gz").read_bytes() == b"junk"


# ---------------------------------------------------------------- CIFAR-10

def test_cifar_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORTHOJAC_DATA", raising=False)
    g = torch.Generator().manual_seed(0)
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    imgs = {}
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        x = torch.randint(0, 256, (4, 3, 32, 32), generator=g, dtype=torch.uint8)
        write_cifar_batch(d / name, x, [(i + j) % 10 for j in range(4)])
        imgs[name] = x
    x, y = read_cifar_batch(d / "data_batch_2")
    assert torch.equal(x, imgs["data_batch_2"]) and y.tolist() == [1, 2, 3, 4]
    # the files the test wrote are not the published batches: verification refuses them, naming the file
    with pytest.raises(DatasetCorruptError, match=r"data_batch_1: checksum does not match"):
        load_dataset("cifar10", tmp_path, "train")
    x, y = load_dataset("cifar10", tmp_path, "train", verify=False)  # found in root/cifar-10-batches-py
    assert x.shape == (20, 3, 32, 32) and torch.equal(x[4:8], imgs["data_batch_2"].float() / 255)
    xt, yt = load_dataset("cifar10", d, "test", verify=False, dtype=None)
    assert torch.equal(xt, imgs["test_batch"]) and yt.tolist() == [5, 6, 7, 8]
    with pytest.raises(DatasetNotFoundError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", tmp_path / "none", "test")


def test_cifar_reader_refuses_code_and_garbage(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):  # would run a shell command on a plain pickle.load
            import os
            return (os.system, ("echo pwned",))

    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(CIFARError, match="refusing to load"):
        read_cifar_batch(tmp_path / "evil")
    (tmp_path / "trunc").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8),
                                                   b"labels": [0, 1]}, protocol=2)[:-20])
    with pytest.raises(CIFARError, match="truncated or corrupt"):
        read_cifar_batch(tmp_path / "trunc")
    (tmp_path / "shape").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(CIFARError, match=r"expected uint8 \(N, 3072\)"):
        read_cifar_batch(tmp_path / "shape")


# ---------------------------------------------------------------- splits and normalisation

def test_train_val_split_by_seed() -> None:
    tr, va = train_val_indices(100, 0.2, seed=3)
    assert len(va) == 20 and len(tr) == 80
    assert sorted(torch.cat([tr, va]).tolist()) == list(range(100))
    tr2, va2 = train_val_indices(100, 0.2, seed=3)
    assert torch.equal(tr, tr2) and torch.equal(va, va2)
    assert not torch.equal(va, train_val_indices(100, 0.2, seed=4)[1])
    assert len(train_val_indices(100, 0.2, seed=3, n_train=30)[0]) == 30
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_indices(10, 1.0, 0)
    with pytest.raises(ValueError, match="n_train=90"):
        train_val_indices(100, 0.2, 0, n_train=90)


def test_normalize_per_channel() -> None:
    x = torch.randn(50, 3, 4, 4, dtype=torch.float64) * torch.tensor([1.0, 2.0, 5.0]).view(1, 3, 1, 1).double() + 7
    mean, std = channel_stats(x)
    z = normalize(x, mean, std)
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3)), torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0)


def test_load_splits_and_loaders(tiny: tuple[Path, DatasetInfo]) -> None:
    src, _ = tiny
    monkeypatch_names = ds  # the registry is read through the module: "tiny" is known here
    assert "tiny" in monkeypatch_names.DATASETS
    s = load_splits("spirals", n_train=200, n_test=50, val_fraction=0.2, seed=1)
    assert s.sizes() == {"train": 200, "val": 50, "test": 50} and s.in_shape == (2,) and s.num_classes == 3
    torch.testing.assert_close(s.train[0].mean(), torch.tensor(0.0), atol=1e-6, rtol=0)
    again = load_splits("spirals", n_train=200, n_test=50, val_fraction=0.2, seed=1)
    assert torch.equal(s.train[0], again.train[0])
    loaders = make_loaders(s, batch_size=64, seed=0)
    first = next(iter(loaders["train"]))[1]
    assert torch.equal(first, next(iter(make_loaders(s, batch_size=64, seed=0)["train"]))[1])
    assert set(loaders) == {"train", "val", "test"}
    with pytest.raises(ValueError, match="unknown data set 'nope'"):
        load_splits("nope")


# ---------------------------------------------------------------- the real files (Debian's package)

@pytest.mark.skipif(not (DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").exists(),
                    reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ORTHOJAC_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    paths = locate("fashion-mnist", "test")
    assert paths[0].parent == DEBIAN_FASHION_MNIST
    spec = DATASETS["fashion-mnist"].splits["test"]
    assert verify_file(paths[1], spec[1])[0] == "hash"
    x, y = load_dataset("fashion-mnist", split="test")
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert load_splits("fashion-mnist", n_train=10, n_test=10, val_fraction=0).files[-1] == str(paths[1])
    assert torch.bincount(y).tolist() == [1000] * 10  # the test set is balanced
    assert 0.25 < float(x.mean()) < 0.33  # Fashion-MNIST's mean pixel ≈ 0.286
