"""Uploaded images: their type told by content, their size checked before decoding, read as ``read_image`` reads files.

A client names its files as it likes, so the name never decides how a file
is read: :func:`sniff` looks at the first bytes (the PNG and JPEG
signatures, ``DICM`` after the 128-byte DICOM preamble, the NIfTI-1/2 header
size and magic, gzip-compressed or not). :func:`pixel_count` then reads only
the header (PNG ``IHDR``, the JPEG frame header, DICOM attributes, NIfTI
dimensions), so that a decompression bomb is refused before it is decoded:
a 2 MB ``.nii.gz`` of zeros can declare gigabytes of voxels. Only then is
the upload written to a temporary file named with its real type and read by
:func:`brainmri.data.io.read_image`, the reader every command uses.

Every refusal is a :class:`RequestError` carrying the HTTP status the API
answers with.

References
----------
PNG: ISO/IEC 15948:2004, section 11.2.2 (IHDR). JPEG: ITU-T T.81, annex
B.1.1.3 (markers) and B.2.2 (frame header). DICOM: PS3.10, section 7.1
(preamble and prefix). NIfTI-1: https://nifti.nimh.nih.gov/nifti-1 ;
NIfTI-2: https://nifti.nimh.nih.gov/nifti-2.
"""

from __future__ import annotations

import gzip
import io
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainmri.data.io import degenerate_reason, read_image
from brainmri.errors import BrainMRIError, DataError

#: Upload types: the name :func:`sniff` returns -> the suffix :func:`~brainmri.data.io.read_image` reads it by.
SUFFIXES = {"png": ".png", "jpeg": ".jpg", "dicom": ".dcm", "nifti": ".nii", "nifti-gz": ".nii.gz"}

#: Bytes of a header that :func:`sniff` and :func:`pixel_count` look at (a NIfTI-2 header is 540).
_HEAD = 540

# Pillow's decompression-bomb guard is one global that brainmri.data.io switches off while it applies its own
# limit; reads from several worker threads take turns so that the switch of one never meets the open of another.
_READ_LOCK = threading.Lock()


class RequestError(BrainMRIError):
    """A request the API refuses: the HTTP ``status``, a one-line message, and headers to send.

    Parameters
    ----------
    status : int
    message : str
    headers : dict, optional
    """

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


@dataclass(frozen=True)
class Upload:
    """One uploaded file.

    Attributes
    ----------
    name : str
        How messages name it: its position and the client's file name.
    filename : str or None
        The client's file name.
    data : bytes
    kind : str
        A key of :data:`SUFFIXES`.
    """

    name: str
    filename: str | None
    data: bytes
    kind: str


def sniff(data: bytes) -> str | None:
    """The upload type of ``data`` by its content (a key of :data:`SUFFIXES`), or None.

    >>> sniff(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8)), sniff(b"\\xff\\xd8\\xff\\xe0"), sniff(b"GIF89a")
    ('png', 'jpeg', None)
    >>> sniff(bytes(128) + b"DICM")
    'dicom'
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[128:132] == b"DICM":
        return "dicom"
    if data.startswith(b"\x1f\x8b"):
        return "nifti-gz" if _nifti_header(_gunzip_head(data)) is not None else None
    return "nifti" if _nifti_header(data[:_HEAD]) is not None else None


def _gunzip_head(data: bytes) -> bytes:
    """The first :data:`_HEAD` bytes of gzip ``data`` (no more is decompressed), or b"" when it is not gzip."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
            return fh.read(_HEAD)
    except (OSError, EOFError, zlib.error):
        return b""


def _nifti_header(head: bytes):
    """The nibabel header of a single-file NIfTI-1 or NIfTI-2 ``head``, or None."""
    from nibabel.nifti1 import Nifti1Header
    from nibabel.nifti2 import Nifti2Header

    for cls, size, magic_at, magic in ((Nifti1Header, 348, 344, b"n+1\0"), (Nifti2Header, 540, 4, b"n+2\0")):
        if len(head) < size or head[magic_at : magic_at + 4] != magic:
            continue
        for order in "<>":
            if struct.unpack(f"{order}i", head[:4])[0] == size:
                try:
                    return cls.from_fileobj(io.BytesIO(head[:size]))
                except Exception:  # nibabel raises several types for an inconsistent header
                    return None
    return None


def pixel_count(data: bytes, kind: str) -> int | None:
    """The pixels (or voxels) ``data`` holds once decoded, read from its header; None when the header is unreadable.

    >>> png = b"\\x89PNG\\r\\n\\x1a\\n" + b"\\x00\\x00\\x00\\x0dIHDR" + struct.pack(">II", 30000, 30000)
    >>> pixel_count(png, "png")
    900000000
    """
    if kind == "png":
        return int(np.prod(struct.unpack(">II", data[16:24]), dtype=np.int64)) if data[12:16] == b"IHDR" else None
    if kind == "jpeg":
        return _jpeg_pixels(data)
    if kind == "dicom":
        import pydicom

        try:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            return int(ds.get("Rows", 0)) * int(ds.get("Columns", 0)) * int(ds.get("NumberOfFrames", 1) or 1)
        except Exception:  # pydicom raises many types for a damaged header; read_image then says what is wrong
            return None
    header = _nifti_header(_gunzip_head(data) if kind == "nifti-gz" else data[:_HEAD])
    return int(np.prod(header.get_data_shape(), dtype=np.int64)) if header is not None else None


def _jpeg_pixels(data: bytes) -> int | None:
    """Width x height from the first start-of-frame marker of a JPEG, or None."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn: precision, height, width
            if at + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return height * width
        at += 2 + length
    return None


def check_upload(name: str, filename: str | None, data: bytes, *, max_pixels: int) -> Upload:
    """An :class:`Upload` of ``data``, its type and pixel count checked (nothing is decoded).

    Raises
    ------
    RequestError
        400 for an empty file, 415 for a type other than PNG, JPEG, DICOM
        or NIfTI, 413 for more pixels than ``max_pixels``.
    """
    if not data:
        raise RequestError(400, f"{name}: empty file (0 bytes); send the image's content")
    kind = sniff(data)
    if kind is None:
        raise RequestError(
            415,
            f"{name}: not a PNG, JPEG, DICOM (with its 128-byte preamble and DICM prefix) or "
            f"NIfTI image by its content (it begins {data[:8]!r}); the file name does not count, "
            "send one of those types",
        )
    pixels = pixel_count(data, kind)
    if pixels is not None and pixels > max_pixels:
        raise RequestError(
            413,
            f"{name}: {kind} image of {pixels:,} pixels, above the limit of {max_pixels:,} "
            "(a decompression bomb, or a larger scan than this server takes); send a smaller "
            "image, or start the server with a higher --max-pixels",
        )
    return Upload(name, filename, data, kind)


def read_upload(upload: Upload, folder: Path, index: int, *, max_pixels: int) -> np.ndarray:
    """Decode ``upload`` as a 2D slice, through a temporary file in ``folder`` (the caller deletes ``folder``).

    Returns
    -------
    ndarray of float32, shape (H, W)

    Raises
    ------
    RequestError
        422 for a corrupt file, a DICOM without pixel data, a colour image,
        a volume or series of several slices, or an image that cannot be a
        scan (blank, or a side below 16 px).
    """
    path = folder / f"{index}{SUFFIXES[upload.kind]}"
    path.write_bytes(upload.data)
    try:
        with _READ_LOCK:
            image, _ = read_image(path, max_pixels=max_pixels)
    except DataError as exc:
        raise RequestError(422, str(exc).replace(str(path), upload.name)) from None
    if image.ndim != 2:
        raise RequestError(
            422,
            f"{upload.name}: a {upload.kind} volume or series of shape {'x'.join(map(str, image.shape))}, "
            "not one slice; send one 2D slice per file",
        )
    problem = degenerate_reason(image)
    if problem:  # as the audit and predict refuse it: no class for an image without anatomy
        raise RequestError(422, f"{upload.name}: {problem.removesuffix('; remove it')}; send an MRI slice")
    return image
