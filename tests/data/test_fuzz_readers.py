"""Fuzzing the COCO, middle, VOC and YOLO readers and ``check`` with corruptions of valid files (truncation, byte
flips, wrong types, missing keys, NaN): a reader either reads the file or raises a ``ValueError`` / ``OSError``
whose message names a file of the dataset; ``check`` never raises. Bounded (a few examples per reader, no
deadline) and deterministic (``derandomize``)."""

from __future__ import annotations

import copy
import json
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from data_helpers import default_coco
from format_helpers import middle_data, write_middle, write_voc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pycocotools import mask as mask_utils

from lightdet.data import CocoDataset, MiddleDataset, VocDataset
from lightdet.data.check import check_annotation_file
from lightdet.data.converters import yolo_to_coco

FUZZ = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))

# values that are wrong somewhere: other types, empty containers, NaN and infinities, huge numbers
WRONG = st.sampled_from([
    None, "abc", "", -1, 0, 2.5, float("nan"), float("inf"), -float("inf"), [], {}, [1, 2], [[1, "x"]], 1e300,
    2**70, True, {"counts": "0a1b", "size": [30, 40]}, {"counts": [5, -3], "size": [30, 40]},
])  # fmt: skip
TEXT_WRONG = st.sampled_from(["abc", "", "nan", "inf", "-5", "1e999", "3.5", "0", "\x00", "9" * 30])


# -- corruptions ----------------------------------------------------------------------------------------
def _slots(node: Any) -> list[tuple[Any, Any]]:
    """Every ``(container, key)`` of a JSON tree, parents before children."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    out = []
    for key, child in items:
        out.append((node, key))
        out += _slots(child)
    return out


@st.composite
def json_edits(draw: st.DrawFn, doc: Any) -> Any:
    """``doc`` with one to three values replaced by a wrong one or deleted (or the top level replaced)."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(doc)
        if not slots:
            return copy.deepcopy(draw(WRONG))
        container, key = slots[draw(st.integers(0, len(slots) - 1))]
        if draw(st.booleans()):
            del container[key]
        else:
            container[key] = copy.deepcopy(draw(WRONG))  # the pool's lists and dicts stay as they are
    return doc


@st.composite
def byte_edits(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` truncated, or with one to four bytes replaced."""
    if not data or draw(st.booleans()):
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
    return bytes(out)


def _corrupt_json(draw: st.DrawFn, path: Path, doc: Any) -> None:
    if draw(st.booleans()):
        path.write_text(json.dumps(draw(json_edits(doc))))
    else:
        path.write_bytes(draw(byte_edits(json.dumps(doc).encode())))


def _corrupt_an_image(draw: st.DrawFn, folder: Path) -> None:
    """Sometimes (one time in four) truncates or flips bytes of one image of ``folder``."""
    images = sorted(folder.iterdir())
    if draw(st.integers(0, 3)) == 0:
        path = images[draw(st.integers(0, len(images) - 1))]
        path.write_bytes(draw(byte_edits(path.read_bytes())))


# -- the contract ---------------------------------------------------------------------------------------
@contextmanager
def _dataset_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz") as folder:
        yield Path(folder)


def _named_or_fine(read: Callable[[], Any], root: Path) -> None:
    """``read()`` succeeds, or raises ValueError / OSError naming a file under ``root``."""
    try:
        read()
    except (ValueError, OSError) as err:
        assert str(root) in str(err), f"{type(err).__name__} names no file of the dataset: {err}"


def _load_all(dataset: Any) -> None:
    for i in range(len(dataset)):
        dataset[i]


def _check_never_raises(ann_file: Path, img_dir: Path | None) -> None:
    report = check_annotation_file(ann_file, img_dir)
    json.dumps(report.to_dict())  # --json prints it


def _coco_with_compressed_rle() -> dict[str, Any]:
    """The data tests' COCO fixture, one mask as a compressed RLE string (what pycocotools crashes on when
    it is corrupt)."""
    data = default_coco()
    square = np.zeros((30, 40), np.uint8, order="F")
    square[5:25, 20:35] = 1
    rle = mask_utils.encode(square)
    data["annotations"][1]["segmentation"] = {"size": [30, 40], "counts": rle["counts"].decode()}
    return data


# -- readers --------------------------------------------------------------------------------------------
@FUZZ
@given(st.data())
def test_coco_reader_and_check(coco_dir_factory, data: st.DataObject) -> None:
    with _dataset_dir() as root:
        coco = _coco_with_compressed_rle()
        coco_dir_factory(root, coco)
        _corrupt_json(data.draw, root / "ann.json", coco)
        _corrupt_an_image(data.draw, root / "img")
        _named_or_fine(lambda: _load_all(CocoDataset(root / "ann.json", root / "img", with_mask=True)), root)
        _check_never_raises(root / "ann.json", root / "img")


@FUZZ
@given(st.data())
def test_middle_reader_and_check(data: st.DataObject) -> None:
    with _dataset_dir() as root:
        doc = middle_data()
        doc["images"][0]["ann"]["segmentations"] = [[[2, 3, 12, 3, 12, 11, 2, 11]], [[20, 5, 35, 5, 35, 25]]]
        doc["images"][1]["ann"]["segmentations"] = [{"size": [50, 30], "counts": [300, 30, 1170]}]
        path = write_middle(root, doc)
        _corrupt_json(data.draw, path, doc)
        _named_or_fine(lambda: _load_all(MiddleDataset(path, root / "img", with_mask=True)), root)
        _check_never_raises(path, root / "img")


def _edit_xml(draw: st.DrawFn, path: Path) -> None:
    """Sets the text of one element of a VOC XML file to a wrong value, or removes the element."""
    tree = ET.parse(path)
    parent_of = {child: parent for parent in tree.iter() for child in parent}
    element = draw(st.sampled_from(list(parent_of)))
    if draw(st.booleans()):
        parent_of[element].remove(element)
    else:
        element.text = draw(TEXT_WRONG)
    tree.write(path)


@FUZZ
@given(st.data())
def test_voc_reader_and_check(data: st.DataObject) -> None:
    with _dataset_dir() as root:
        split = write_voc(root / "VOC2007")
        target = data.draw(st.sampled_from([split, *sorted((root / "VOC2007" / "Annotations").iterdir())]))
        if target.suffix == ".xml" and data.draw(st.booleans()):
            _edit_xml(data.draw, target)
        else:
            target.write_bytes(data.draw(byte_edits(target.read_bytes())))
        _named_or_fine(lambda: _load_all(VocDataset(split, classes=["cat", "dog", "bird"])), root)
        _check_never_raises(split, None)


def _yolo_dataset(root: Path) -> tuple[Path, list[Path]]:
    """``root/images/{a,b}.jpg`` and their label files under ``root/labels``."""
    (root / "images").mkdir()
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    labels = {"a": "0 0.5 0.5 0.2 0.3\n1 0.25 0.5 0.1 0.1\n", "b": "1 0.4 0.6 0.5 0.5\n"}
    for name, text in labels.items():
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(root / "images" / f"{name}.jpg")
        (root / "labels" / f"{name}.txt").write_text(text)
    return root / "images", sorted((root / "labels").iterdir())


@FUZZ
@given(st.data())
def test_yolo_reader_and_check(data: st.DataObject) -> None:
    with _dataset_dir() as root:
        images, label_files = _yolo_dataset(root)
        target = data.draw(st.sampled_from(label_files))
        if data.draw(st.booleans()):
            tokens = target.read_text().split(" ")
            tokens[data.draw(st.integers(0, len(tokens) - 1))] = data.draw(TEXT_WRONG)
            target.write_text(" ".join(tokens))
        else:
            target.write_bytes(data.draw(byte_edits(target.read_bytes())))
        out = root / "coco.json"
        _named_or_fine(lambda: yolo_to_coco(images, out, classes=["cat", "dog"]), root)
        if out.is_file():
            _check_never_raises(out, images)


@pytest.fixture
def coco_dir_factory() -> Callable[[Path, dict[str, Any]], None]:
    """``make(root, data)`` writing ``root/ann.json`` and the images of ``data`` into ``root/img``."""

    def make(root: Path, data: dict[str, Any]) -> None:
        (root / "img").mkdir()
        (root / "ann.json").write_text(json.dumps(data))
        rng = np.random.default_rng(0)
        for img in data["images"]:
            pixels = rng.integers(0, 255, (img["height"], img["width"], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "img" / img["file_name"])

    return make
