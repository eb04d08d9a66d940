"""Finding, verifying and downloading the image data sets: Fashion-MNIST, MNIST (IDX) and CIFAR-10 (python).

Where the files are looked for, in order (the first directory that holds any file of the requested split
is used; a bad file there is an error, never skipped):

1. ``root`` when given — then *only* there (an explicit directory is never silently replaced by another);
2. ``$ORTHOJAC_DATA``;
3. ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``; Fashion-MNIST only);
4. the cache ``$XDG_CACHE_HOME/orthojac`` (default ``~/.cache/orthojac``).

In each directory ``D`` both ``D`` and ``D/<name>`` (``D/cifar-10-batches-py`` for CIFAR-10) are tried, so
one ``ORTHOJAC_DATA`` can hold several sets. An IDX file may be gzip-compressed (``name.gz``) or raw.

Verification (:func:`verify_file`), in order:

* the SHA-256 of the file as stored is one of the published/packaged hashes → verified;
* else, when the SHA-256 of the *decompressed content* is known, it must match (so a re-compressed or
  un-gzipped copy of the right data passes, anything else fails);
* else the file must at least parse and have the expected shape (``verified="format"``): raw MNIST files
  (only the ``.gz`` hashes are published) and CIFAR-10 batches (only MD5s of the batch files are published,
  by torchvision; they are checked, but MD5 is not a security hash).

Hashes and where they come from: Fashion-MNIST ``.gz`` as published upstream (listed in TensorFlow Datasets'
``url_checksums/fashion_mnist.txt``) and as packaged by Debian (computed from the installed files, which are
the same data re-compressed), content hashes computed from the Debian files; MNIST ``.gz`` from TensorFlow
Datasets' ``url_checksums/mnist.txt``; CIFAR-10 MD5s from torchvision's ``datasets/cifar.py``.

Downloads (:func:`download`) go to a temporary file in the target directory, are verified, and only then
renamed into place (``os.replace``); an existing file is never overwritten. CIFAR-10 is never downloaded
(170 MB tarball): point ``root`` at an unpacked ``cifar-10-batches-py``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .cifar import CIFARError, parse_cifar_batch
from .idx import IDXError, parse_idx, read_bytes

__all__ = ["DatasetInfo", "DATASETS", "DEBIAN_FASHION_MNIST", "DatasetNotFoundError", "DatasetCorruptError",
           "search_dirs", "locate", "verify_file", "download", "load_dataset", "cache_dir"]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


class DatasetNotFoundError(FileNotFoundError):
    """The files of a data set are in none of the searched directories."""


class DatasetCorruptError(ValueError):
    """A data file exists but is truncated, corrupt or not the published file."""


@dataclass(frozen=True)
class FileSpec:
    """One file of a data set. ``stored`` holds hashes of the file as distributed (``"sha256:…"`` or
    ``"md5:…"``), ``content_sha256`` the SHA-256 of the decompressed bytes (None when unknown) and
    ``shape`` the array shape the file must decode to."""

    name: str
    shape: tuple[int, ...]
    stored: frozenset[str] = frozenset()
    content_sha256: str | None = None
    compressed: bool = True  # IDX: distributed as name.gz, may also be stored raw


@dataclass(frozen=True)
class DatasetInfo:
    """A data set: per split, the (images, labels) files or the list of batch files; sample shape; classes."""

    name: str
    fmt: str  # "idx" or "cifar"
    splits: dict[str, tuple[FileSpec, ...]]
    in_shape: tuple[int, ...]
    classes: tuple[str, ...]
    urls: tuple[str, ...] = ()  # mirrors, tried in order
    subdir: str = ""
    extra_dirs: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _fmnist_file(name: str, shape: tuple[int, ...], upstream: str, debian: str, content: str) -> FileSpec:
    return FileSpec(name, shape, frozenset({f"sha256:{upstream}", f"sha256:{debian}"}), content)


_FMNIST = DatasetInfo(
    "fashion-mnist", "idx",
    {"train": (_fmnist_file("train-images-idx3-ubyte", (60000, 28, 28),
                            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                            "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
               _fmnist_file("train-labels-idx1-ubyte", (60000,),
                            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                            "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9")),
     "test": (_fmnist_file("t10k-images-idx3-ubyte", (10000, 28, 28),
                           "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                           "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                           "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
              _fmnist_file("t10k-labels-idx1-ubyte", (10000,),
                           "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                           "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
                           "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"))},
    (1, 28, 28),
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    subdir="fashion-mnist", extra_dirs=(DEBIAN_FASHION_MNIST,),
)

_MNIST = DatasetInfo(
    "mnist", "idx",
    {"train": (FileSpec("train-images-idx3-ubyte", (60000, 28, 28), frozenset(
                   {"sha256:440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"})),
               FileSpec("train-labels-idx1-ubyte", (60000,), frozenset(
                   {"sha256:3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"}))),
     "test": (FileSpec("t10k-images-idx3-ubyte", (10000, 28, 28), frozenset(
                  {"sha256:8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"})),
              FileSpec("t10k-labels-idx1-ubyte", (10000,), frozenset(
                  {"sha256:f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"})))},
    (1, 28, 28), tuple(str(i) for i in range(10)),
    urls=("https://storage.googleapis.com/cvdf-datasets/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    subdir="mnist",
)


def _cifar_file(name: str, n: int, md5: str) -> FileSpec:
    return FileSpec(name, (n, 3, 32, 32), frozenset({f"md5:{md5}"}), None, compressed=False)


_CIFAR10 = DatasetInfo(
    "cifar10", "cifar",
    {"train": tuple(_cifar_file(f"data_batch_{i}", 10000, h) for i, h in enumerate(
        ("c99cafc152244af753f735de768cd75f", "d4bba439e000b95fd0a9bffe97cbabec", "54ebc095f3ab1f0389bbae665268c751",
         "634d18415352ddfa80567beed471001a", "482c414d41f54cd18b22e5b47cb7c3cb"), start=1)),
     "test": (_cifar_file("test_batch", 10000, "40351d587109b95175f43aff81a1287e"),)},
    (3, 32, 32),
    ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    subdir="cifar-10-batches-py",
)

DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (_FMNIST, _MNIST, _CIFAR10)}


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name]


def _split_files(info: DatasetInfo, split: str) -> tuple[FileSpec, ...]:
    if split not in info.splits:
        raise ValueError(f"split={split!r} is unknown for {info.name}; choose one of {tuple(info.splits)}")
    return info.splits[split]


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/orthojac`` (default ``~/.cache/orthojac``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orthojac"


def search_dirs(name: str, root: str | Path | None = None) -> list[Path]:
    """The directories searched for data set ``name``, in order (see the module docstring)."""
    info = _info(name)
    bases = [Path(root).expanduser()] if root is not None else [
        *([Path(os.environ["ORTHOJAC_DATA"]).expanduser()] if os.environ.get("ORTHOJAC_DATA") else []),
        *info.extra_dirs, cache_dir()]
    out: list[Path] = []
    for b in bases:
        for d in (b, b / info.subdir):
            if d not in out:
                out.append(d)
    return out


def _candidates(d: Path, spec: FileSpec) -> list[Path]:
    return [d / f"{spec.name}.gz", d / spec.name] if spec.compressed else [d / spec.name]


def _present(d: Path, spec: FileSpec) -> Path | None:
    return next((p for p in _candidates(d, spec) if p.is_file()), None)


def locate(name: str, split: str = "train", root: str | Path | None = None) -> list[Path]:
    """Paths of the files of ``split`` (IDX: images then labels; CIFAR: the batches), from the first
    searched directory holding any of them. Raises :class:`DatasetNotFoundError` (the message lists the
    directories searched and how to get the files) or :class:`DatasetCorruptError` if that directory holds
    only some of them."""
    info = _info(name)
    specs = _split_files(info, split)
    for d in search_dirs(name, root):
        found = [_present(d, s) for s in specs]
        if all(p is None for p in found):
            continue
        missing = [s.name for s, p in zip(specs, found) if p is None]
        if missing:
            raise DatasetCorruptError(f"{d} holds part of {name} ({split}) but not {', '.join(missing)}; "
                                      f"add the missing file(s) there or remove the directory's {name} files")
        return [p for p in found if p is not None]
    raise DatasetNotFoundError(_not_found_message(info, split, root))


def _not_found_message(info: DatasetInfo, split: str, root: str | Path | None) -> str:
    specs = _split_files(info, split)
    files = ", ".join(f"{s.name}{'[.gz]' if s.compressed else ''}" for s in specs)
    where = "; ".join(str(d) for d in search_dirs(info.name, root))
    fixes = []
    if info.name == "fashion-mnist":
        fixes.append("install Debian's package (apt-get install dataset-fashion-mnist)")
    if info.fmt == "cifar":
        fixes.append("download and unpack https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and pass the "
                     "cifar-10-batches-py directory as root (data.root in a config)")
    else:
        fixes.append(f"download them: orthojac.data.download({info.name!r}) or data.download: true in a config")
    fixes.append("put the files in a directory and set ORTHOJAC_DATA to it (or pass root)")
    return f"{info.name} ({split}): {files} not found in {where}. Fix: " + "; or ".join(fixes)


def _digest(data: bytes, algo: str) -> str:
    return hashlib.new(algo, data).hexdigest()


def verify_file(path: str | Path, spec: FileSpec) -> tuple[str, bytes]:
    """Check one file against ``spec``; returns (how it was verified: ``"hash"`` | ``"content-hash"`` |
    ``"format"``, the decompressed bytes). Raises :class:`DatasetCorruptError` naming the file and the fix."""
    path = Path(path)
    stored = path.read_bytes()
    fix = f"delete {path} and fetch it again (see docs/data.md)"
    by_algo: dict[str, set[str]] = {}
    for h in spec.stored:
        algo, hexd = h.split(":", 1)
        by_algo.setdefault(algo, set()).add(hexd)
    is_gz = path.suffix == ".gz"
    content = stored
    if is_gz:
        try:
            content = gzip.decompress(stored)
        except (OSError, EOFError) as e:
            raise DatasetCorruptError(f"{path}: not a readable gzip file ({e}): truncated or corrupt; {fix}") from e
    if any(_digest(stored, algo) in hexes for algo, hexes in by_algo.items()):
        return "hash", content
    if spec.content_sha256 is not None:
        if _digest(content, "sha256") == spec.content_sha256:
            return "content-hash", content
        raise DatasetCorruptError(f"{path}: SHA-256 does not match the published {spec.name}: truncated, corrupt "
                                  f"or another file; {fix}")
    if by_algo and (is_gz or not spec.compressed):  # the stored form's hash is known and differs
        raise DatasetCorruptError(f"{path}: checksum does not match the published {spec.name}: truncated, corrupt "
                                  f"or another file; {fix}")
    return "format", content


def _decode(info: DatasetInfo, path: Path, content: bytes, spec: FileSpec) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Decoded arrays of one file (CIFAR: images and labels; IDX: the array and None), shape-checked."""
    try:
        if info.fmt == "cifar":
            x, y = parse_cifar_batch(content, path)
        else:
            x, y = parse_idx(content, path), None
    except (IDXError, CIFARError) as e:
        raise DatasetCorruptError(str(e)) from e
    if tuple(x.shape) != spec.shape and not (info.fmt == "cifar" and tuple(x.shape[1:]) == spec.shape[1:]):
        raise DatasetCorruptError(f"{path}: holds an array of shape {tuple(x.shape)}, expected {spec.shape} for "
                                  f"{spec.name}; it is another file or corrupt — replace it")
    return x, y


def load_dataset(name: str, root: str | Path | None = None, split: str = "train", *, download: bool = False,
                 verify: bool = True, dtype: torch.dtype | None = torch.float32,
                 progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of one split. Images have shape (N, C, H, W): with ``dtype`` a float type they are
    scaled to [0, 1]; ``dtype=None`` keeps the stored uint8. Labels are int64.

    ``download=True`` fetches missing files (not CIFAR-10) into ``root`` or the cache directory first.
    ``verify=False`` skips the checksum (the format and shape are always checked)."""
    info = _info(name)
    specs = _split_files(info, split)
    try:
        paths = locate(name, split, root)
    except DatasetNotFoundError:
        if not download or not info.urls:
            raise
        _download(name, split, root, progress=progress)
        paths = locate(name, split, root)
    arrays: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    for path, spec in zip(paths, specs):
        content = verify_file(path, spec)[1] if verify else _read_plain(path, info)
        arrays.append(_decode(info, path, content, spec))
    if info.fmt == "cifar":
        x = torch.cat([a[0] for a in arrays])
        y = torch.cat([a[1] for a in arrays if a[1] is not None])
    else:
        (x, _), (y, _) = arrays
        x, y = x.unsqueeze(1), y.long()
        if len(x) != len(y):
            raise DatasetCorruptError(f"{paths[0]} has {len(x)} images but {paths[1]} {len(y)} labels; "
                                      "one of them is another file — replace it")
    if int(y.min()) < 0 or int(y.max()) >= info.num_classes:
        raise DatasetCorruptError(f"{paths[-1]}: labels outside 0…{info.num_classes - 1}; the file is corrupt")
    if dtype is not None:
        x = x.to(dtype).div_(255.0)
    return x, y.long()


def _read_plain(path: Path, info: DatasetInfo) -> bytes:
    try:
        return path.read_bytes() if info.fmt == "cifar" else read_bytes(path)
    except (IDXError, OSError) as e:
        raise DatasetCorruptError(str(e)) from e


def download(name: str, split: str | None = None, root: str | Path | None = None, *, progress: bool = True,
             timeout: float = 60.0) -> list[Path]:
    """Download the missing files of ``name`` (one split or all) into ``root`` (default: the cache
    directory), each to a temporary file that is verified before being renamed into place. Files already
    present are verified, never overwritten. Returns the paths of the split's files."""
    info = _info(name)
    if not info.urls:
        raise ValueError(f"{name} is not downloaded by orthojac; " + _not_found_message(info, split or "train", root))
    target = Path(root).expanduser() if root is not None else cache_dir() / info.subdir
    target.mkdir(parents=True, exist_ok=True)
    out = []
    for sp in ([split] if split else list(info.splits)):
        for spec in _split_files(info, sp):
            have = _present(target, spec)
            if have is not None:
                verify_file(have, spec)
                out.append(have)
                continue
            out.append(_download_one(info, spec, target, progress, timeout))
    return out


_download = download  # load_dataset's ``download`` argument shadows the function's name there


def _download_one(info: DatasetInfo, spec: FileSpec, target: Path, progress: bool, timeout: float) -> Path:
    fname = f"{spec.name}.gz"
    dest = target / fname
    errors = []
    for base in info.urls:
        url = base + fname
        fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.name}.part-", suffix=".gz", dir=target)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                _stream(url, f, fname, progress, timeout)
            verify_file(tmp, spec)
            if dest.exists():  # appeared meanwhile (another process): keep it, drop ours
                tmp.unlink()
            else:
                os.replace(tmp, dest)
            return dest
        except (urllib.error.URLError, OSError, DatasetCorruptError, TimeoutError) as e:
            errors.append(f"{url}: {e}")
            tmp.unlink(missing_ok=True)
    raise DatasetNotFoundError(f"could not download {fname} for {info.name}: " + "; ".join(errors)
                               + f". Fix: check the network, or put the file in {target} yourself")


def _stream(url: str, f, fname: str, progress: bool, timeout: float) -> None:
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (fixed https/http URLs)
        total = int(r.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=fname, disable=not progress, leave=False) as bar:
            while chunk := r.read(1 << 16):
                f.write(chunk)
                bar.update(len(chunk))
