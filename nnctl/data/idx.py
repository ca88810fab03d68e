"""The IDX file format of the MNIST files: a 4-byte magic, big-endian dimensions, raw data.

Magic bytes: two zeros, a type code, the number of dimensions. Every length is checked
before any reshape, so a truncated or foreign file is named in a one-line error.
"""

from __future__ import annotations

import struct

import numpy as np

from nnctl.errors import DataError

TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(buffer: bytes | bytearray | memoryview, name: str) -> np.ndarray:
    """Return the array an IDX buffer holds; `name` is only used in error messages."""
    view = memoryview(buffer)
    if len(view) < 4:
        raise DataError(f"{name}: not an IDX file (only {len(view)} bytes)")
    zero0, zero1, code, ndim = view[0], view[1], view[2], view[3]
    if zero0 != 0 or zero1 != 0 or code not in TYPE_CODES or ndim == 0:
        raise DataError(f"{name}: not an IDX file (magic bytes {bytes(view[:4]).hex()})")
    header = 4 + 4 * ndim
    if len(view) < header:
        raise DataError(f"{name}: truncated IDX header ({len(view)} of {header} bytes)")
    shape = struct.unpack(f">{ndim}I", view[4:header])
    dtype = TYPE_CODES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(view) - header
    if found < expected:
        raise DataError(
            f"{name}: truncated: shape {shape} needs {expected} bytes of data, found {found}"
        )
    if found > expected:
        raise DataError(f"{name}: {found - expected} bytes after the data of shape {shape}")
    array = np.frombuffer(view, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of an array; used to write small MNIST-shaped files for tests and tools."""
    array = np.asarray(array)
    for code, dtype in TYPE_CODES.items():
        if array.dtype.newbyteorder("=") == dtype.newbyteorder("="):
            break
    else:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()
