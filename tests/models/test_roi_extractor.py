from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import initLevelMapper

from lightdet.models import MultiLevelRoIAlign


def rois_of_scales(scales: list[float]) -> torch.Tensor:
    s = torch.tensor(scales)
    return torch.stack([torch.zeros_like(s), 10 + 0 * s, 20 + 0 * s, 10 + s, 20 + s], 1)


def test_mmdet_level_mapping_known_values():
    ext = MultiLevelRoIAlign(7, [4, 8, 16, 32])
    rois = rois_of_scales([10, 55.9, 56, 111.9, 112, 224, 448, 2000])
    assert ext.map_levels(rois).tolist() == [0, 0, 0, 0, 1, 2, 3, 3]


def test_torchvision_level_mapping_matches_level_mapper():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(500, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + 1 + torch.rand(500, 2, generator=g) * 600], 1)
    boxes = torch.cat([boxes, torch.tensor([[0.0, 0.0, 112.0, 112.0], [0.0, 0.0, 224.0, 224.0]])])
    ref = initLevelMapper(2, 5)([boxes])
    ours = MultiLevelRoIAlign(7, [4, 8, 16, 32], level_mapping="torchvision").map_levels(
        torch.cat([torch.zeros(len(boxes), 1), boxes], 1)
    )
    assert torch.equal(ours, ref)


def pyramid(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 4, 64 // s, 96 // s, generator=g) for s in (1, 2, 4, 8)]


def test_torchvision_numerics_equal_multiscale_roi_align():
    feats = pyramid()
    boxes = [
        torch.tensor([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 90.0, 60.0]]),
        torch.tensor([[10.0, 3.0, 20.0, 9.0]]),
    ]
    ref_pool = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, sampling_ratio=2)
    # feature heights 64 / 32 / 16 / 8 of a 256-high image: torchvision infers strides 4 .. 32
    ref = ref_pool(OrderedDict((str(i), f) for i, f in enumerate(feats)), boxes, [(256, 384), (256, 384)])
    ext = MultiLevelRoIAlign(7, [4, 8, 16, 32], sampling_ratio=2, aligned=False, level_mapping="torchvision")
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1) for i, b in enumerate(boxes)])
    torch.testing.assert_close(ext(feats, rois), ref)


def test_aligned_shifts_by_half_a_pixel():
    feats = pyramid(1)
    rois = torch.tensor([[0.0, 4.0, 4.0, 40.0, 36.0]])  # scale 34 -> level 0
    aligned = MultiLevelRoIAlign(7, [4, 8, 16, 32], aligned=True)(feats, rois)
    legacy = MultiLevelRoIAlign(7, [4, 8, 16, 32], aligned=False)(feats, rois)
    torch.testing.assert_close(aligned, roi_align(feats[0], rois, 7, 0.25, 0, aligned=True))
    assert not torch.allclose(aligned, legacy)


def test_empty_rois_and_errors():
    out = MultiLevelRoIAlign(7, [4, 8, 16, 32])(pyramid(), torch.zeros(0, 5))
    assert out.shape == (0, 4, 7, 7)
    with pytest.raises(ValueError, match="needs 4 feature maps"):
        MultiLevelRoIAlign(7, [4, 8, 16, 32])(pyramid()[:3], torch.zeros(1, 5))
    with pytest.raises(ValueError, match="level_mapping"):
        MultiLevelRoIAlign(level_mapping="detectron")


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def many_rois(n: int = 300, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([300.0, 200.0])
    wh = 4 + torch.rand(n, 2, generator=g) * 250
    return torch.cat([torch.randint(0, 2, (n, 1), generator=g).float(), xy, xy + wh], 1)


def test_cpu_pooling_spreads_over_threads_and_equals_one_thread(two_threads, monkeypatch):
    """torchvision's CPU roi_align (forward and backward) is single-threaded: MultiLevelRoIAlign splits the
    forward's RoIs and the backward's channels over the intra-op threads. Values and gradients are exactly
    those of pooling everything on the calling thread."""
    import threading

    from lightdet.models.ops import roi_extractor

    feats = [f.repeat(1, 4, 4, 4).requires_grad_(True) for f in pyramid(2)]
    rois = many_rois()
    ext = MultiLevelRoIAlign(7, [4, 8, 16, 32], sampling_ratio=2)
    forward_threads: set[int] = set()
    backward_threads: set[int] = set()

    def recording(*args, **kwargs):
        forward_threads.add(threading.get_ident())
        return roi_align(*args, **kwargs)

    backward = roi_extractor._roi_align_backward

    def recording_backward(*args, **kwargs):
        backward_threads.add(threading.get_ident())
        return backward(*args, **kwargs)

    monkeypatch.setattr(roi_extractor, "roi_align", recording)
    monkeypatch.setattr(roi_extractor, "_roi_align_backward", recording_backward)
    assert roi_extractor.roi_align_threads(feats[0], len(rois)) == 2
    spread = ext(feats, rois)
    weights = torch.randn(spread.shape, generator=torch.Generator().manual_seed(0))
    (spread * weights).sum().backward()
    main = threading.get_ident()
    assert len(forward_threads) == 2 and main not in forward_threads
    assert len(backward_threads) == 2 and main not in backward_threads
    grads = [f.grad for f in feats]
    for f in feats:
        f.grad = None
    monkeypatch.setattr(roi_extractor, "MIN_ROIS_PER_THREAD", 10_000)  # back to one thread
    forward_threads.clear()
    single = ext(feats, rois)
    (single * weights).sum().backward()
    assert forward_threads == {main}
    assert torch.equal(spread, single)
    assert [g is None for g in grads] == [f.grad is None for f in feats] != [True] * 4
    for f, g in zip(feats, grads):
        if g is not None:
            assert torch.equal(f.grad, g)


def test_threaded_pooling_keeps_inference_mode_and_is_skipped_when_tracing(two_threads, monkeypatch):
    import threading

    from lightdet.models.ops import roi_extractor

    feats = [f.repeat(1, 2, 4, 4) for f in pyramid(3)]
    rois = many_rois(200, seed=1)
    ext = MultiLevelRoIAlign(7, [4, 8, 16, 32])
    with torch.inference_mode():
        out = ext(feats, rois)
    assert out.is_inference()
    assert roi_extractor.roi_align_threads(feats[0], 10) == 1  # too few RoIs to hand over
    threads: set[int] = set()

    def recording(*args, **kwargs):
        threads.add(threading.get_ident())
        return roi_align(*args, **kwargs)

    monkeypatch.setattr(roi_extractor, "roi_align", recording)
    traced = torch.jit.trace(
        lambda f0, f1, f2, f3, r: ext([f0, f1, f2, f3], r), (*feats, rois), check_trace=False
    )
    assert threads == {threading.get_ident()}  # a trace only records its own thread
    torch.testing.assert_close(traced(*feats, rois), out)
