"""Class lists (``classes.txt`` and lists): a UTF-8 BOM and blank lines are handled; duplicated and blank names
are refused, naming them and where they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightdet.data import CocoDataset
from lightdet.data.classes import load_class_names


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "classes.txt"
    path.write_bytes(data)
    return path


def test_a_utf8_bom_is_not_part_of_the_first_name(tmp_path: Path) -> None:
    path = _write(tmp_path, "\ufeffcircle\nsquare\n".encode())
    assert load_class_names(path) == ["circle", "square"]
    assert load_class_names(["\ufeffcircle", "square"]) == ["circle", "square"]


def test_blank_lines_comments_and_windows_line_ends_are_skipped(tmp_path: Path) -> None:
    path = _write(tmp_path, b"\r\ncircle\r\n   \r\n\t\r\n# a comment\r\nsquare  # trailing comment\r\n\r\n")
    assert load_class_names(path) == ["circle", "square"]


def test_duplicates_in_a_file_are_named_with_their_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, b"circle\nsquare\n\ncircle \n")
    with pytest.raises(ValueError, match=r"classes\.txt' lists 'circle' more than once \(lines 1 and 4\)"):
        load_class_names(path)


def test_duplicates_in_a_list_are_named_with_their_positions() -> None:
    with pytest.raises(ValueError, match=r"lists 'cat' more than once \(positions 1 and 3\)"):
        load_class_names(["cat", "dog", "cat"])


@pytest.mark.parametrize("blank", ["", "   ", "\t", "\u3000"])
def test_a_blank_name_in_a_list_is_named_by_position(blank: str) -> None:
    with pytest.raises(ValueError, match=r"position 2 is blank \(" + repr(blank).replace("\\", "\\\\") + r"\)"):
        load_class_names(["cat", blank, "dog"])


def test_an_empty_file_and_a_file_of_blank_lines_are_refused(tmp_path: Path) -> None:
    for data in (b"", b"\xef\xbb\xbf", b"\n  \n# only a comment\n"):
        with pytest.raises(ValueError, match=r"classes\.txt' is empty: list at least one class name"):
            load_class_names(_write(tmp_path, data))


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"classes file '.*classes\.txt' is not UTF-8 text \(line 1: invalid continuation byte\)"):
        load_class_names(path)


def test_a_dataset_reads_a_windows_classes_file(coco_dir, tmp_path: Path) -> None:
    root = coco_dir()
    path = _write(tmp_path, "\ufeffdog\r\n\r\ncat\r\n".encode())
    ds = CocoDataset(root / "ann.json", root / "img", classes=path)
    assert ds.class_names == ["dog", "cat"] and ds.cat_ids == [2, 1]
