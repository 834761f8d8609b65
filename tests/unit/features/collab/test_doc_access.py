"""Who may open a document: its creator, explicit grants (to users or roles, by event or
HTTP), ``doc:admin``; the host app's ``access_check`` still decides when it is set. And the
update checks that run in worker processes, seen through the pipeline."""

from __future__ import annotations

import pytest
from pycrdt import Doc, Text, handle_sync_message, merge_updates

from dihya_realtime.features.collab.worker import count_structs
from dihya_realtime.kernel.auth import hash_api_key

API_KEY = "doc-access-key"
ROLES = {"user": ["doc:edit", "doc:read"], "viewer": ["doc:read"], "admin": ["*"]}


@pytest.fixture
def settings_overrides(settings_overrides):
    return {**settings_overrides, "docs_compact_idle": 0, "roles": ROLES,
            "api_keys": [hash_api_key(API_KEY)]}


def join(client, doc_id: str = "plan") -> dict:
    return client.call("doc:join", {"doc_id": doc_id})


def edit(client, doc_id: str, text: str, doc: Doc | None = None) -> dict:
    doc = doc or Doc()
    before = doc.get_state()
    doc.get("text", type=Text).insert(0, text)
    return client.call("doc:update", {"doc_id": doc_id, "update": doc.get_update(before)})


def code(reply: dict) -> str | None:
    return None if reply["ok"] else reply["error"]["code"]


def test_only_the_creator_may_open_a_document_it_created_by_joining(rt, connect):
    alice, bob = connect(rt, "alice"), connect(rt, "bob")
    assert join(alice)["data"]["read_only"] is False
    assert edit(alice, "plan", "mine")["ok"]
    assert code(join(bob)) == "forbidden"
    assert code(edit(bob, "plan", "x")) == "conflict"  # never joined
    assert rt.docs.read("plan")["text"] == "mine"


def test_creator_grants_a_user_edit_and_a_role_read_by_event(rt, connect):
    alice, bob = connect(rt, "alice"), connect(rt, "bob")
    vic = connect(rt, "vic", roles=("viewer",))
    join(alice)
    granted = alice.call("doc:grant", {"doc_id": "plan", "user_id": "bob", "mode": "edit"})
    assert granted["data"]["grants"] == [{"user_id": "bob", "mode": "edit"}]
    assert alice.call("doc:grant", {"doc_id": "plan", "role": "viewer", "mode": "read"})["ok"]
    assert join(bob)["data"]["read_only"] is False
    assert edit(bob, "plan", "bob was here")["ok"]
    assert join(vic)["data"]["read_only"] is True
    assert code(edit(vic, "plan", "x")) == "forbidden"
    listed = alice.call("doc:access", {"doc_id": "plan"})["data"]
    assert listed["created_by"] == "alice" and len(listed["grants"]) == 2


def test_a_grant_never_lifts_a_user_above_its_roles(rt, connect):
    alice, vic = connect(rt, "alice"), connect(rt, "vic", roles=("viewer",))
    join(alice)
    alice.call("doc:grant", {"doc_id": "plan", "user_id": "vic", "mode": "edit"})
    assert join(vic)["data"]["read_only"] is True


def test_only_the_creator_or_a_doc_admin_manages_access(rt, connect):
    alice, bob = connect(rt, "alice"), connect(rt, "bob")
    root = connect(rt, "root", roles=("admin",))
    join(alice)
    alice.call("doc:grant", {"doc_id": "plan", "user_id": "bob", "mode": "edit"})
    refused = bob.call("doc:grant", {"doc_id": "plan", "user_id": "eve", "mode": "edit"})
    assert code(refused) == "forbidden"
    assert code(bob.call("doc:access", {"doc_id": "plan"})) == "forbidden"
    assert root.call("doc:grant", {"doc_id": "plan", "user_id": "eve", "mode": "read"})["ok"]
    assert join(root)["data"]["read_only"] is False  # doc:admin edits any document
    both = alice.call("doc:grant", {"doc_id": "plan", "user_id": "x", "role": "y",
                                    "mode": "read"})
    assert code(both) == "invalid_payload"
    assert code(root.call("doc:grant", {"doc_id": "nope", "user_id": "x",
                                        "mode": "read"})) == "not_found"


def test_revoking_closes_the_open_copies_of_who_lost_access(rt, connect):
    alice, bob = connect(rt, "alice"), connect(rt, "bob")
    join(alice)
    alice.call("doc:grant", {"doc_id": "plan", "user_id": "bob", "mode": "edit"})
    join(bob)
    bob.get_received()
    revoked = alice.call("doc:revoke", {"doc_id": "plan", "user_id": "bob"})
    assert revoked["ok"] and revoked["data"]["grants"] == []
    assert bob.events("doc:closed") == [{"doc_id": "plan", "reason": "forbidden"}]
    assert code(edit(bob, "plan", "x")) == "conflict"
    assert code(join(bob)) == "forbidden"
    assert join(alice)["ok"]  # the creator's access is not a grant


def test_documents_created_over_http_are_governed_by_their_grants(rt, connect):
    http = rt.app.test_client()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    assert http.post("/api/v1/docs", json={"doc_id": "handbook", "text": "hi"},
                     headers=headers).status_code == 201
    alice, bob = connect(rt, "alice"), connect(rt, "bob")
    assert code(join(alice, "handbook")) == "forbidden"
    put = http.put("/api/v1/docs/handbook/access", headers=headers, json={"grants": [
        {"user_id": "alice", "mode": "edit"}, {"role": "user", "mode": "read"}]})
    assert put.status_code == 200, put.json
    assert join(alice, "handbook")["data"]["read_only"] is False
    assert join(bob, "handbook")["data"]["read_only"] is True
    got = http.get("/api/v1/docs/handbook/access", headers=headers)
    assert got.json["created_by"] is None and len(got.json["grants"]) == 2
    # replacing the grants closes bob's copy
    assert http.put("/api/v1/docs/handbook/access", headers=headers, json={"grants": [
        {"user_id": "alice", "mode": "edit"}]}).status_code == 200
    assert bob.events("doc:closed") == [{"doc_id": "handbook", "reason": "forbidden"}]
    assert http.put("/api/v1/docs/handbook/access", headers=headers,
                    json={"grants": [{"mode": "edit"}]}).status_code == 400
    assert http.put("/api/v1/docs/missing/access", headers=headers,
                    json={"grants": []}).status_code == 404
    assert http.put("/api/v1/docs/handbook/access", json={"grants": []}).status_code == 401


def test_the_host_access_callback_still_decides_when_set(rt, connect):
    rt.docs.create("team:plan", text="plan")
    rt.docs.access_check = lambda p, doc_id: {"alice": "edit", "bob": "read"}.get(p.user_id)
    assert join(connect(rt, "alice"), "team:plan")["data"]["read_only"] is False
    assert join(connect(rt, "bob"), "team:plan")["data"]["read_only"] is True
    assert code(join(connect(rt, "carol"), "team:plan")) == "forbidden"


def test_a_readers_sync_answer_is_accepted_once_the_document_has_deletions(rt, connect):
    """A read-only participant's step 2 carries its delete set, encoded its own way: judged
    by content (it changes nothing), not compared with the empty update's bytes."""
    alice, vic = connect(rt, "alice"), connect(rt, "vic", roles=("viewer",))
    join(alice)
    doc = Doc()
    text = doc.get("text", type=Text)
    assert edit(alice, "plan", "hello world", doc)["ok"]
    before = doc.get_state()
    del text[0:6]
    assert alice.call("doc:update", {"doc_id": "plan", "update": doc.get_update(before)})["ok"]
    alice.call("doc:grant", {"doc_id": "plan", "role": "viewer", "mode": "read"})
    data = join(vic)["data"]
    mine = Doc()
    handle_sync_message(data["sync_step2"][1:], mine)
    step2 = handle_sync_message(data["sync_step1"][1:], mine)
    reply = vic.call("doc:sync", {"doc_id": "plan", "message": step2})
    assert reply["ok"], reply
    assert reply["data"]["seq"] == data["seq"]  # nothing stored
    assert rt.docs.read("plan")["text"] == "world"


def test_update_over_the_structure_caps_is_refused_and_audited(make_rt, connect):
    rt = make_rt(doc_update_max_clients=3, doc_update_max_structs=50)
    alice = connect(rt, "alice")
    join(alice)
    parts = []
    for n in range(4):
        one: Doc = Doc(client_id=100 + n)
        one.get("text", type=Text).insert(0, "x")
        parts.append(one.get_update())
    reply = alice.call("doc:update", {"doc_id": "plan", "update": merge_updates(*parts)})
    assert code(reply) == "payload_too_large"
    assert reply["error"]["details"]["limit"] == "clients"
    many: Doc = Doc()
    text = many.get("text", type=Text)
    for n in range(60):  # 60 inserts at alternating ends: 60 structs from one client
        text.insert(0 if n % 2 else len(text), "ab")
    reply = alice.call("doc:update", {"doc_id": "plan", "update": many.get_update()})
    assert code(reply) == "payload_too_large"
    assert reply["error"]["details"]["limit"] == "structs"
    assert rt.docs.read("plan")["text"] == ""


def test_document_growing_past_its_size_limit_is_refused(make_rt, connect):
    rt = make_rt(doc_max_bytes=4096)
    alice = connect(rt, "alice")
    join(alice)
    doc = Doc()
    assert edit(alice, "plan", "x" * 3000, doc)["ok"]
    reply = edit(alice, "plan", "y" * 3000, doc)
    assert code(reply) == "payload_too_large"
    assert reply["error"]["details"]["limit"] == "doc_bytes"


def test_struct_count_matches_the_encoding_of_every_content_kind() -> None:
    from pycrdt import Array, Map, XmlElement, XmlFragment

    doc: Doc = Doc()
    doc.get("text", type=Text).insert(0, "plain")
    doc.get("text", type=Text).insert(2, "bold", {"bold": True})
    doc.get("map", type=Map)["k"] = {"nested": [1, 2.5, None, True, "s", b"\x00"]}
    doc.get("array", type=Array).extend([1, "two", {"three": 3}])
    doc.get("xml", type=XmlFragment).children.append(XmlElement("p", {"class": "x"}))
    update = doc.get_update()
    structs, clients = count_structs(update)
    assert clients == 1 and 5 <= structs <= 40
    with pytest.raises(ValueError):
        count_structs(update[:-3])
    with pytest.raises(ValueError):
        count_structs(update + b"\x00")
    with pytest.raises(ValueError):  # a header claiming a million structs, then nothing
        count_structs(b"\x01\xc0\x84\x3d\x01\x00")


def many_clients_update(count: int, first_client: int) -> bytes:
    parts = []
    for n in range(count):
        one: Doc = Doc(client_id=first_client + n)
        one.get("text", type=Text).insert(0, "x")
        parts.append(one.get_update())
    return merge_updates(*parts)


def test_a_worker_that_overruns_its_time_limit_is_killed_and_replaced(make_rt, connect):
    from dihya_realtime.features.collab import worker as doc_worker

    rt = make_rt(doc_update_max_clients=100_000, doc_update_max_structs=100_000,
                 doc_update_cpu_seconds=10, doc_worker_timeout=0.3, doc_workers=1)
    alice = connect(rt, "alice")
    join(alice)
    assert alice.call("doc:update", {"doc_id": "plan",
                                     "update": many_clients_update(3000, 1000)})["ok"]
    pool = doc_worker.pool(1, 0.3, rt.settings.doc_worker_memory_mb * 1024 * 1024)
    first = pool._idle.queue[0].proc
    reply = alice.call("doc:update", {"doc_id": "plan",
                                      "update": many_clients_update(3000, 100_000)})
    assert code(reply) == "payload_too_large", reply
    assert first.poll() is not None  # killed, not left running
    assert edit(alice, "plan", "still works")["ok"]  # a fresh worker took its place
    assert pool._idle.queue[0].proc is not first and pool._started == 1
