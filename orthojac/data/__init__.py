"""Data: IDX and CIFAR-10 readers, locating/verifying/downloading the image sets, seeded splits and
normalisation, generated data sets. Imports nothing else of orthojac."""

from .cifar import CIFARError, read_cifar_batch, write_cifar_batch
from .datasets import (
    DATASETS,
    DatasetCorruptError,
    DatasetInfo,
    DatasetNotFoundError,
    cache_dir,
    download,
    load_dataset,
    locate,
    search_dirs,
    verify_file,
)
from .idx import IDXError, read_idx, write_idx
from .splits import DATASET_NAMES, DataSplits, channel_stats, load_splits, make_loaders, normalize, train_val_indices
from .synthetic import make_spirals

__all__ = ["read_idx", "write_idx", "IDXError", "read_cifar_batch", "write_cifar_batch", "CIFARError",
           "DATASETS", "DatasetInfo", "DatasetNotFoundError", "DatasetCorruptError", "cache_dir", "download",
           "load_dataset", "locate", "search_dirs", "verify_file", "DATASET_NAMES", "DataSplits", "channel_stats",
           "load_splits", "make_loaders", "normalize", "train_val_indices", "make_spirals"]

from .toy2d import TOY2D, make_ellipses, make_peaks, make_swiss_roll, make_toy2d, peaks  # noqa: E402

__all__ += ["TOY2D", "make_ellipses", "make_peaks", "make_swiss_roll", "make_toy2d", "peaks"]
