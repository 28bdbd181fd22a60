"""Binary hash codes: the sign quantisation of Eq. (13) and the packed on-disk layout.

A hash code of ``r`` bits is held in memory as a ``bool`` array ``(N, r)`` (``True`` = +1,
``False`` = -1) and on disk, in ``codes/{method}_{bits}.h5``, packed eight bits to a byte by
:func:`numpy.packbits` along the bit axis: ``uint8 (N, ceil(r / 8))``, bit order *big* (bit 0 of
the code is the most significant bit of byte 0) and the unused low bits of the last byte zero.

Shapes:
    - **bool codes:** ``(N, r)``
    - **packed codes:** ``(N, ceil(r / 8))`` ``uint8``
"""

from __future__ import annotations

import numpy as np

__all__ = ["n_bytes", "pack_codes", "unpack_codes", "sign_to_bool", "check_packed"]


def n_bytes(bits: int) -> int:
    """Bytes per packed code of ``bits`` bits (``ceil(bits / 8)``)."""
    if int(bits) != bits or bits < 1:
        raise ValueError(f"bits must be a positive integer, got {bits!r}")
    return (int(bits) + 7) // 8


def pack_codes(b: np.ndarray) -> np.ndarray:
    """Pack ``bool (N, r)`` codes into ``uint8 (N, ceil(r/8))`` rows (``True`` = +1 = bit set).

    Args:
        b: ``bool`` array ``(N, r)``; ``True`` means +1.

    Returns:
        ``uint8`` array ``(N, ceil(r / 8))``, ``np.packbits(b, axis=1)`` (big bit order).

    Raises:
        TypeError: if ``b`` is not boolean.
        ValueError: if ``b`` is not two-dimensional or has no bits.

    Example:
        >>> pack_codes(np.array([[True, False, True, True, False, False, False, False, True]]))
        array([[176, 128]], dtype=uint8)
    """
    b = np.asarray(b)
    if b.dtype != np.bool_:
        raise TypeError(f"pack_codes expects a bool array (True = +1), got dtype {b.dtype}; "
                        "use sign_to_bool(z) for real-valued outputs")
    if b.ndim != 2 or b.shape[1] == 0:
        raise ValueError(f"pack_codes expects shape (N, bits) with bits >= 1, got {b.shape}")
    return np.packbits(b, axis=1, bitorder="big")


def unpack_codes(packed: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: ``uint8 (N, ceil(bits/8))`` to ``bool (N, bits)``.

    Args:
        packed: ``uint8`` array ``(N, ceil(bits / 8))``.
        bits: code length ``r``.

    Returns:
        ``bool`` array ``(N, bits)``.

    Raises:
        TypeError: if ``packed`` is not ``uint8``.
        ValueError: if the number of bytes per row does not match ``bits``.

    Example:
        >>> unpack_codes(np.array([[176, 128]], dtype=np.uint8), 9).astype(int)
        array([[1, 0, 1, 1, 0, 0, 0, 0, 1]])
    """
    packed = check_packed(packed, bits, check_padding=False)
    return np.unpackbits(packed, axis=1, count=int(bits), bitorder="big").astype(bool)


def sign_to_bool(z: np.ndarray) -> np.ndarray:
    r"""Quantise real outputs by Eq. (13) of the paper, :math:`b = \mathrm{sgn}(z)`.

    ``sgn`` returns +1 for a positive element and -1 otherwise, so ``z == 0`` (and ``-0.0``)
    maps to -1, i.e. ``False``. ``NaN`` is rejected.

    Args:
        z: real array of any shape (numpy array or anything :func:`numpy.asarray` accepts,
            e.g. a CPU torch tensor).

    Returns:
        ``bool`` array of the same shape, ``True`` where ``z > 0``.

    Raises:
        TypeError: if ``z`` is not numeric.
        ValueError: if ``z`` contains NaN.

    Example:
        >>> sign_to_bool(np.array([-1.5, 0.0, 2.0]))
        array([False, False,  True])
    """
    z = np.asarray(z)
    if z.dtype == np.bool_ or z.dtype.kind not in "iuf":
        raise TypeError(f"sign_to_bool expects a real-valued array, got dtype {z.dtype}")
    if z.dtype.kind == "f" and np.isnan(z).any():
        raise ValueError("sign_to_bool: input contains NaN; the model diverged or a feature "
                         "row is invalid")
    return z > 0


def check_packed(packed: np.ndarray, bits: int | None = None, *,
                 check_padding: bool = True) -> np.ndarray:
    """Validate packed codes and return them as a C-contiguous ``uint8 (N, nbytes)`` array.

    Args:
        packed: candidate packed codes.
        bits: expected code length; ``None`` accepts any width (``bits = 8 * nbytes``).
        check_padding: also require the unused low bits of the last byte to be zero (they would
            otherwise add to every Hamming distance).

    Returns:
        The same codes, C-contiguous.

    Raises:
        TypeError: if ``packed`` is not ``uint8``.
        ValueError: on a wrong shape, a width that does not match ``bits`` or non-zero padding.
    """
    packed = np.asarray(packed)
    if packed.dtype != np.uint8:
        raise TypeError(f"packed codes must be uint8 (np.packbits output), got {packed.dtype}")
    if packed.ndim != 2 or packed.shape[1] == 0:
        raise ValueError(f"packed codes must have shape (N, nbytes), got {packed.shape}")
    if bits is not None:
        if packed.shape[1] != n_bytes(bits):
            raise ValueError(f"packed codes have {packed.shape[1]} bytes per row but {bits} bits "
                             f"need {n_bytes(bits)}")
        spare = 8 * n_bytes(bits) - int(bits)
        if check_padding and spare and len(packed):
            mask = np.uint8((1 << spare) - 1)
            if np.any(packed[:, -1] & mask):
                raise ValueError(f"packed {bits}-bit codes have non-zero padding bits in the "
                                 "last byte; pack them with pack_codes/np.packbits")
    return np.ascontiguousarray(packed)
