"""The packet JSON codec (orjson with a stdlib fallback) encodes and decodes as the stdlib does."""

from __future__ import annotations

import json
import math

from dihya_realtime.transport.packets import PacketJSON


def test_packet_json_matches_the_stdlib_and_falls_back_where_orjson_refuses():
    doc = {"a": [1, 2.5, None, True], "é": "ü", "n": {"x": "y"}}
    assert json.loads(PacketJSON.dumps(doc, separators=(",", ":"))) == doc
    assert PacketJSON.dumps({1: "int key"}) == '{"1":"int key"}'
    big = 2**70  # past orjson's 64-bit integers: the stdlib encodes it
    assert json.loads(PacketJSON.dumps({"big": big})) == {"big": big}
    assert math.isnan(PacketJSON.loads('{"x": NaN}')["x"])  # a stdlib-only literal
    assert PacketJSON.loads(b'[1,"two"]') == [1, "two"]
