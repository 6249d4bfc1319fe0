"""Multi-image steps (Mosaic, MixUp, Copy-Paste), their cache, and the dataset wrapper that feeds them."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from augment_helpers import blob_sample, box_sample, by_label, mask_box, on_canvas, same_sample
from torch.utils.data import Dataset
from torchvision.transforms.v2 import InterpolationMode

from lightdet.data import CopyPaste, LoadImage, MixUp, Mosaic, MultiImageMixDataset, Resize, set_pipeline
from lightdet.data.augment import crop_sample
from lightdet.data.datasets.wrappers import ConcatDataset, RepeatDataset
from lightdet.data.mix import SampleCache, copy_paste, mixup, mosaic
from lightdet.data.streams import seed_stream
from lightdet.structures import DetSample


def _mosaic_inputs() -> list[DetSample]:
    s0 = box_sample(20, 20, [[2, 2, 8, 8], [4, 4, 16, 5]], value=10, labels=[0, 5])
    s0.boxes[1, 3] = 5.5  # 1.5 px high
    s1 = box_sample(10, 20, [[10, 2, 18, 8]], value=20, labels=[1], image_id=2)
    s2 = box_sample(40, 40, [[0, 0, 40, 40]], value=30, labels=[2], ignore=[True], image_id=3)
    s3 = box_sample(20, 20, [], value=40, image_id=4)
    return [s0, s1, s2, s3]


def test_mosaic_cuts_boxes_at_the_canvas_and_drops_the_small_ones():
    # 20x20 tiles on a 40x40 canvas meeting at (25, 15): top-left spans x 5..25, y -5..15; top-right
    # x 25..45 (cut at 40), y 5..15; bottom-left (the 40x40 image halved) x 5..25, y 15..35; bottom-right
    # x 25..45, y 15..35
    out = mosaic(_mosaic_inputs(), centre=(25, 15), tile=(20, 20), fill=114)
    expected = [
        [7.0, 0, 13, 3],  # [2,2,8,8] + (5,-5), cut at the top
        [35.0, 7, 40, 13],  # [10,2,18,8] + (25,5), cut at the right
        [5.0, 15, 25, 35],  # [0,0,40,40] * 0.5 + (5,15)
    ]  # [4,4,16,5.5] + (5,-5) = [9,-1,21,0.5] keeps 0.5 px: dropped with its label 5
    assert out.boxes.tolist() == expected
    assert out.labels.tolist() == [0, 1, 2] and out.ignore.tolist() == [False, False, True]
    assert [mask_box(m) for m in out.masks] == [[7, 0, 13, 3], [35, 7, 40, 13], [5, 15, 25, 35]]
    img = out.image[0]
    assert (img[0:15, 5:25] == 10).all() and (img[5:15, 25:40] == 20).all() and (img[0:5, 25:40] == 114).all()
    assert (img[15:35, 5:25] == 30).all() and (img[15:35, 25:40] == 40).all()
    assert (img[:, 0:5] == 114).all() and (img[35:] == 114).all()
    assert out.meta.img_size == (40, 40) and out.meta.image_id == 1 and out.meta.scale_factor == (1.0, 1.0)


def test_mosaic_then_crop_cuts_boxes_across_the_seams():
    out = crop_sample(mosaic(_mosaic_inputs(), centre=(25, 15), tile=(20, 20)), (20, 10, 40, 30), min_size=1)
    # the window straddles both seams (x = 25, y = 15): each tile's box is cut by it
    assert out.boxes.tolist() == [[15.0, 0, 20, 3], [0.0, 5, 5, 20]]
    assert out.labels.tolist() == [1, 2] and [mask_box(m) for m in out.masks] == [
        [15, 0, 20, 3],
        [0, 5, 5, 20],
    ]


def test_cached_mosaic_waits_for_its_cache_then_mixes():
    step = Mosaic(img_scale=(16, 16), max_cached_images=5, random_pop=False)
    seed_stream(0)
    samples = [box_sample(20, 24, [[2, 2, 10, 10]], image_id=i, seed=i) for i in range(8)]
    outs = [step(s) for s in samples]
    assert all(o is s for o, s in zip(outs[:3], samples[:3]))  # fewer than 4 samples cached
    assert all(o.meta.img_size == (32, 32) for o in outs[3:]) and len(step.cache) == 5
    assert [o.meta.image_id for o in outs] == list(range(8))
    assert all(len(o) >= 1 and (o.boxes[:, 2:] <= 32).all() for o in outs[3:])
    assert all(o.masks.shape == (len(o), 32, 32) for o in outs[3:])


def test_sample_cache_pops_the_oldest_or_a_random_one():
    cache = SampleCache(2, random_pop=False)
    samples = [box_sample(4, 4, [[0, 0, 2, 2]] * i, image_id=i) for i in range(3)]
    for s in samples:
        cache.push(s)
    assert len(cache) == 2 and {s.meta.image_id for s in cache.draw(20)} == {1, 2}
    seed_stream(0)
    assert all(len(s) for s in cache.draw(5, with_boxes=True))
    with pytest.raises(ValueError):
        SampleCache(0)


def test_mixup_averages_pixels_and_appends_the_other_boxes():
    sample = box_sample(20, 20, [[0, 0, 10, 10]], value=100, labels=[0])
    other = box_sample(10, 20, [[2, 2, 12, 8]], value=50, labels=[3], ignore=[True])
    # the other image fits 20x20 as is; the canvas holds it in rows 0..10 and grey (114) below; flipped
    out = mixup(sample, other, img_scale=(20, 20), jitter=1.0, flip=True, offset=(0, 0), fill=114)
    assert out.boxes.tolist() == [[0.0, 0, 10, 10], [8.0, 2, 18, 8]]
    assert out.labels.tolist() == [0, 3] and out.ignore.tolist() == [False, True]
    assert (out.image[:, :10] == 75).all() and (out.image[:, 10:] == 107).all()
    assert [mask_box(m) for m in out.masks] == [[0, 0, 10, 10], [8, 2, 18, 8]]


def test_mixup_jitter_and_offset_cut_and_drop_the_other_boxes():
    sample = box_sample(20, 20, [[0, 0, 10, 10]], value=100)
    other = box_sample(10, 20, [[2, 2, 12, 8], [14, 2, 15, 8]], value=50, labels=[3, 4])
    out = mixup(sample, other, img_scale=(20, 20), jitter=2.0, flip=False, offset=(10, 5), fill=114)
    # doubled: [4,4,24,16] and [28,4,30,16]; window x 10..30, y 5..25: [-6,-1,14,11] -> [0,0,14,11],
    # [18,-1,20,11] -> [18,0,20,11]
    assert out.boxes.tolist() == [[0.0, 0, 10, 10], [0, 0, 14, 11], [18, 0, 20, 11]]
    assert (out.image[:, 2, 2] == 75).all() and (out.image[:, 18, 2] == 107).all()
    thin = mixup(sample, other, img_scale=(20, 20), jitter=0.5, flip=False, offset=(0, 0), fill=114)
    assert thin.labels.tolist() == [0, 3]  # the 1 px wide box halves to 0.5 px: dropped


def test_mixup_step_draws_other_samples_with_boxes():
    step = MixUp(img_scale=(20, 20), max_cached_images=4, random_pop=False)
    seed_stream(0)
    empty = box_sample(20, 20, [], value=0, image_id=7)
    first = step(box_sample(20, 20, [[1, 1, 9, 9]], image_id=1))
    assert len(first) == 1  # a cache of one: passes through
    outs = [step(empty) for _ in range(2)]
    assert all(len(o) >= 1 and o.labels.tolist() == [0] * len(o) for o in outs)  # mixed with sample 1


def test_copy_paste_occludes_and_appends():
    dst = box_sample(20, 20, [[0, 0, 10, 10], [12, 12, 16, 16]], value=0, labels=[0, 1], ignore=[False, True])
    src = box_sample(20, 20, [[5, 0, 20, 10]], value=200, labels=[2])
    out = copy_paste(dst, src)
    # the first object loses columns 5..10: its mask's box [0,0,5,10] (moved 5 px <= 10): kept
    assert out.boxes.tolist() == [[0.0, 0, 5, 10], [12, 12, 16, 16], [5, 0, 20, 10]]
    assert out.labels.tolist() == [0, 1, 2] and out.ignore.tolist() == [False, True, False]
    assert [mask_box(m) for m in out.masks] == [[0, 0, 5, 10], [12, 12, 16, 16], [5, 0, 20, 10]]
    assert (out.image[:, 0:10, 5:20] == 200).all() and int(out.image.sum()) == 200 * 3 * 10 * 15
    strict = copy_paste(dst, src, bbox_occluded_thr=2)  # moved 5 > 2 and 50 px <= 300: dropped
    assert strict.labels.tolist() == [1, 2]
    assert copy_paste(dst, src, bbox_occluded_thr=2, mask_occluded_thr=40).labels.tolist() == [0, 1, 2]


def test_copy_paste_aligns_other_sizes_top_left():
    dst = box_sample(20, 20, [[0, 0, 4, 4]], value=0)
    src = box_sample(10, 30, [[2, 2, 6, 6], [22, 2, 28, 8]], value=200, labels=[5, 6])
    out = copy_paste(dst, src)
    assert out.labels.tolist() == [0, 5]  # the second object lies beyond x = 20: not pasted
    with pytest.raises(ValueError, match="with_mask"):
        copy_paste(box_sample(20, 20, [[0, 0, 4, 4]], masks=False), src)


def _resized(bitmaps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return TF.resize(bitmaps, list(size), interpolation=InterpolationMode.NEAREST_EXACT)


def test_mosaic_moves_masks_as_it_moves_the_full_bitmaps():
    samples = [
        blob_sample(30, 40, [[0, 0, 40, 30], [5, 3, 19, 29]], label_base=0, seed=1),
        blob_sample(20, 50, [[10, 2, 50, 20], [0, 0, 6, 6]], label_base=10, seed=2),
        blob_sample(64, 64, [[0, 30, 64, 64], [20, 0, 44, 40]], label_base=20, seed=3),
        blob_sample(25, 25, [[3, 3, 22, 22]], label_base=30, seed=4),
    ]
    out = mosaic(samples, centre=(27, 21), tile=(32, 32))
    expected = {}
    for i, s in enumerate(samples):  # each fitted into the 32x32 tile (sides truncated), a corner at the centre
        h, w = s.meta.img_size
        f = min(32 / h, 32 / w)
        fh, fw = max(1, int(h * f)), max(1, int(w * f))
        x, y = 27 - fw if i % 2 == 0 else 27, 21 - fh if i < 2 else 21
        moved = on_canvas(_resized(s.masks.to_bitmaps(), (fh, fw)), (-x, -y, 64 - x, 64 - y))
        expected.update(zip(s.labels.tolist(), moved))
    assert len(out) >= 5 and torch.equal(out.masks.to_bitmaps(), by_label(out, expected))


@pytest.mark.parametrize(("jitter", "flip", "offset"), [(1.0, False, (0, 0)), (1.4, True, (5, 9)), (0.7, True, (0, 0))])
def test_mixup_moves_masks_as_it_moves_the_full_bitmaps(jitter, flip, offset):
    sample = blob_sample(30, 40, [[0, 0, 40, 30], [5, 3, 19, 29]], seed=1)
    other = blob_sample(24, 44, [[10, 2, 44, 20], [0, 0, 12, 24], [30, 15, 40, 24]], label_base=10, seed=2)
    out = mixup(sample, other, img_scale=(40, 40), jitter=jitter, flip=flip, offset=offset)
    full = _resized(other.masks.to_bitmaps(), (21, 40))  # fitted into 40x40: factor 40 / 44
    full = _resized(on_canvas(full, (0, 0, 40, 40)), (int(40 * jitter), int(40 * jitter)))
    full = full.flip(-1) if flip else full
    moved = on_canvas(full, (offset[0], offset[1], offset[0] + 40, offset[1] + 30))
    expected = dict(enumerate(sample.masks.to_bitmaps())) | dict(zip(other.labels.tolist(), moved))
    assert len(out) >= 3 and torch.equal(out.masks.to_bitmaps(), by_label(out, expected))


def test_copy_paste_equals_copy_paste_of_the_full_bitmaps():
    dst = blob_sample(30, 40, [[0, 0, 40, 30], [5, 3, 19, 29], [30, 20, 40, 30], [1, 1, 3, 3]], seed=5)
    src = blob_sample(30, 36, [[10, 2, 36, 20], [0, 25, 5, 30], [20, 10, 30, 30]], label_base=10, seed=6)
    for thresholds in [(10, 300), (2, 40), (0, 0)]:
        out = copy_paste(dst, src, *thresholds)
        # MMDetection's rule, on whole images
        bitmaps = dst.masks.to_bitmaps()
        pasted = on_canvas(src.masks.to_bitmaps(), (0, 0, 40, 30)).bool().any(0)
        kept_masks = bitmaps * ~pasted
        boxes = dst.boxes.clone()
        touched = (kept_masks != bitmaps).flatten(1).any(1)
        boxes[touched] = torch.tensor([mask_box(m) or [0, 0, 0, 0] for m in kept_masks[touched]], dtype=torch.float32)
        kept = ((boxes - dst.boxes).abs() <= thresholds[0]).all(1) | (kept_masks.flatten(1).sum(1) > thresholds[1])
        n = int(kept.sum())
        assert out.labels[:n].tolist() == dst.labels[kept].tolist() and torch.equal(out.boxes[:n], boxes[kept])
        assert torch.equal(out.masks.to_bitmaps()[:n], kept_masks[kept])
        assert torch.equal(out.masks.to_bitmaps()[n:], on_canvas(src.masks.to_bitmaps(), (0, 0, 40, 30)))
        assert torch.equal(out.image, torch.where(pasted, on_canvas(src.image, (0, 0, 40, 30)), dst.image))


def test_copy_paste_step_pastes_a_random_subset():
    dst = box_sample(20, 20, [], value=0)
    src = box_sample(20, 20, [[0, 0, 4, 4], [5, 5, 9, 9], [10, 10, 14, 14]], value=9, labels=[1, 2, 3])
    seed_stream(0)
    counts = {len(CopyPaste(selected=True).mix(dst, [src])) for _ in range(30)}
    assert counts == {0, 1, 2, 3}
    assert len(CopyPaste(selected=False).mix(dst, [src])) == 3
    assert len(CopyPaste(max_num_pasted=0).mix(dst, [src])) == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: Mosaic(img_scale=(16, 16), max_cached_images=6),
        lambda: MixUp(img_scale=(16, 16), max_cached_images=6),
        lambda: CopyPaste(max_cached_images=6),
    ],
    ids=["Mosaic", "MixUp", "CopyPaste"],
)
def test_mix_steps_repeat_under_a_seed(make):
    samples = [box_sample(20, 24, [[2, 2, 12, 12], [14, 6, 22, 18]], image_id=i, seed=i) for i in range(8)]

    def run(seed: int) -> list[DetSample]:
        seed_stream(seed)
        step = make()
        return [step(s) for s in samples]

    first, again, other = run(0), run(0), run(1)
    assert all(same_sample(a, b) for a, b in zip(first, again))
    assert not all(same_sample(a, b) for a, b in zip(first, other))


class _Samples(Dataset[DetSample]):
    """Samples held in memory; ``pipeline`` runs on them (a dataset with a pipeline attribute)."""

    class_names = ["a", "b"]

    def __init__(self, samples: list[DetSample]) -> None:
        self.samples = samples
        self.pipeline = lambda s: s

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> DetSample:
        return self.pipeline(self.samples[index])

    def get_record(self, index: int) -> DetSample:
        return self.samples[index]

    def aspect_ratios(self) -> list[float]:
        return [1.0] * len(self.samples)


def test_multi_image_dataset_feeds_mix_steps_from_the_dataset():
    base = _Samples(
        [box_sample(20, 20, [[1, 1, 9, 9]] if i % 2 else [], image_id=i, seed=i) for i in range(6)]
    )
    mixed = MultiImageMixDataset(base, [Mosaic(img_scale=(10, 10)), Resize((8, 8), keep_ratio=False)])
    seed_stream(0)
    out = mixed[0]
    assert out.meta.img_size == (8, 8) and out.meta.image_id == 0 and len(mixed.steps[0].cache) == 0
    mixup = MultiImageMixDataset(base, [MixUp(img_scale=(20, 20), prob=1.0)])
    assert all(len(mixup[0]) == 1 for _ in range(5))  # image 0 has no box; the other one always has
    with pytest.raises(ValueError, match="LoadImage"):
        MultiImageMixDataset(base, [LoadImage()])


def test_set_pipeline_reaches_through_wrappers():
    a, b = _Samples([box_sample(4, 4, [])]), _Samples([box_sample(4, 4, [])])
    wrapped = RepeatDataset(ConcatDataset([a, b]), times=2)
    set_pipeline(wrapped, [Resize((8, 6), keep_ratio=False)])
    assert all(wrapped[i].meta.img_size == (6, 8) for i in range(4))
    mixed = MultiImageMixDataset(a, [])
    set_pipeline(RepeatDataset(mixed, times=1), [Resize((2, 2), keep_ratio=False)])
    assert mixed[0].meta.img_size == (2, 2)
    with pytest.raises(TypeError, match="set_pipeline"):
        set_pipeline(object(), [])
