""".npz files whose arrays can be memory-mapped where they lie.

An ``.npz`` is a zip of ``.npy`` files. Stored uncompressed, each array's bytes sit
contiguously in the file, so a read-only memory map of the file holds them all: a
million customers' factors and keys cost a process only the pages it touches.

numpy's ``savez`` places each member wherever the zip headers end, so the arrays start
at arbitrary offsets. An unaligned array is correct but slow, and numpy copies all of it
for operations such as ``searchsorted`` (every page of the map touched, once per call).
:func:`write_npz` pads each member's local zip header (with an extra field, which zip
readers skip) so that every array starts on a 64-byte boundary; ``np.load`` reads the
file as any other ``.npz``. :func:`map_npz` maps any ``.npz`` and copies what it cannot
map aligned (compressed members, files written by ``savez``).
"""

from __future__ import annotations

import mmap
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Final

import numpy as np

# numpy pads every .npy header to a multiple of this, so an array is aligned in the
# file when its member's data starts on such a boundary.
ALIGNMENT: Final = 64
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., name length, extra length
_LOCAL_SIGNATURE: Final = b"PK\x03\x04"
# The local header's zip64 field, which members written with force_zip64 carry.
_ZIP64_EXTRA: Final = 20
# An extra field's own header (id, length); its id is one no zip tool assigns meaning to.
_PADDING_ID: Final = 0x414C
_EXTRA_HEADER = struct.Struct("<HH")


def write_npz(handle: IO[bytes], arrays: Mapping[str, Any]) -> None:
    """Write ``arrays`` as an uncompressed ``.npz`` whose arrays start 64-byte aligned
    (relative to where ``handle`` is now: write at the start of the file).

    Raises:
        ValueError: an array would need pickle (object dtype).
    """
    with zipfile.ZipFile(handle, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for name, value in arrays.items():
            array = np.asanyarray(value)
            if array.dtype.hasobject:
                raise ValueError(f"array {name!r} holds Python objects (would need pickle)")
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            header_end = (
                (archive.fp.tell() if archive.fp is not None else 0)
                + _LOCAL_HEADER.size
                + len(info.filename.encode())
                + _ZIP64_EXTRA
            )
            padding = -(header_end + _EXTRA_HEADER.size) % ALIGNMENT
            info.extra = _EXTRA_HEADER.pack(_PADDING_ID, padding) + bytes(padding)
            # zip64 always, so the local header's length is known before the size is.
            with archive.open(info, mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def map_npz(path: Path) -> tuple[dict[str, np.ndarray[Any, Any]], mmap.mmap | None]:
    """The arrays of an ``.npz`` file, as read-only views into one memory map of it,
    and that map. Arrays the map cannot give aligned are copied into memory; None
    instead of a map when nothing is mapped (an empty file, compressed members).

    Raises:
        OSError: the file cannot be read.
        ValueError: not a zip of ``.npy`` files, or an array that would need pickle.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile as error:
        raise ValueError(f"not an npz file: {error}") from error
    if not members or any(m.compress_type != zipfile.ZIP_STORED for m in members):
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}, None
    with path.open("rb") as handle:
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for member in members:
        signature, name_length, extra_length = _LOCAL_HEADER.unpack_from(
            mapping, member.header_offset
        )
        if signature != _LOCAL_SIGNATURE:
            raise ValueError(f"npz member {member.filename!r} has no local header")
        start = member.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        view = _NpyHeader(mapping, start).array()
        arrays[member.filename.removesuffix(".npy")] = (
            view if view.flags.aligned else np.array(view, copy=True)
        )
    return arrays, mapping


class _NpyHeader:
    """The ``.npy`` header at ``start`` of a map, and the array after it (a view)."""

    def __init__(self, mapping: mmap.mmap, start: int) -> None:
        self.mapping = mapping
        window = _MapReader(mapping, start)
        version = np.lib.format.read_magic(window)
        if version == (1, 0):
            self.shape, self.fortran, self.dtype = np.lib.format.read_array_header_1_0(window)
        else:
            self.shape, self.fortran, self.dtype = np.lib.format.read_array_header_2_0(window)
        if self.dtype.hasobject:
            raise ValueError("an npz array holds Python objects (would need pickle)")
        self.offset = window.position

    def array(self) -> np.ndarray[Any, Any]:
        count = int(np.prod(self.shape, dtype=np.int64))
        flat = np.frombuffer(self.mapping, dtype=self.dtype, count=count, offset=self.offset)
        return flat.reshape(self.shape, order="F" if self.fortran else "C")


class _MapReader:
    """A file-like ``read`` over a memory map, for numpy's header parsers."""

    def __init__(self, mapping: mmap.mmap, start: int) -> None:
        self.mapping = mapping
        self.position = start

    def read(self, size: int = -1) -> bytes:
        end = len(self.mapping) if size < 0 else self.position + size
        chunk = self.mapping[self.position : end]
        self.position += len(chunk)
        return chunk
