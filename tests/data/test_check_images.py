"""``lightdet-data check`` decodes every image (in worker processes, with a progress bar) and reports truncated,
unreadable, 16- and 32-bit and EXIF-rotated files, and boxes with NaN or infinite coordinates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_helpers import default_coco
from PIL import Image

from lightdet.cli.data import main
from lightdet.data.check import check_annotation_file

ORIENTATION = 0x0112


def _issues(report) -> dict[str, object]:
    return {i.code: i for i in report.issues}


def _broken(coco_dir) -> Path:
    """The fixture with a truncated JPEG (a.jpg), an empty PNG (b.png) and c.jpg rotated by EXIF."""
    data = default_coco()
    data["annotations"] = [a for a in data["annotations"] if a["id"] != 4]  # drop the known zero-size box
    root = coco_dir(data)
    jpeg = (root / "img" / "a.jpg").read_bytes()
    (root / "img" / "a.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "img" / "b.png").write_bytes(b"")
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "img" / "c.jpg", exif=exif)
    return root


def test_truncated_empty_and_rotated_images(coco_dir) -> None:
    root = _broken(coco_dir)
    issues = _issues(check_annotation_file(root / "ann.json", root / "img"))
    truncated = issues["truncated_image"]
    assert truncated.severity == "error" and truncated.message == "1 image file(s) are truncated"
    (example,) = truncated.examples
    assert example.startswith(f"image 10: {root / 'img' / 'a.jpg'} is truncated (image file is truncated")
    unreadable = issues["unreadable_image"]
    assert unreadable.examples == [f"image 11: {root / 'img' / 'b.png'} is empty (0 bytes)"]
    rotated = issues["exif_orientation"]
    assert rotated.severity == "warning"
    assert rotated.message == (
        "1 image(s) carry an EXIF orientation tag; with dataset.exif=ignore they are read as stored, which is "
        "right when they were annotated as stored (as COCO and VOC files are) but not as a photo viewer shows "
        "them; annotated as shown? set dataset.exif=apply")
    assert rotated.examples == [f"image 12: {root / 'img' / 'c.jpg'} (orientation 6: shown rotated 90° clockwise)"]


def test_exif_apply_is_checked_as_configured(coco_dir) -> None:
    root = _broken(coco_dir)
    report = check_annotation_file(root / "ann.json", root / "img", exif="apply")
    rotated = _issues(report)["exif_orientation"]
    assert rotated.message.startswith("1 image(s) carry an EXIF orientation tag; with dataset.exif=apply they are "
                                      "rotated as a photo viewer shows them")


def test_a_size_that_fits_the_displayed_image_asks_for_exif_apply(coco_dir) -> None:
    data = default_coco()
    data["images"][0].update(width=30, height=40)  # a.jpg is stored 40x30; shown upright it is 30x40
    root = coco_dir(data)
    exif = Image.Exif()
    exif[ORIENTATION] = 8
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(root / "img" / "a.jpg", exif=exif)
    mismatch = _issues(check_annotation_file(root / "ann.json", root / "img"))["image_size_mismatch"]
    assert mismatch.examples == [
        f"image 10: {root / 'img' / 'a.jpg'} decodes to (H, W) (30, 40) but the annotation file says height=40, "
        "width=30: it was annotated as displayed (EXIF orientation 8); set dataset.exif=apply"]
    assert "image_size_mismatch" not in _issues(check_annotation_file(root / "ann.json", root / "img", exif="apply"))


def test_16bit_images_are_a_warning_and_32bit_ones_an_error(coco_dir) -> None:
    root = coco_dir()
    Image.fromarray(np.full((50, 30), 40000, np.uint16)).save(root / "img" / "b.png")
    Image.fromarray(np.full((30, 40), 0.5, np.float32)).save(root / "img" / "a.jpg", format="TIFF")
    issues = _issues(check_annotation_file(root / "ann.json", root / "img"))
    assert issues["high_bit_depth_image"].severity == "warning"
    assert issues["high_bit_depth_image"].message == (
        "1 image(s) have 16 bits per channel: reduced to 8 bits when loaded (the top byte, v // 256)")
    assert issues["high_bit_depth_image"].examples == [f"image 11: {root / 'img' / 'b.png'}"]
    refused = issues["unsupported_bit_depth"]
    assert refused.severity == "error" and refused.message == "1 image file(s) have pixels lightdet does not read"
    assert "32-bit float pixels (PIL mode 'F')" in refused.examples[0]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_box_coordinates_are_an_error(coco_dir, value: float) -> None:
    data = default_coco()
    data["annotations"] = [a for a in data["annotations"] if a["id"] != 4]
    data["annotations"][0]["bbox"][2] = value
    root = coco_dir(data)
    report = check_annotation_file(root / "ann.json", root / "img")
    issue = _issues(report)["non_finite_box"]
    assert issue.severity == "error"
    assert issue.message == "1 box(es) have NaN or infinite coordinates (loading the file fails)"
    assert issue.examples == [f"annotation 1 (image 10): bbox [2, 3, {value}, 8]"]
    assert report.errors == 1


def test_workers_give_the_same_report_and_advance_the_progress(coco_dir) -> None:
    root = _broken(coco_dir)
    advanced: list[tuple[int, int]] = []
    alone = check_annotation_file(root / "ann.json", root / "img", workers=0)
    pooled = check_annotation_file(root / "ann.json", root / "img", workers=2,
                                   progress=lambda done, total: advanced.append((done, total)))
    assert pooled.to_dict() == alone.to_dict() and advanced == [(1, 3), (2, 3), (3, 3)]


def test_the_cli_fails_on_broken_images_and_prints_them(coco_dir, capsys) -> None:
    root = _broken(coco_dir)
    assert main(["check", str(root / "ann.json"), "--img-dir", str(root / "img"), "--workers", "2", "--json"]) == 1
    (report,) = json.loads(capsys.readouterr().out)
    assert {i["code"] for i in report["issues"]} >= {"truncated_image", "unreadable_image", "exif_orientation"}
    assert main(["check", str(root / "ann.json"), "--img-dir", str(root / "img"), "--exif", "apply"]) == 1
    out = capsys.readouterr().out
    assert "ERROR truncated_image: 1 image file(s) are truncated" in out
    assert "with dataset.exif=apply they are rotated" in out


def test_malformed_entries_are_listed_and_stop_the_other_checks(coco_dir) -> None:
    data = default_coco()
    data["annotations"][0]["bbox"] = [2, 3, "x", 8]
    data["images"][2]["height"] = -20
    root = coco_dir(default_coco())
    (root / "ann.json").write_text(json.dumps(data))
    issues = _issues(check_annotation_file(root / "ann.json", root / "img"))
    assert set(issues) == {"malformed_image", "malformed_annotation"}
    assert issues["malformed_image"].examples == ["image 12 (images[2]): `height` must be a positive integer, got '-20'"]
    assert issues["malformed_annotation"].message == (
        "1 `annotations` entr(ies) lack a key or hold a value of the wrong type: nothing else was checked")


def test_segmentations_that_cannot_be_rasterised_are_a_warning(coco_dir) -> None:
    data = default_coco()
    data["annotations"][2]["segmentation"] = {"size": [50, 30], "counts": "corrupt"}
    root = coco_dir(data)
    issue = _issues(check_annotation_file(root / "ann.json", root / "img"))["bad_segmentation"]
    assert issue.severity == "warning"
    assert issue.examples == ["annotation 3 (image 11): its RLE `counts` must be a compressed string or run lengths "
                              "(non-negative integers) adding up to height x width = 1500, got 'corrupt'"]
