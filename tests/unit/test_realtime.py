"""The Realtime facade's own behaviour (what it adds to the kernel it composes)."""

from __future__ import annotations


def test_an_emit_to_a_connection_of_this_process_skips_the_message_queue(rt, connect,
                                                                          monkeypatch):
    """Every other process would receive and drop it: a local sid is emitted locally."""
    client = connect(rt)
    sid = next(iter(rt.connections)).sid
    calls = []
    real = rt.socketio.server.emit
    monkeypatch.setattr(rt.socketio.server, "emit",
                        lambda *a, **kw: calls.append(kw.get("ignore_queue")) or real(*a, **kw))
    rt.emit("ping:test", {"n": 1}, to=sid)
    rt.emit("ping:test", {"n": 2}, to="some-room")
    assert calls == [True, False]
    assert [e["args"][0]["n"] for e in client.get_received() if e["name"] == "ping:test"] == [1]
