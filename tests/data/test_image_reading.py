"""Image reading: every decode failure names the file, the image id and the dataset; 16-bit images are reduced
to 8 bits, 32-bit ones refused by name; EXIF orientation is ignored or applied as configured."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from lightdet.data import CocoDataset, LoadImage, read_image
from lightdet.data.image_io import BadImageError, image_orientation

ORIENTATION = 0x0112


def _dataset(root: Path) -> CocoDataset:
    return CocoDataset(root / "ann.json", root / "img")


def _fails(root: Path, index: int, reason: str) -> str:
    """The message of loading image ``index``; it names the dataset, the image id, the file and ``reason``."""
    with pytest.raises(BadImageError) as info:
        _dataset(root)[index]
    message = str(info.value)
    file_name = ["a.jpg", "b.png", "c.jpg"][index]
    assert message.startswith(f"CocoDataset {root / 'ann.json'}: image {10 + index}: file ")
    assert str(root / "img" / file_name) in message
    assert re.search(reason, message), message
    return message


def test_truncated_jpeg(coco_dir) -> None:
    root = coco_dir()
    path = root / "img" / "a.jpg"
    path.write_bytes(path.read_bytes()[:300])
    message = _fails(root, 0, r"is truncated \(Truncated File Read\)")
    assert message.endswith("; dataset.on_bad_image=skip would skip it (skipped images are listed in summary.json)")


def test_zero_byte_file(coco_dir) -> None:
    root = coco_dir()
    (root / "img" / "b.png").write_bytes(b"")
    _fails(root, 1, r"is empty \(0 bytes\)")


def test_a_file_that_is_not_an_image(coco_dir) -> None:
    root = coco_dir()
    (root / "img" / "a.jpg").write_bytes(b"<html>not found</html>")
    _fails(root, 0, r"is not an image \(neither torchvision nor PIL recognises its format\)")


def test_a_folder_in_place_of_the_file(coco_dir) -> None:
    root = coco_dir()
    (root / "img" / "c.jpg").unlink()
    (root / "img" / "c.jpg").mkdir()
    _fails(root, 2, r"cannot be read \(Is a directory\)")


def test_a_missing_file_is_also_a_file_not_found_error(coco_dir) -> None:
    root = coco_dir()
    (root / "img" / "c.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"image 12: file '.*c\.jpg' not found"):
        _dataset(root)[2]


def test_a_corrupt_png_is_an_error_not_a_crash(tmp_path: Path) -> None:
    """torchvision's PNG decoder kills the process on this file (libpng: "IDAT: incorrect data check", then a
    segmentation fault), so it runs in a child process."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 30, 3), dtype=np.uint8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[len(data) // 2] ^= 0xFF
    (path := tmp_path / "flip.png").write_bytes(data)
    code = (f"from lightdet.data.image_io import read_image\ntry:\n    read_image({str(path)!r})\n"
            "except Exception as err:\n    print(type(err).__name__, err)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == (f"BadImageError file {str(path)!r} is corrupt (OSError: broken data stream when "
                                   "reading image file)")


def test_load_image_alone_names_the_image_and_the_file(tmp_path: Path) -> None:
    from lightdet.data.records import ImageRecord

    (tmp_path / "x.jpg").write_bytes(b"")
    empty = np.zeros((0, 4), np.float32)
    record = ImageRecord(7, str(tmp_path / "x.jpg"), 4, 4, empty, np.zeros(0, np.int64), np.zeros(0, bool))
    with pytest.raises(BadImageError, match=r"^image 7: file '.*x\.jpg' is empty \(0 bytes\)$"):
        LoadImage()(record)


# -- bit depth ------------------------------------------------------------------------------------------
VALUES_16 = np.array([[0, 257, 32896, 65280, 65535]], dtype=np.uint16)
VALUES_8 = np.array([[0, 1, 128, 255, 255]], dtype=np.uint8)  # the top byte, v // 256


def test_16bit_grayscale_png_is_reduced_to_8_bits(tmp_path: Path) -> None:
    Image.fromarray(VALUES_16).save(tmp_path / "g16.png")
    image = read_image(tmp_path / "g16.png")
    assert image.dtype == torch.uint8 and image.shape == (3, 1, 5)
    assert torch.equal(image, torch.from_numpy(VALUES_8).expand(3, 1, 5))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_rgb_is_reduced_to_8_bits(tmp_path: Path, suffix: str) -> None:
    rgb = np.stack([VALUES_16, VALUES_16[:, ::-1], VALUES_16], axis=-1)
    cv2.imwrite(str(tmp_path / f"rgb16{suffix}"), rgb[..., ::-1])  # OpenCV writes BGR
    image = read_image(tmp_path / f"rgb16{suffix}")
    expected = np.stack([VALUES_8, VALUES_8[:, ::-1], VALUES_8])
    assert image.dtype == torch.uint8 and torch.equal(image, torch.from_numpy(expected))


def test_16bit_grayscale_tiff_is_reduced_not_clipped(tmp_path: Path) -> None:
    Image.fromarray(VALUES_16).save(tmp_path / "g16.tif")
    assert torch.equal(read_image(tmp_path / "g16.tif")[0], torch.from_numpy(VALUES_8))


def test_a_16bit_png_trains_through_the_dataset(coco_dir) -> None:
    root = coco_dir()
    pixels = np.random.default_rng(0).integers(0, 65535, (50, 30), dtype=np.uint16)
    Image.fromarray(pixels).save(root / "img" / "b.png")
    sample = _dataset(root)[1]
    assert sample.image.dtype == torch.uint8 and sample.image.shape == (3, 50, 30)


@pytest.mark.parametrize(
    ("pixels", "what"),
    [(np.full((30, 40), 0.5, np.float32), r"32-bit float pixels \(PIL mode 'F'\)"),
     (np.full((30, 40), 70000, np.int32), r"32-bit integer pixels \(PIL mode 'I'\)")],
)
def test_32bit_images_are_refused_by_name(coco_dir, pixels: np.ndarray, what: str) -> None:
    root = coco_dir()
    Image.fromarray(pixels).save(root / "img" / "a.jpg", format="TIFF")
    message = _fails(root, 0, what)
    assert "convert it to 8 (or 16) bits per channel" in message


# -- EXIF orientation -----------------------------------------------------------------------------------
def _rotated_jpeg(path: Path, orientation: int) -> np.ndarray:
    """A 40x30 (WxH) JPEG whose EXIF says how to display it; returns its stored pixels ``[30, 40, 3]``."""
    pixels = np.zeros((30, 40, 3), np.uint8)
    pixels[:10, :20] = 255  # a white block in the stored top-left corner
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(pixels).save(path, exif=exif, quality=100)
    return pixels


def test_exif_orientation_is_ignored_by_default_and_applied_on_request(tmp_path: Path) -> None:
    _rotated_jpeg(tmp_path / "r.jpg", 6)  # 6: display rotated 90 degrees clockwise
    assert image_orientation(tmp_path / "r.jpg") == 6
    stored = read_image(tmp_path / "r.jpg")
    shown = read_image(tmp_path / "r.jpg", exif="apply")
    assert stored.shape == (3, 30, 40) and shown.shape == (3, 40, 30)
    assert torch.equal(shown, torch.rot90(stored, k=-1, dims=(1, 2)))  # clockwise
    assert shown[:, :20, -10:].float().mean() > 200  # the block is now top-right


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".bmp"])
def test_exif_apply_matches_pil_for_every_orientation_and_format(tmp_path: Path, orientation: int, suffix: str) -> None:
    pixels = np.random.default_rng(orientation).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    path = tmp_path / f"r{suffix}"
    extra = {"lossless": True} if suffix == ".webp" else {"quality": 100} if suffix == ".jpg" else {}
    Image.fromarray(pixels).save(path, **({} if suffix == ".bmp" else {"exif": exif}), **extra)
    with Image.open(path) as img:
        expected = torch.from_numpy(np.array(ImageOps.exif_transpose(img).convert("RGB"))).permute(2, 0, 1)
        stored = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(read_image(path, exif="apply"), expected)
    assert torch.equal(read_image(path), stored)


def test_a_tiff_is_always_read_as_displayed(tmp_path: Path) -> None:
    """PIL applies a TIFF's orientation (a tag of the TIFF format itself) whatever ``exif`` says."""
    exif = Image.Exif()
    exif[ORIENTATION] = 8
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "r.tif", exif=exif)
    assert image_orientation(tmp_path / "r.tif") == 1
    assert read_image(tmp_path / "r.tif").shape == read_image(tmp_path / "r.tif", exif="apply").shape == (3, 40, 30)


def test_an_image_without_orientation_reads_the_same_either_way(tmp_path: Path) -> None:
    Image.fromarray(np.arange(1200, dtype=np.uint8).reshape(30, 40)).save(tmp_path / "p.png")
    assert image_orientation(tmp_path / "p.png") == 1
    assert torch.equal(read_image(tmp_path / "p.png"), read_image(tmp_path / "p.png", exif="apply"))


def test_a_size_mismatch_from_orientation_says_which_setting_fits(coco_dir) -> None:
    root = coco_dir()
    _rotated_jpeg(root / "img" / "a.jpg", 6)  # stored 40x30 as the annotation file says
    data = CocoDataset(root / "ann.json", root / "img", pipeline=[LoadImage(exif="apply")])
    with pytest.raises(BadImageError, match=r"decodes to \(H, W\) \(40, 30\) after applying its EXIF orientation "
                       r"6 \(exif=apply\) but the annotation file says height=30, width=40: it was annotated "
                       r"as stored; set dataset.exif=ignore"):
        data[0]
    assert _dataset(root)[0].image.shape == (3, 30, 40)


def test_an_annotation_of_the_displayed_image_asks_for_exif_apply(coco_dir) -> None:
    root = coco_dir()
    _rotated_jpeg(root / "img" / "c.jpg", 6)  # stored 40x30, the annotation file says 20x20 ...
    import json

    ann = json.loads((root / "ann.json").read_text())
    ann["images"][2].update(width=30, height=40)  # ... now the displayed size
    (root / "ann.json").write_text(json.dumps(ann))
    with pytest.raises(BadImageError, match=r"decodes to \(H, W\) \(30, 40\) but the annotation file says "
                       r"height=40, width=30: it was annotated as displayed \(EXIF orientation 6\); set "
                       r"dataset.exif=apply"):
        _dataset(root)[2]
    rotated = CocoDataset(root / "ann.json", root / "img", pipeline=[LoadImage(exif="apply")])
    assert rotated[2].image.shape == (3, 40, 30)


def test_load_image_refuses_an_unknown_exif_setting() -> None:
    with pytest.raises(ValueError, match=r"LoadImage: exif must be 'ignore' or 'apply', got 'rotate'"):
        LoadImage(exif="rotate")  # type: ignore[arg-type]


def test_dataset_exif_reaches_the_load_image_of_every_shipped_pipeline(tmp_path: Path) -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from test_dataset_configs import CONF, compose

    for path in sorted((CONF / "pipeline").glob("*.yaml")):
        for split, steps in OmegaConf.to_container(OmegaConf.load(path)).items():
            if not (isinstance(steps, list) and steps and all(isinstance(s, dict) for s in steps)):
                continue  # a setting that pipeline steps interpolate, or a defaults list
            loads = [s for s in steps if s.get("_target_") == "lightdet.data.LoadImage"]
            assert [s.get("exif") for s in loads] == ["${oc.select:dataset.exif,ignore}"], (path.name, split)
    for exif in ("ignore", "apply"):
        cfg = compose("coco", tmp_path, exif=exif)
        assert instantiate(cfg.dataset.pipeline.train)[0].exif == exif
        assert cfg.dataset.datamodule.val.on_bad_image == "error"
    own = OmegaConf.merge({"dataset": {"pipeline": OmegaConf.load(CONF / "pipeline" / "shapes.yaml")}})
    assert instantiate(own.dataset.pipeline.test)[0].exif == "ignore"  # a dataset config without `exif`
