"""Decoded images kept for the whole run: ``cache="ram"`` (one shared-memory buffer) or ``"disk"`` (``.npy`` files).

Decoding is most of the loading time of a small dataset's images. A cache holds what
:meth:`lightdet.data.LoadImage.decode` returns: ``uint8 [3, H, W]`` RGB after the EXIF setting
(``dataset.exif``) was applied, of the size the annotation file states. Resizing and every augmentation
stay in the pipeline, so a sample loaded from the cache equals the uncached one pixel for pixel, and
the pipeline may change (a pipeline switch keeps the cache). The cache does not pre-resize to the
pipeline's first fixed ``Resize``: that would save one resize per load, but the shipped fixed resizes
enlarge (COCO's 640x480 photos become 1067x800, 2.8 times the bytes) and masks would need the step's
own arithmetic to stay exact.

``ram``: the dataset's constructor decodes every image once, in the main process (threads, behind a
progress bar), into one ``uint8`` buffer in shared memory (``torch.Tensor.share_memory_``, which lives
in ``/dev/shm`` on Linux) with per-image offsets. DataLoader workers, forked or spawned, map that same
buffer: none holds a copy and none fills it again. Before allocating, it logs ``caching N images, X GB
in RAM`` (3 x height x width bytes per image, from the annotation file: exact) and refuses, naming both
figures, when that is more than :data:`RAM_SHARE` of the memory available (``MemAvailable``, a cgroup
memory limit and the free space of ``/dev/shm``, whichever is least). Each process of a DDP run holds
its own cache. Images changed on disk after the constructor ran are not seen.

``disk``: each image is decoded once into ``<image folder>/.lightdet-cache/<file name>.<exif>.<size>-<mtime
ns>.npy`` and read back memory-mapped. The name carries the image file's size and modification time: a
changed file misses its entry and is read from the file; the next constructor writes a new entry and
removes the stale one. The constructor writes the missing entries (threads, progress bar) after
checking the disk has room for them.

Bad images behave as without a cache: an image that cannot be decoded, or not at its annotation size,
is not cached; loading it reads the file again and raises the same
:class:`~lightdet.data.image_io.BadImageError`, which ``on_bad_image`` handles. A loaded image is a copy
of the cached bytes, so a pipeline step that writes into its input cannot change the cache.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
from torch import Tensor

from lightdet.data.image_io import BadImageError, ExifMode
from lightdet.data.records import ImageRecord
from lightdet.data.workers import MAX_AUTO_WORKERS, usable_cpus

__all__ = [
    "CACHE_DIR", "RAM_SHARE", "CacheMode", "DiskImageCache", "ImageCache", "RamImageCache", "build_image_cache",
    "check_cache_mode", "memory_available",
]

logger = logging.getLogger(__name__)

CacheMode = Literal["ram", "disk"]
"""Where decoded images are kept: ``"ram"`` (shared memory) or ``"disk"`` (memory-mapped ``.npy`` files)."""

RAM_SHARE = 0.8
"""The largest fraction of the available memory a RAM cache may take (the rest is left to the model,
the workers and their batches)."""

CACHE_DIR = ".lightdet-cache"
"""The folder, beside each image, that holds its disk cache entries."""

Decode = Callable[[ImageRecord], Tensor]
_NPY_HEADER = 128  # bytes numpy writes before an array of up to 3 dimensions


class ImageCache(Protocol):
    """What a dataset asks of a cache: the image of record ``index`` (a copy), or None to read the file."""

    mode: CacheMode
    exif: ExifMode

    def get(self, index: int, record: ImageRecord) -> Tensor | None: ...


def check_cache_mode(cache: object, owner: str) -> CacheMode | None:
    """``cache`` when it is ``"ram"``, ``"disk"`` or None; else ``ValueError`` naming ``owner``."""
    if cache is None or cache in ("ram", "disk"):
        return cache  # type: ignore[return-value]
    raise ValueError(f"{owner}: cache must be 'ram', 'disk' or null, got {cache!r}")


def _image_bytes(records: Sequence[ImageRecord]) -> np.ndarray:
    """``int64 [N]``: the bytes of each decoded image, ``3 * height * width``."""
    return np.array([3 * r.height * r.width for r in records], dtype=np.int64).reshape(-1)


def _size(nbytes: float) -> str:
    """``2.35 GB`` from 0.1 GB on, else ``19.6 MB`` (three significant digits)."""
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.3g} MB"


class RamImageCache:
    """The images of ``records`` in one shared-memory ``uint8`` buffer (filled by :func:`build_image_cache`).

    Attributes:
        buffer: ``uint8 [total bytes]`` in shared memory; image ``i`` is ``buffer[offsets[i]:offsets[i+1]]``
            as ``[3, H, W]``.
        offsets: ``int64 [N + 1]``. hw: ``int64 [N, 2]`` (height, width). filled: ``bool [N]``, False
            for an image that could not be decoded.
    """

    mode: CacheMode = "ram"

    def __init__(self, records: Sequence[ImageRecord], exif: ExifMode) -> None:
        self.exif = exif
        self.hw = np.array([(r.height, r.width) for r in records], dtype=np.int64).reshape(-1, 2)
        self.offsets = np.concatenate([[0], np.cumsum(_image_bytes(records))]).astype(np.int64)
        self.buffer = torch.empty(int(self.offsets[-1]), dtype=torch.uint8).share_memory_()
        self.filled = np.zeros(len(self.hw), dtype=bool)

    def _slot(self, index: int) -> Tensor:
        h, w = (int(v) for v in self.hw[index])
        return self.buffer[int(self.offsets[index]) : int(self.offsets[index + 1])].view(3, h, w)

    def put(self, index: int, image: Tensor) -> None:
        self._slot(index).copy_(image)
        self.filled[index] = True

    def get(self, index: int, record: ImageRecord) -> Tensor | None:
        return self._slot(index).clone() if self.filled[index] else None


class DiskImageCache:
    """Images as ``.npy`` files in a :data:`CACHE_DIR` folder beside each image (see the module docstring)."""

    mode: CacheMode = "disk"

    def __init__(self, exif: ExifMode) -> None:
        self.exif = exif

    def entry(self, record: ImageRecord) -> Path | None:
        """The entry of the image file as it is now (its size and mtime in the name); None when it is missing."""
        source = Path(record.file_path)
        try:
            stat = source.stat()
        except OSError:
            return None
        return source.parent / CACHE_DIR / f"{source.name}.{self.exif}.{stat.st_size}-{stat.st_mtime_ns}.npy"

    def get(self, index: int, record: ImageRecord) -> Tensor | None:
        path = self.entry(record)
        if path is None:
            return None
        try:
            pixels = np.load(path, mmap_mode="r")
        except (OSError, ValueError):  # no entry for this version of the file, or a damaged one
            return None
        if pixels.dtype != np.uint8 or pixels.shape != (3, record.height, record.width):
            return None
        return torch.from_numpy(np.array(pixels))  # a copy: the map is read-only

    def put(self, record: ImageRecord, image: Tensor) -> None:
        """Writes the entry (a temporary file renamed into place) and removes the file's stale entries."""
        path = self.entry(record)
        if path is None:
            return
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            try:
                np.save(f, image.numpy())
            except BaseException:
                Path(f.name).unlink(missing_ok=True)
                raise
        os.replace(f.name, path)
        stale = glob.escape(str(path.parent / f"{Path(record.file_path).name}.{self.exif}.")) + "*.npy"
        for old in glob.glob(stale):
            if old != str(path):
                Path(old).unlink(missing_ok=True)


def _meminfo_available() -> int:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes; else the free physical pages (``os.sysconf``)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _cgroup_headroom() -> int | None:
    """What a cgroup v2 memory limit leaves (``memory.max - memory.current``); None without a limit."""
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((root / "memory.current").read_text())
    except (OSError, ValueError):
        return None


def memory_available() -> tuple[int, str]:
    """The bytes a RAM cache could take here, and the limit that sets the figure (for messages)."""
    limits = [(_meminfo_available(), "MemAvailable")]
    headroom = _cgroup_headroom()
    if headroom is not None:
        limits.append((headroom, "the cgroup memory limit"))
    if os.path.isdir("/dev/shm"):
        limits.append((shutil.disk_usage("/dev/shm").free, "the free space of /dev/shm, where shared memory lives"))
    return min(limits)


@contextmanager
def _progress(description: str, total: int) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr (nothing when it is not a terminal); yields ``advance()``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=console, transient=True, disable=not console.is_terminal)
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


def _fill(todo: Sequence[int], records: Sequence[ImageRecord], decode: Decode,
          store: Callable[[int, Tensor], None], owner: str) -> int:
    """Decodes ``records[todo]`` on threads and stores each image; returns how many could not be decoded."""
    def one(index: int) -> bool:
        try:
            image = decode(records[index])
        except BadImageError:
            return False
        store(index, image)
        return True

    start, cached = time.perf_counter(), 0
    threads = min(MAX_AUTO_WORKERS, usable_cpus())
    with _progress(f"caching images: {owner}", len(todo)) as advance, ThreadPoolExecutor(threads) as pool:
        for ok in pool.map(one, todo):
            cached += ok
            advance()
    bad = len(todo) - cached
    logger.info("%s: cached %d images in %.1f s%s", owner, cached, time.perf_counter() - start,
                f"; {bad} could not be decoded and are read from their files when loaded (on_bad_image "
                "decides)" if bad else "")
    return bad


def _build_ram(records: Sequence[ImageRecord], decode: Decode, exif: ExifMode, owner: str) -> RamImageCache:
    need = int(_image_bytes(records).sum())
    available, limit = memory_available()
    if need > RAM_SHARE * available:
        raise MemoryError(
            f"{owner}: dataset.cache=ram would cache {len(records)} images in {_size(need)} of RAM, more than "
            f"{RAM_SHARE:.0%} of the {_size(available)} available ({limit}); use dataset.cache=disk (memory-mapped "
            ".npy files beside the images) or dataset.cache=null"
        )
    logger.info("%s: caching %d images, %s in RAM (%s available)", owner, len(records), _size(need),
                _size(available))
    cache = RamImageCache(records, exif)
    _fill(range(len(records)), records, decode, cache.put, owner)
    return cache


def _build_disk(records: Sequence[ImageRecord], decode: Decode, exif: ExifMode, owner: str) -> DiskImageCache:
    cache = DiskImageCache(exif)
    entries = [cache.entry(r) for r in records]
    todo = [i for i, e in enumerate(entries) if e is not None and not e.is_file()]
    need = int(_image_bytes([records[i] for i in todo]).sum()) + _NPY_HEADER * len(todo)
    folders = sorted({entries[i].parent for i in todo})  # type: ignore[union-attr]
    for folder in folders:
        try:
            folder.mkdir(exist_ok=True)
        except OSError as err:
            raise OSError(f"{owner}: dataset.cache=disk writes decoded images to {folder}, which cannot be created "
                          f"({err.strerror or err}); use dataset.cache=ram or make the image folder writable") from None
    if folders and need > shutil.disk_usage(folders[0]).free:
        raise OSError(f"{owner}: dataset.cache=disk would write {len(todo)} images, {_size(need)}, to {folders[0]} "
                      f"but the disk has {_size(shutil.disk_usage(folders[0]).free)} free; use dataset.cache=null")
    logger.info("%s: caching %d images, %s on disk in %s folders beside the images (%d already cached)", owner,
                len(todo), _size(need), CACHE_DIR, len(records) - len(todo))
    if todo:
        _fill(todo, records, decode, lambda i, image: cache.put(records[i], image), owner)
    return cache


def build_image_cache(
    mode: CacheMode, records: Sequence[ImageRecord], decode: Decode, exif: ExifMode, owner: str
) -> ImageCache:
    """The filled cache of ``records``' images (see the module docstring).

    Args:
        mode: ``"ram"`` or ``"disk"``.
        records: the dataset's records, in index order.
        decode: record -> ``uint8 [3, H, W]`` (:meth:`lightdet.data.LoadImage.decode`); a
            :class:`BadImageError` leaves that image out of the cache.
        exif: the EXIF setting ``decode`` applies (part of a disk entry's name).
        owner: the dataset, in messages.

    Raises:
        MemoryError: ``ram``, when the images would take more than :data:`RAM_SHARE` of the available memory.
        OSError: ``disk``, when a cache folder cannot be created or the disk has not room for the entries.
    """
    build = {"ram": _build_ram, "disk": _build_disk}[check_cache_mode(mode, owner)]  # type: ignore[index]
    return build(records, decode, exif, owner)
