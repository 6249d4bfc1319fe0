"""``lightdet-data check``'s image pass: every image decoded the way training decodes it, in worker processes.

Each file is read with :func:`~lightdet.data.image_io.read_image_info` (what :class:`~lightdet.data.LoadImage`
runs), so a file that passes here loads in training. Findings come back per image as :class:`ImageFinding`
and become issues of the split's report: missing, truncated, unreadable and 32-bit files, sizes that differ
from the annotation file (saying when EXIF orientation explains it), 16-bit files (reduced to 8 bits) and
files that carry an EXIF orientation tag.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightdet.data.image_io import BadImageError, ExifMode, read_image_info, size_mismatch_reason

if TYPE_CHECKING:
    from lightdet.data.check import SplitReport

__all__ = ["ImageFinding", "Progress", "check_image_files", "inspect_image", "inspect_images"]

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each image."""

_SHOWN = {2: "shown mirrored", 3: "shown rotated 180°", 4: "shown upside down", 5: "shown transposed",
          6: "shown rotated 90° clockwise", 7: "shown transversed", 8: "shown rotated 90° counter-clockwise"}
# a decode failure's kind -> (issue code, message after the count)
_FAILURES = {
    "missing": ("missing_image", "image files are missing"),
    "truncated": ("truncated_image", "image file(s) are truncated"),
    "bit_depth": ("unsupported_bit_depth", "image file(s) have pixels lightdet does not read"),
}
_UNREADABLE = ("unreadable_image", "image files cannot be read")


@dataclass(frozen=True)
class ImageFinding:
    """What decoding one image file found (it comes back from a worker process).

    Attributes:
        hw: the decoded ``(H, W)`` under the ``exif`` setting; None when the file cannot be decoded.
        bits: bits per channel of the file. orientation: its EXIF orientation tag (1: none).
        kind: why it cannot be decoded (a :data:`~lightdet.data.image_io.BadImageKind`), else None.
        reason: the failure as a phrase after the file name.
    """

    hw: tuple[int, int] | None = None
    bits: int = 8
    orientation: int = 1
    kind: str | None = None
    reason: str = ""


def inspect_image(path: str, exif: ExifMode = "ignore") -> ImageFinding:
    """Decodes one image file as training would and says what it found."""
    try:
        image, info = read_image_info(path, exif)
    except BadImageError as err:
        return ImageFinding(kind=err.kind, reason=err.reason)
    return ImageFinding((int(image.shape[1]), int(image.shape[2])), info.bits, info.orientation)


def inspect_images(
    paths: Sequence[str], exif: ExifMode = "ignore", workers: int = 0, progress: Progress | None = None
) -> list[ImageFinding]:
    """:func:`inspect_image` on every path, in ``workers`` processes (in this one for ``workers <= 1``)."""
    inspect = partial(inspect_image, exif=exif)
    if workers <= 1 or len(paths) < 2:
        return _collect(map(inspect, paths), len(paths), progress)
    chunk = max(1, min(64, len(paths) // (4 * workers)))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return _collect(pool.map(inspect, paths, chunksize=chunk), len(paths), progress)


def _collect(results: Iterable[ImageFinding], total: int, progress: Progress | None) -> list[ImageFinding]:
    findings = []
    for finding in results:
        findings.append(finding)
        if progress is not None:
            progress(len(findings), total)
    return findings


def check_image_files(
    report: SplitReport, images: Sequence[dict[str, Any]], folder: Path, *, exif: ExifMode = "ignore",
    workers: int = 0, progress: Progress | None = None,
) -> None:
    """Decodes the image of every ``images`` entry (COCO: ``id``, ``file_name``, ``width``, ``height``) under
    ``folder`` and adds what is wrong to ``report``."""
    paths = [str(folder / str(img["file_name"])) for img in images]
    findings = inspect_images(paths, exif, workers, progress)
    failed: dict[tuple[str, str], list[str]] = {}
    wrong_size, deep, rotated = [], [], []
    for img, path, found in zip(images, paths, findings):
        name = f"image {img['id']}: {path}"
        if found.kind is not None:
            key = _FAILURES.get(found.kind, _UNREADABLE)
            failed.setdefault(key, []).append(name if found.kind == "missing" else f"{name} {found.reason}")
            continue
        height, width = int(img["height"]), int(img["width"])
        if found.hw != (height, width):
            reason = size_mismatch_reason(found.hw, height, width, found.orientation, exif)  # type: ignore[arg-type]
            wrong_size.append(f"{name} {reason}")
        if found.bits > 8:
            deep.append(name)
        if found.orientation != 1:
            rotated.append(f"{name} (orientation {found.orientation}: {_SHOWN[found.orientation]})")
    for (code, what), examples in failed.items():
        report.add("error", code, f"{len(examples)} {what}", examples, len(examples))
    if wrong_size:
        report.add("error", "image_size_mismatch", f"{len(wrong_size)} images differ in size from the annotation "
                   "file", wrong_size, len(wrong_size))
    if deep:
        report.add("warning", "high_bit_depth_image", f"{len(deep)} image(s) have 16 bits per channel: reduced to 8 "
                   "bits when loaded (the top byte, v // 256)", deep, len(deep))
    if rotated:
        report.add("warning", "exif_orientation", _orientation_message(len(rotated), exif), rotated, len(rotated))


def _orientation_message(count: int, exif: ExifMode) -> str:
    head = f"{count} image(s) carry an EXIF orientation tag; with dataset.exif={exif} they are "
    if exif == "apply":
        return head + ("rotated as a photo viewer shows them, which is right when they were annotated as shown but "
                       "not for annotations of the stored pixels (as COCO and VOC files are); annotated as stored? "
                       "set dataset.exif=ignore")
    return head + ("read as stored, which is right when they were annotated as stored (as COCO and VOC files are) "
                   "but not as a photo viewer shows them; annotated as shown? set dataset.exif=apply")
