"""Adversarial Yjs updates (v1 encoding), built with pycrdt or by hand.

- :func:`many_clients`: ``n`` one-character inserts at the start of a text that already has
  content, each from a new client id (issue 12, finding 1: ~5,200 of them are ~57 KB);
- :func:`child_of_text_item`: a 13-byte update whose item's parent is an existing *text item*
  (finding 2: it decodes against an empty doc but cannot apply to the real one);
- :func:`deep_nesting`, :func:`garbage`, :func:`truncated`, :func:`bit_flipped`;
- :func:`sync_message` wraps an update as a y-protocols message for ``doc:sync``.
"""

from __future__ import annotations

import functools
import random

from pycrdt import Array, Doc, Map, Text, merge_updates

from dihya_realtime.features.collab.service import var_uint


def var_string(s: str) -> bytes:
    raw = s.encode()
    return var_uint(len(raw)) + raw


def seed_text(client_id: int, text: str = "hello") -> bytes:
    """The update that puts ``text`` into the root text ``t`` as ``client_id``."""
    doc = Doc(client_id=client_id)
    doc["t"] = t = Text()
    t += text
    return doc.get_update()


@functools.lru_cache(maxsize=8)
def many_clients(n: int, base_client: int = 1, first_id: int = 10**6) -> bytes:
    """``n`` concurrent one-character inserts at position 0 of ``t`` (seeded by
    :func:`seed_text` as ``base_client``), each from its own client id, merged into one update."""
    base = seed_text(base_client)
    seeded = Doc()
    seeded.apply_update(base)
    state = seeded.get_state()
    updates = []
    for i in range(n):
        doc = Doc(client_id=first_id + i)
        doc["t"] = t = Text()
        doc.apply_update(base)
        t.insert(0, "a")
        updates.append(doc.get_update(state))
    return merge_updates(*updates)


def child_of_text_item(parent_client: int, parent_clock: int = 0, client: int = 4242) -> bytes:
    """One string item whose parent is the item ``(parent_client, parent_clock)``, which in
    the target document is a character of a text, not a type."""
    struct_ = (bytes([0x04])  # info: ContentString, no origin, no right origin, no parentSub
               + var_uint(0)  # parent is an ID ...
               + var_uint(parent_client) + var_uint(parent_clock)  # ... this one
               + var_string("x"))
    return (var_uint(1) + var_uint(1) + var_uint(client) + var_uint(0) + struct_
            + var_uint(0))  # empty delete set


def deep_nesting(depth: int, kind: str = "array", client_id: int = 77) -> bytes:
    doc = Doc(client_id=client_id)
    if kind == "array":
        doc["a"] = cur = Array()
        for _ in range(depth):
            nxt: Array = Array()
            cur.append(nxt)
            cur = nxt
    else:
        doc["m"] = mcur = Map()
        for _ in range(depth):
            mnxt: Map = Map()
            mcur["k"] = mnxt
            mcur = mnxt
    return doc.get_update()


def big_text(n_chars: int, client_id: int = 99) -> bytes:
    doc = Doc(client_id=client_id)
    doc["t"] = t = Text()
    t += "y" * n_chars
    return doc.get_update()


def garbage(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def truncated(update: bytes, rng: random.Random) -> bytes:
    return update[:rng.randint(0, max(len(update) - 1, 0))]


def bit_flipped(update: bytes, rng: random.Random, flips: int = 3) -> bytes:
    data = bytearray(update)
    for _ in range(flips):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def huge_counts() -> bytes:
    """Headers announcing 2^32 clients / structs with nothing behind them."""
    return var_uint(2**32) + var_uint(2**32) + var_uint(1) + var_uint(0)


def sync_message(kind: int, payload: bytes) -> bytes:
    """y-protocols: ``[0 (sync), kind (0 step1, 1 step2, 2 update), varuint len, payload]``."""
    return bytes([0, kind]) + var_uint(len(payload)) + payload


# Found by this fuzzer (a bit-flipped ``many_clients(10, 5005)``): it decodes against an empty
# doc, then panics inside yrs ("attempt to divide by zero", ClientBlockList::find_index) when
# applied to a document holding ``seed_text(5005)``; in the gevent server the panic's unwinding
# crashes the whole process (SIGSEGV in libgcc_s). Replayed at the end of every campaign.
PANIC_SEED_CLIENT = 5005
PANICS_ON_SEEDED_DOC = bytes.fromhex(
    "0a01c9843d00448d2700016101c8843d00448d2700016101c7843d00448d2700016101c4843d00448d2700"
    "016101c5843d00448d2700016101c4843d00448d2700056101c3843d00448d2700016101c2843d00448d07"
    "00016101c1843d00448d2700016101c0843d00448d2700016100")
