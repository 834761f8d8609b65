"""Recovery amplification and retained memory against a real `serve` process (issue 12).

One client fills a channel's history with 60 KB publications; a reconnecting client asking
for everything since offset 0 used to get it all in one reply (12 MB for 200). Now history
is capped per channel in bytes, and a reply is one page with ``more``.
"""

from __future__ import annotations

import json

PAGE_BYTES = 256 * 1024
SIZE = 60_000


def test_recovery_is_paged_and_history_is_capped_in_bytes(start_server, sio_client, token):
    server = start_server(
        RATE_LIMIT_EVENTS={"publish": {"rate": 1000, "burst": 1000}},
        RATE_LIMIT_USER={"rate": 1000, "burst": 1000},
        RATE_LIMIT_BYTES={"rate": 100_000_000, "burst": 100_000_000},
        MAX_HISTORY_BYTES_PER_CHANNEL=str(2 * 1024 * 1024),
        HISTORY_PAGE_MAX_BYTES=str(PAGE_BYTES))
    attacker = sio_client(server, token("mallory"))
    first = None
    for i in range(100):
        reply = attacker.call("publish", {"channel": "chat:big", "data": f"{i:04d}" + "x" * SIZE})
        assert reply["ok"], reply
        first = first or reply["data"]
    assert first is not None
    epoch = first["epoch"]

    victim = sio_client(server, token("alice"))
    everything = victim.call("subscribe", {"channel": "chat:big",
                                           "since": {"offset": 0, "epoch": epoch}})
    # 6 MB were published; 2 MiB are kept, so offset 1 is gone: not recovered, never partial
    assert everything["data"]["recovered"] is False
    assert everything["data"]["publications"] == []

    newest = victim.call("history", {"channel": "chat:big"})
    assert len(json.dumps(newest)) < PAGE_BYTES + SIZE + 1000
    assert newest["data"]["publications"][-1]["offset"] == 100  # the newest page
    oldest = 71  # 2 MiB hold ~34 publications of 60 KB: 67..100 are kept

    reply = victim.call("subscribe", {"channel": "chat:big",
                                      "since": {"offset": oldest - 1, "epoch": epoch}})
    assert len(json.dumps(reply)) < PAGE_BYTES + SIZE + 1000
    data = reply["data"]
    assert data["recovered"] is True and data["more"] is True
    got = [p["offset"] for p in data["publications"]]
    while data["more"]:
        reply = victim.call("history", {"channel": "chat:big",
                                        "since": {"offset": got[-1], "epoch": epoch}})
        assert len(json.dumps(reply)) < PAGE_BYTES + SIZE + 1000
        data = reply["data"]
        assert data["recovered"] is True
        got += [p["offset"] for p in data["publications"]]
    assert got == list(range(oldest, 101))  # complete, in order, exactly once
