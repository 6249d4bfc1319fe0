"""Decoding image files to ``uint8 [3, H, W]`` RGB, and the error that names a file that cannot be used.

Decoders: torchvision for JPEG and PNG (the fastest here, see :mod:`lightdet.data.transforms`), PIL for
every other format and as the second opinion when torchvision refuses a file. A PNG goes to torchvision
only when its chunks are whole and their CRCs right: torchvision's PNG decoder kills the process on a
corrupt file (a libpng error, then a segmentation fault: 710 of 1500 byte-flipped PNGs here, torchvision
0.29, every one of them caught by that check), where PIL raises an error.

Bit depth: 8-bit images are read as they are. 16-bit images (16-bit PNG, 16-bit TIFF) are **reduced to
8 bits by keeping the top byte**, ``v8 = v16 // 256``, so the full 16-bit range maps onto the full 8-bit
range (PIL does the same for 16-bit RGB; a sensor that fills only the low bits comes out dark: convert
such files yourself, with the contrast stretch they need). 32-bit integer and float images (PIL modes
``I`` and ``F``) have no range that could be assumed and are refused, naming the file.

EXIF orientation (``exif``): a camera stores pixels as the sensor read them and writes how to rotate
them for display into the EXIF ``Orientation`` tag (values 2-8; 1 or no tag: as stored).

- ``"ignore"`` (lightdet's default): the pixels as stored. Right for annotations made on the stored
  pixels, which is what COCO's and VOC's files describe (their ``width``/``height`` are the stored
  size) and what tools that read pixels without EXIF write; existing datasets keep reading as before.
- ``"apply"``: the image as a viewer displays it, rotated and flipped by the tag. Right for annotations
  drawn in a tool that displays photos upright (most browser-based labelling tools and labelme do);
  ``width``/``height`` of the annotation file are then the displayed size.

TIFF files are the exception: PIL always applies their orientation (a tag of the TIFF format itself).

A mismatch shows up as an image whose decoded size is its annotation size transposed;
:class:`~lightdet.data.LoadImage` says which setting fits, and ``lightdet-data check`` lists every
image that carries an orientation tag.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image

__all__ = [
    "BadImageError", "BadImageKind", "ExifMode", "ImageInfo", "MissingImageError", "check_exif_mode",
    "image_orientation", "orient", "read_image", "read_image_info", "size_mismatch_reason", "swaps_sides",
]

ExifMode = Literal["ignore", "apply"]
"""How EXIF orientation is treated: ``"ignore"`` (the stored pixels) or ``"apply"`` (as displayed)."""

BadImageKind = Literal["missing", "empty", "unreadable", "not_an_image", "truncated", "corrupt", "bit_depth",
                       "size_mismatch"]

_ORIENTATION = 0x0112  # the EXIF tag
_TRANSPOSED = (5, 6, 7, 8)  # orientations that swap width and height
_16BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
_REFUSED_MODES = {"I": "32-bit integer", "F": "32-bit float"}


class BadImageError(ValueError):
    """An image file that cannot be used for training: missing, unreadable, corrupt, of an unsupported bit
    depth, or of another size than its annotation file says.

    The message names the file, and the image id and the dataset when they are known. A missing file
    raises :class:`MissingImageError`, which is also a ``FileNotFoundError``.

    Attributes:
        file: the image file. reason: what is wrong, as a phrase after the file name. kind: a stable
        code (:data:`BadImageKind`). image_id, dataset: where it came from (None when unknown).
    """

    def __init__(
        self, message: str, *, file: str = "", reason: str = "", kind: BadImageKind = "unreadable",
        image_id: int | None = None, dataset: str | None = None,
    ) -> None:
        super().__init__(message)
        self.file, self.reason, self.kind = file, reason, kind
        self.image_id, self.dataset = image_id, dataset

    @classmethod
    def of(cls, file: str | PathLike, reason: str, kind: BadImageKind) -> BadImageError:
        """The error for ``file``, before its image id and dataset are known."""
        error_type = MissingImageError if kind == "missing" else BadImageError
        return error_type(f"file {str(file)!r} {reason}", file=str(file), reason=reason, kind=kind)

    def located(self, *, image_id: int | None = None, dataset: str | None = None, hint: str = "") -> BadImageError:
        """The same error naming the image id and/or the dataset too (``hint`` is appended)."""
        image_id = self.image_id if image_id is None else image_id
        dataset = self.dataset if dataset is None else dataset
        message = f"file {self.file!r} {self.reason}"
        if image_id is not None:
            message = f"image {image_id}: {message}"
        if dataset is not None:
            message = f"{dataset}: {message}"
        return type(self)(message + hint, file=self.file, reason=self.reason, kind=self.kind, image_id=image_id,
                          dataset=dataset)


class MissingImageError(BadImageError, FileNotFoundError):
    """An image file that does not exist."""


def check_exif_mode(exif: str, owner: str) -> ExifMode:
    """``exif`` when it is ``"ignore"`` or ``"apply"``; else ``ValueError`` naming ``owner``."""
    if exif not in ("ignore", "apply"):
        raise ValueError(f"{owner}: exif must be 'ignore' or 'apply', got {exif!r}")
    return exif  # type: ignore[return-value]


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadImageError.of(path, "not found", "missing") from None
    except OSError as err:
        raise BadImageError.of(path, f"cannot be read ({err.strerror or err})", "unreadable") from None
    if not data:
        raise BadImageError.of(path, "is empty (0 bytes)", "empty")
    return data


def _to_uint8(image: Tensor) -> Tensor:
    """``uint16 -> uint8`` as ``v // 256`` (the top byte); ``uint8`` unchanged."""
    if image.dtype == torch.uint8:
        return image
    return (image.to(torch.int32) >> 8).to(torch.uint8)


@dataclass(frozen=True)
class ImageInfo:
    """What decoding a file found besides its pixels.

    Attributes:
        bits: bits per channel in the file (8; 16 for a file reduced to 8 bits).
        orientation: its EXIF orientation tag (1 when none; see :func:`image_orientation`).
    """

    bits: int = 8
    orientation: int = 1


def _pil_bits(img: Image.Image, data: bytes) -> int:
    """Bits per channel of a PIL image's file (PIL decodes 16-bit RGB PNG and TIFF to 8 bits, mode ``RGB``)."""
    if img.mode in _16BIT_MODES or (data[:8] == _PNG and len(data) > 24 and data[24] == 16):  # IHDR bit depth
        return 16
    per_sample = getattr(img, "tag_v2", {}).get(258)  # TIFF BitsPerSample
    samples = per_sample if isinstance(per_sample, tuple) else (per_sample,)
    return 16 if 16 in samples else 8


def _pil_pixels(img: Image.Image, path: Path) -> Tensor:
    """A loaded PIL image -> ``uint8 [3, H, W]`` RGB (16-bit reduced, 32-bit refused)."""
    if img.mode in _REFUSED_MODES:
        raise BadImageError.of(
            path, f"has {_REFUSED_MODES[img.mode]} pixels (PIL mode {img.mode!r}), whose range lightdet cannot "
            "assume: convert it to 8 (or 16) bits per channel", "bit_depth")
    if img.mode in _16BIT_MODES:
        gray = torch.from_numpy(np.array(img).astype(np.uint16))
        return _to_uint8(gray).expand(3, -1, -1).contiguous()
    return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).contiguous()


def _pil_decode(path: Path, data: bytes) -> tuple[Tensor, int]:
    """Decodes with PIL: the pixels and the file's bits per channel; every decoder failure becomes a
    :class:`BadImageError` naming the file."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return _pil_pixels(img, path), _pil_bits(img, data)
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError.of(path, "is not an image (neither torchvision nor PIL recognises its format)",
                               "not_an_image") from None
    except MemoryError:
        raise
    except Exception as err:  # PIL reports a broken file with many exception types
        if "truncated" in str(err).lower():
            raise BadImageError.of(path, f"is truncated ({err})", "truncated") from None
        raise BadImageError.of(path, f"is corrupt ({type(err).__name__}: {err})", "corrupt") from None


def _png_intact(data: bytes) -> bool:
    """Whether a PNG's chunks, up to ``IEND``, are complete with the right CRCs."""
    pos = len(_PNG)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        end = pos + 12 + length
        if end > len(data) or zlib.crc32(data[pos + 4 : end - 4]) != struct.unpack(">I", data[end - 4 : end])[0]:
            return False
        if data[pos + 4 : pos + 8] == b"IEND":
            return True
        pos = end
    return False


def _decode(path: Path, data: bytes) -> tuple[Tensor, int]:
    """The stored pixels ``uint8 [3, H, W]`` and the file's bits per channel."""
    if not (data.startswith(_JPEG) or (data.startswith(_PNG) and _png_intact(data))):
        return _pil_decode(path, data)
    try:
        image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError):  # a broken file: PIL says what is wrong
        return _pil_decode(path, data)
    return _to_uint8(image), 16 if image.dtype == torch.uint16 else 8


def read_image(path: str | PathLike, exif: ExifMode = "ignore") -> Tensor:
    """Decodes an image file to ``uint8 [3, H, W]`` RGB (see the module docstring for bit depths and ``exif``).

    Raises:
        BadImageError: naming the file, when it is missing (also a ``FileNotFoundError``), unreadable,
            empty, not an image, truncated or corrupt, or of 32-bit pixels.
    """
    path = Path(path)
    data = _read_bytes(path)
    image, _ = _decode(path, data)
    return orient(image, _orientation(data)) if exif == "apply" else image


def read_image_info(path: str | PathLike, exif: ExifMode = "ignore") -> tuple[Tensor, ImageInfo]:
    """:func:`read_image`, and what the file is besides its pixels (for ``lightdet-data check``)."""
    path = Path(path)
    data = _read_bytes(path)
    image, bits = _decode(path, data)
    info = ImageInfo(bits=bits, orientation=_orientation(data))
    return (orient(image, info.orientation) if exif == "apply" else image), info


# EXIF orientation -> the operation on [C, H, W] that displays the stored pixels upright (PIL's exif_transpose)
_ORIENT: dict[int, Callable[[Tensor], Tensor]] = {
    2: lambda x: x.flip(-1),
    3: lambda x: x.flip(-1, -2),
    4: lambda x: x.flip(-2),
    5: lambda x: x.transpose(-1, -2),
    6: lambda x: torch.rot90(x, k=-1, dims=(-2, -1)),
    7: lambda x: x.transpose(-1, -2).flip(-1, -2),
    8: lambda x: torch.rot90(x, k=1, dims=(-2, -1)),
}


def orient(image: Tensor, orientation: int) -> Tensor:
    """``[C, H, W]`` stored pixels -> as displayed for an EXIF ``orientation`` (1-8; 1 returns ``image``)."""
    op = _ORIENT.get(orientation)
    return image if op is None else op(image).contiguous()


def _orientation(data: bytes) -> int:
    """The EXIF orientation of an encoded image (1 for none, a TIFF, or an unreadable header)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            value = 1 if img.format == "TIFF" else img.getexif().get(_ORIENTATION, 1)
    except Exception:  # no readable header, no orientation; decoding reports the real problem
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def image_orientation(path: str | PathLike) -> int:
    """The EXIF ``Orientation`` tag of an image file: what ``exif="apply"`` rotates by (1: nothing).

    1 when the file has no tag, cannot be read, or is a TIFF: PIL applies a TIFF's orientation (a tag of
    the format itself) when decoding, whatever ``exif`` says.
    """
    try:
        data = Path(path).read_bytes()
    except OSError:
        return 1
    return _orientation(data)


def swaps_sides(orientation: int) -> bool:
    """Whether displaying an image of this EXIF orientation swaps its width and height."""
    return orientation in _TRANSPOSED


def size_mismatch_reason(hw: tuple[int, int], height: int, width: int, orientation: int, exif: ExifMode) -> str:
    """Why an image decoded to ``hw = (H, W)`` differs from its annotation's ``height``/``width``; when its
    EXIF ``orientation`` explains the difference (the sides swapped), which ``exif`` setting fits."""
    said = f"the annotation file says height={height}, width={width}"
    if not (swaps_sides(orientation) and hw == (width, height)):
        return f"decodes to (H, W) {hw} but {said}"
    if exif == "apply":
        return (f"decodes to (H, W) {hw} after applying its EXIF orientation {orientation} (exif=apply) but "
                f"{said}: it was annotated as stored; set dataset.exif=ignore")
    return (f"decodes to (H, W) {hw} but {said}: it was annotated as displayed (EXIF orientation "
            f"{orientation}); set dataset.exif=apply")
