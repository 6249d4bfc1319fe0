"""Decoded-image caches (``cache="ram"`` / ``"disk"``): cached samples equal uncached ones, bad images and EXIF
behave the same, disk entries follow their image files, DataLoader workers share the RAM buffer, and a cache
that would not fit is refused."""

from __future__ import annotations

import json
import os
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
from format_helpers import CSV_TRAIN, write_csv
from PIL import Image
from torch.utils.data import DataLoader, get_worker_info
from user_format import CsvDataset

from lightdet.data import CocoDataset, LoadImage, RandomFlip, Resize, ShapesDataset, set_pipeline
from lightdet.data import image_cache as image_cache_module
from lightdet.data.image_cache import CACHE_DIR, memory_available
from lightdet.data.image_io import BadImageError, read_image
from lightdet.structures import DetSample

CACHES = ["ram", "disk"]
ORIENTATION = 0x0112  # the EXIF tag


def _pipeline(exif: str = "ignore") -> list:
    """Geometric and deterministic: two loads of one image through it must agree exactly."""
    return [LoadImage(exif=exif), Resize((48, 48)), RandomFlip(prob=1.0)]


def _coco(root: Path, cache: str | None = None, **kwargs) -> CocoDataset:
    kwargs.setdefault("pipeline", _pipeline())
    return CocoDataset(root / "ann.json", root / "img", cache=cache, **kwargs)


def _mask_pixels(masks) -> torch.Tensor:
    """``uint8 [N, H, W]`` of a sample's masks, a tensor or a structure that paints them (``to_bitmaps``)."""
    return masks if isinstance(masks, torch.Tensor) else masks.to_bitmaps()


def assert_same(a: DetSample, b: DetSample) -> None:
    assert torch.equal(a.image, b.image)
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.labels, b.labels) and torch.equal(a.ignore, b.ignore)
    assert (a.masks is None) == (b.masks is None)
    assert a.masks is None or torch.equal(_mask_pixels(a.masks), _mask_pixels(b.masks))
    assert a.meta == b.meta


def _refuse_to_decode(*_, **__):
    raise AssertionError("an image file was decoded although the cache holds it")


# -- cached samples equal uncached ones ------------------------------------------------------------------
@pytest.mark.parametrize("cache", CACHES)
def test_coco_samples_equal_uncached(coco_dir, cache: str) -> None:
    root = coco_dir()
    plain, cached = _coco(root, with_mask=True), _coco(root, cache, with_mask=True)
    assert cached.image_cache is not None and cached.image_cache.mode == cache
    for i in range(len(plain)):
        assert_same(cached[i], plain[i])


@pytest.mark.parametrize("cache", CACHES)
def test_shapes_samples_equal_uncached(tiny_shapes: Path, tmp_path: Path, cache: str) -> None:
    root = shutil.copytree(tiny_shapes, tmp_path / "shapes")  # the disk cache writes beside the images
    kwargs = {"num_train": 12, "num_val": 6, "seed": 3, "pipeline": _pipeline()}
    plain = ShapesDataset(root, "train", **kwargs)
    cached = ShapesDataset(root, "train", cache=cache, **kwargs)
    assert len(cached) == len(plain) == 12
    for i in range(len(plain)):
        assert_same(cached[i], plain[i])


@pytest.mark.parametrize("cache", CACHES)
def test_a_users_dataset_class_caches_through_the_base_class(tmp_path: Path, cache: str) -> None:
    csv_file = write_csv(tmp_path, CSV_TRAIN)
    plain = CsvDataset(csv_file, tmp_path / "img", classes=["cat", "dog"], pipeline=_pipeline())
    cached = CsvDataset(csv_file, tmp_path / "img", classes=["cat", "dog"], pipeline=_pipeline(), cache=cache)
    for i in range(len(plain)):
        assert_same(cached[i], plain[i])


@pytest.mark.parametrize("cache", CACHES)
def test_cached_images_are_not_decoded_again(coco_dir, cache: str, monkeypatch: pytest.MonkeyPatch) -> None:
    root = coco_dir()
    expected = [s.image for s in _coco(root)]
    cached = _coco(root, cache)
    monkeypatch.setattr("lightdet.data.transforms.read_image", _refuse_to_decode)
    assert all(torch.equal(cached[i].image, expected[i]) for i in range(len(cached)))


@pytest.mark.parametrize("cache", CACHES)
def test_a_step_writing_into_its_input_cannot_change_the_cache(coco_dir, cache: str) -> None:
    cached = _coco(coco_dir(), cache, pipeline=[LoadImage()])
    first = cached[0].image.clone()
    cached[0].image.zero_()
    assert torch.equal(cached[0].image, first) and first.any()


# -- EXIF, bad images, the pipeline ----------------------------------------------------------------------
def _rotated_jpeg(root: Path) -> None:
    """``c.jpg`` stored 40x30 (WxH) with EXIF orientation 6, annotated as displayed (30x40)."""
    pixels = np.random.default_rng(1).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    Image.fromarray(pixels).save(root / "img" / "c.jpg", exif=exif, quality=100)
    ann = json.loads((root / "ann.json").read_text())
    ann["images"][2].update(width=30, height=40)
    (root / "ann.json").write_text(json.dumps(ann))


@pytest.mark.parametrize("cache", CACHES)
def test_exif_is_applied_before_caching(coco_dir, cache: str) -> None:
    root = coco_dir()
    _rotated_jpeg(root)
    plain = _coco(root, pipeline=[LoadImage(exif="apply")])
    cached = _coco(root, cache, pipeline=[LoadImage(exif="apply")])
    assert cached[2].image.shape == (3, 40, 30)
    assert torch.equal(cached[2].image, plain[2].image)
    assert torch.equal(cached[2].image, torch.rot90(read_image(root / "img" / "c.jpg"), k=-1, dims=(1, 2)))


@pytest.mark.parametrize("cache", CACHES)
def test_bad_images_behave_as_without_a_cache(coco_dir, cache: str) -> None:
    root = coco_dir()
    (root / "img" / "a.jpg").write_bytes((root / "img" / "a.jpg").read_bytes()[:200])  # truncated
    (root / "img" / "b.png").unlink()
    plain, cached = _coco(root), _coco(root, cache)  # building the cache does not stop at them
    for i in (0, 1):
        with pytest.raises(BadImageError) as without:
            plain[i]
        with pytest.raises(BadImageError) as with_cache:
            cached[i]
        assert str(with_cache.value) == str(without.value)
        assert type(with_cache.value) is type(without.value)
    plain, cached = _coco(root, on_bad_image="skip"), _coco(root, cache, on_bad_image="skip")
    for i in range(len(plain)):
        assert_same(cached[i], plain[i])
    assert cached[0].meta.skipped and cached[0].meta.skipped == plain[0].meta.skipped


def test_the_cache_needs_a_pipeline_that_starts_with_load_image(coco_dir) -> None:
    root = coco_dir()
    with pytest.raises(ValueError, match=r"cache='ram' keeps the images LoadImage decodes; the pipeline must start "
                       r"with lightdet\.data\.LoadImage"):
        _coco(root, "ram", pipeline=lambda record: record)
    with pytest.raises(ValueError, match=r"CocoDataset: cache must be 'ram', 'disk' or null, got 'memory'"):
        _coco(root, "memory")


@pytest.mark.parametrize("cache", CACHES)
def test_a_pipeline_switch_keeps_the_cache_and_its_exif(coco_dir, cache: str, monkeypatch) -> None:
    root = coco_dir()
    cached = _coco(root, cache)
    with pytest.raises(ValueError, match=r"reads images with exif='apply' but the image cache holds them read "
                       r"with exif='ignore'"):
        set_pipeline(cached, [LoadImage(exif="apply")])
    set_pipeline(cached, [LoadImage()])
    monkeypatch.setattr("lightdet.data.transforms.read_image", _refuse_to_decode)
    assert cached[1].image.shape == (3, 50, 30)  # the native size: the new pipeline, from the cache


# -- the disk cache ----------------------------------------------------------------------------------------
def _entries(root: Path, name: str) -> list[Path]:
    return sorted((root / "img" / CACHE_DIR).glob(f"{name}.*.npy"))


def test_disk_entries_are_reused_by_the_next_dataset(coco_dir, monkeypatch) -> None:
    root = coco_dir()
    _coco(root, "disk")
    assert [len(_entries(root, n)) for n in ("a.jpg", "b.png", "c.jpg")] == [1, 1, 1]
    expected = [s.image for s in _coco(root)]
    monkeypatch.setattr("lightdet.data.transforms.read_image", _refuse_to_decode)
    again = _coco(root, "disk")
    assert all(torch.equal(again[i].image, expected[i]) for i in range(len(again)))


def test_a_changed_image_file_invalidates_its_disk_entry(coco_dir) -> None:
    root = coco_dir()
    cached = _coco(root, "disk", pipeline=[LoadImage()])
    (old,) = _entries(root, "a.jpg")
    path = root / "img" / "a.jpg"
    Image.fromarray(np.full((30, 40, 3), 77, np.uint8)).save(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a new mtime whatever the clock's resolution
    changed = read_image(path)
    assert torch.equal(cached[0].image, changed)  # the entry no longer matches: the file is read
    rebuilt = _coco(root, "disk", pipeline=[LoadImage()])
    (new,) = _entries(root, "a.jpg")  # a new entry, the stale one removed
    assert new != old and not old.exists()
    assert torch.equal(torch.from_numpy(np.load(new)), changed) and torch.equal(rebuilt[0].image, changed)


def test_a_damaged_disk_entry_is_read_from_the_file(coco_dir) -> None:
    root = coco_dir()
    cached = _coco(root, "disk", pipeline=[LoadImage()])
    (entry,) = _entries(root, "b.png")
    entry.write_bytes(entry.read_bytes()[:100])
    assert torch.equal(cached[1].image, read_image(root / "img" / "b.png"))


def test_a_disk_cache_without_room_is_refused(coco_dir, monkeypatch) -> None:
    root = coco_dir()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(image_cache_module.shutil, "disk_usage", lambda _: usage(10**6, 10**6, 1000))
    with pytest.raises(OSError, match=r"dataset\.cache=disk would write 3 images, 0\.00968 MB, to .*\.lightdet-cache "
                       r"but the disk has 0\.001 MB free"):
        _coco(root, "disk")


# -- the RAM cache -----------------------------------------------------------------------------------------
def _mark_buffer(worker_id: int) -> None:
    """Each DataLoader worker writes its id into the first bytes of the dataset's cache buffer."""
    dataset = get_worker_info().dataset
    dataset.image_cache.buffer[worker_id] = 200 + worker_id


@pytest.mark.parametrize(("context", "workers"), [
    ("fork", 2),
    pytest.param("spawn", 1, marks=pytest.mark.slow),  # a spawned interpreter imports torch: 5-15 s on 2 busy cores
])
def test_dataloader_workers_share_the_ram_cache(coco_dir, context: str, workers: int) -> None:
    root = coco_dir()
    expected = [s.image for s in _coco(root)]
    cached = _coco(root, "ram")
    shutil.rmtree(root / "img")  # a worker that decoded or filled the cache again would fail now
    loader = DataLoader(cached, batch_size=None, num_workers=workers, multiprocessing_context=context,
                        worker_init_fn=_mark_buffer)
    images = [s.image for s in loader]
    assert len(images) == 3
    assert all(torch.equal(a, b) for a, b in zip(images[1:], expected[1:]))  # image 0 holds the marks
    # the workers wrote into this process's buffer: one buffer, not a copy per worker
    assert cached.image_cache.buffer[:workers].tolist() == [200 + w for w in range(workers)]


def test_a_ram_cache_that_would_not_fit_is_refused(coco_dir, monkeypatch) -> None:
    root = coco_dir()
    monkeypatch.setattr(image_cache_module, "memory_available", lambda: (10_000, "MemAvailable"))
    # 3 x (40x30 + 30x50 + 20x20) = 9300 bytes, more than 80% of 10000
    with pytest.raises(MemoryError, match=r"CocoDataset .*ann\.json: dataset\.cache=ram would cache 3 images in "
                       r"0\.0093 MB of RAM, more than 80% of the 0\.01 MB available \(MemAvailable\); use "
                       r"dataset\.cache=disk"):
        _coco(root, "ram")
    monkeypatch.setattr(image_cache_module, "memory_available", lambda: (12_000, "MemAvailable"))
    assert _coco(root, "ram").image_cache.buffer.numel() == 9300


def test_ram_cache_states_its_size_before_filling(coco_dir, caplog) -> None:
    caplog.set_level("INFO", logger="lightdet.data.image_cache")
    _coco(coco_dir(), "ram")
    assert "caching 3 images, 0.0093 MB in RAM" in caplog.text


@pytest.mark.skipif(not Path("/proc/meminfo").is_file(), reason="reads /proc/meminfo")
def test_available_memory_is_at_most_memavailable() -> None:
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    available, limit = memory_available()
    assert 0 < available <= int(fields["MemAvailable"].split()[0]) * 1024 * 1.05  # it moves while we read
    assert limit
