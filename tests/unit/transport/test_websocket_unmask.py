"""Client frames are unmasked in C (``transport.websocket.unmask``), byte for byte as
gevent-websocket's pure-Python loop did, which cost the event loop ~100 ms per MB."""

from __future__ import annotations

import random

import pytest
from geventwebsocket.websocket import Header

from dihya_realtime.transport.websocket import unmask


def reference(payload: bytes, mask: bytes) -> bytes:
    header = Header(fin=True, opcode=1, length=len(payload))
    header.mask = mask
    return bytes(header.unmask_payload(payload))


@pytest.mark.parametrize("length", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 125, 126, 65535, 65536,
                                    1 << 20])
def test_unmask_equals_the_libraries_byte_loop_at_every_length(length: int) -> None:
    rng = random.Random(length)
    payload = rng.randbytes(length)
    for mask in (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", rng.randbytes(4), b"\x00\x00\x00\x01"):
        assert unmask(payload, mask) == reference(payload, mask)


def test_unmask_keeps_leading_and_trailing_zero_bytes() -> None:
    # integers drop leading zeros: the length must be kept whatever the bytes are
    assert unmask(b"\x00" * 7, b"\x00" * 4) == b"\x00" * 7
    assert unmask(b"\x01\x00\x00", b"\x01\x00\x00\x00") == b"\x00\x00\x00"


def test_masking_twice_gives_the_payload_back() -> None:
    payload = "مرحبا ✓ hello".encode() * 100
    mask = b"\x12\x34\x56\x78"
    assert unmask(unmask(payload, mask), mask) == payload
