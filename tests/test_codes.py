"""Packed code layout and the sign quantisation of Eq. (13)."""

import numpy as np
import pytest

from pipeline.codes import check_packed, n_bytes, pack_codes, sign_to_bool, unpack_codes


@pytest.mark.parametrize("bits", [1, 7, 8, 9, 16, 24, 33, 48, 64, 72, 128])
def test_pack_unpack_round_trip(bits):
    rng = np.random.default_rng(bits)
    b = rng.random((13, bits)) < 0.5
    packed = pack_codes(b)
    assert packed.dtype == np.uint8 and packed.shape == (13, (bits + 7) // 8)
    np.testing.assert_array_equal(unpack_codes(packed, bits), b)


def test_bit_order_is_big_and_true_is_set():
    # bit 0 of the code is the most significant bit of byte 0
    b = np.zeros((2, 10), bool)
    b[0, 0] = True
    b[1, 9] = True
    np.testing.assert_array_equal(pack_codes(b), [[128, 0], [0, 64]])


def test_sign_zero_maps_to_minus_one():
    z = np.array([[-2.0, -0.0, 0.0, 1e-30, 3.0]])
    np.testing.assert_array_equal(sign_to_bool(z), [[False, False, False, True, True]])
    np.testing.assert_array_equal(sign_to_bool(np.array([-1, 0, 1])), [False, False, True])


def test_sign_rejects_nan_and_bool():
    with pytest.raises(ValueError, match="NaN"):
        sign_to_bool(np.array([0.5, np.nan]))
    with pytest.raises(TypeError, match="real-valued"):
        sign_to_bool(np.array([True]))


def test_pack_validates():
    with pytest.raises(TypeError, match="bool"):
        pack_codes(np.ones((2, 8), np.uint8))
    with pytest.raises(ValueError, match=r"\(N, bits\)"):
        pack_codes(np.ones(8, bool))


def test_unpack_and_check_validate():
    with pytest.raises(ValueError, match="bytes per row"):
        unpack_codes(np.zeros((2, 3), np.uint8), 32)
    with pytest.raises(TypeError, match="uint8"):
        unpack_codes(np.zeros((2, 4), np.int64), 32)
    # 12 bits leave 4 padding bits in the last byte; they must be zero
    with pytest.raises(ValueError, match="padding"):
        check_packed(np.array([[0, 1]], np.uint8), 12)
    assert check_packed(np.array([[0, 16]], np.uint8), 12).shape == (1, 2)
    assert n_bytes(12) == 2 and n_bytes(64) == 8
    with pytest.raises(ValueError):
        n_bytes(0)
