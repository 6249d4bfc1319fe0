"""Class lists and class matching, shared by the datasets and the evaluators.

A config's ``classes`` is a list of names, a single bare name, or a path to ``classes.txt``
(:func:`load_class_names`); :func:`match_categories` maps those names onto an annotation file's
categories, which is how a dataset turns category ids into labels ``0..K-1`` and how an evaluator
turns labels back into category ids.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path

__all__ = ["ClassesSpec", "load_class_names", "match_categories"]

ClassesSpec = str | PathLike | Sequence[str]

_BOM = "\ufeff"  # the byte-order mark some editors put before the first line


def load_class_names(classes: ClassesSpec) -> list[str]:
    """Returns the class names of a config's ``classes`` entry, in order.

    Accepts a list/tuple of names, a path to a UTF-8 text file with one name per line, or a single bare
    class name. In a file, a byte-order mark (as Windows editors write) is dropped, names are stripped,
    and blank lines and ``#`` comments are skipped. A bare string that is not an existing file is one
    class, never split into characters (MMDetection's ``classes = ('uav')`` trap).

    Raises:
        ValueError: naming the file or list and the line or position at fault: an empty list, a blank
            name in a list, a name given twice, a file that is not UTF-8, or a ``.txt`` path that does
            not exist.
    """
    if isinstance(classes, (str, PathLike)):
        path = Path(classes)
        if path.suffix == ".txt" or path.is_file():
            names, places = _read_classes_file(path)
            source, unit = f"classes file {str(path)!r}", "line"
        else:
            names, places, source, unit = [str(classes)], [1], f"classes {classes!r}", "position"
    else:
        names = [str(c) for c in classes]
        if names:
            names[0] = names[0].removeprefix(_BOM)
        places, source, unit = list(range(1, len(names) + 1)), f"classes {names!r}", "position"
    _check_class_names(names, places, source, unit)
    return names


def _read_classes_file(path: Path) -> tuple[list[str], list[int]]:
    """The names of a ``classes.txt`` file and their 1-based line numbers (blank lines and comments skipped)."""
    if not path.is_file():
        raise ValueError(f"classes file {str(path)!r} does not exist")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(f"classes file {str(path)!r} is not UTF-8 text (line {line}: {err.reason})") from None
    names, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.split("#", 1)[0].strip()
        if name:
            names.append(name)
            lines.append(number)
    return names, lines


def _check_class_names(names: list[str], places: list[int], source: str, unit: str) -> None:
    """Refuses an empty list, blank names and repeated names, naming the ``unit`` (line / position) of each."""
    if not names:
        raise ValueError(f"{source} is empty: list at least one class name")
    blank = next((i for i, n in enumerate(names) if not n.strip()), None)
    if blank is not None:
        raise ValueError(f"{source}: {unit} {places[blank]} is blank ({names[blank]!r}); a class needs a name")
    first: dict[str, int] = {}
    for name, place in zip(names, places):
        if name in first:
            raise ValueError(f"{source} lists {name!r} more than once ({unit}s {first[name]} and {place})")
        first[name] = place


def match_categories(
    classes: ClassesSpec | None,
    categories: Sequence[Mapping[str, object]],
    *,
    source: str,
    num_classes: int | None = None,
    strict: bool = False,
) -> tuple[list[str], list[int]]:
    """Maps configured class names onto an annotation file's categories.

    Args:
        classes: the configured classes (see :func:`load_class_names`); None takes every category of
            the file, ordered by id.
        categories: the file's ``categories`` entries (``{"id": int, "name": str}``).
        source: the annotation file, named in error messages.
        num_classes: when given, must equal the number of configured classes.
        strict: also require the file's category names, in id order, to equal the configured list.

    Returns:
        ``(class_names, cat_ids)``: names in label order and, per label, the file's category id.

    Raises:
        ValueError: naming ``source`` and the offending value, when the count differs from
            ``num_classes`` (or, with ``strict``, from the file's), when a configured name is not a
            category of the file (with close matches), when a name is ambiguous in the file, or (with
            ``strict``) when the order differs.
    """
    ordered = sorted(categories, key=lambda c: int(c["id"]))  # type: ignore[call-overload]
    file_names = [str(c["name"]) for c in ordered]
    if classes is None:
        if not file_names:
            raise ValueError(f"{source}: the file has no categories; configure `classes` explicitly")
        names = list(file_names)  # a name used by two categories fails in _check_names, naming the file
    else:
        names = load_class_names(classes)
    _check_counts(names, file_names, source, num_classes, strict)
    _check_names(names, file_names, source, strict)
    id_of = {str(c["name"]): int(c["id"]) for c in ordered}  # type: ignore[call-overload]
    return names, [id_of[n] for n in names]


def _check_counts(
    names: list[str], file_names: list[str], source: str, num_classes: int | None, strict: bool
) -> None:
    if num_classes is not None and int(num_classes) != len(names):
        raise ValueError(
            f"{source}: num_classes={num_classes} but {len(names)} classes are configured ({names}); "
            "derive it from the classes instead: num_classes: ${lightdet.num_classes:${dataset.classes}}"
        )
    if strict and len(file_names) != len(names):
        raise ValueError(
            f"{source} has {len(file_names)} categories {file_names} but {len(names)} classes are "
            f"configured {names} (strict_classes=True requires the same list)"
        )


def _check_names(names: list[str], file_names: list[str], source: str, strict: bool) -> None:
    missing = [n for n in names if n not in file_names]
    if missing:
        hints = []
        for n in missing:
            close = difflib.get_close_matches(n, file_names, n=3, cutoff=0.6)
            hints.append(f"{n!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""))
        raise ValueError(
            f"{source}: configured class(es) {', '.join(hints)} not among the file's categories; "
            f"the file has, in id order: {file_names}"
        )
    ambiguous = sorted({n for n in names if file_names.count(n) > 1})
    if ambiguous:
        raise ValueError(f"{source}: category name(s) {ambiguous} appear under several ids in the file")
    if strict and names != file_names:
        pos = next(i for i, (a, b) in enumerate(zip(names, file_names)) if a != b)
        raise ValueError(
            f"{source}: class order differs from the file's (strict_classes=True): position {pos} is "
            f"{names[pos]!r} in the config but {file_names[pos]!r} in the file; the file's order is "
            f"{file_names}"
        )
