"""Collaborative editing: Yjs documents synced through the pipeline, pycrdt on both sides."""

from __future__ import annotations

import json
import os

import pytest
from pycrdt import Doc, Text, YSyncMessageType, create_sync_message, handle_sync_message

from dihya_realtime.kernel.auth import hash_api_key

API_KEY = "collab-test-key"


def audit_lines(rt, type_: str) -> list[dict]:
    rt.audit.flush()
    with open(rt.settings.audit_log) as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [r for r in rows if r["type"] == type_]


class Editor:
    """A client-side Yjs document bound to one test connection (what a JS provider does)."""

    def __init__(self, client, doc_id: str = "spec-42") -> None:
        self.client = client
        self.doc_id = doc_id
        self.doc = Doc()
        self.text = self.doc.get("text", type=Text)
        self.joined: dict | None = None

    def join(self) -> dict:
        reply = self.client.call("doc:join", {"doc_id": self.doc_id})
        if reply["ok"]:
            data = reply["data"]
            # the server's step 2 carries its state; our step 2 answers its step 1
            handle_sync_message(data["sync_step2"][1:], self.doc)
            step2 = handle_sync_message(data["sync_step1"][1:], self.doc)
            assert step2 is not None
            self.answer = self.client.call("doc:sync", {"doc_id": self.doc_id,
                                                        "message": step2})
            assert self.answer["ok"] or self.answer["error"]["code"] == "forbidden"
            self.joined = data
        return reply

    def edit(self, index: int, chunk: str) -> dict:
        before = self.doc.get_state()
        self.text.insert(index, chunk)
        return self.send(self.doc.get_update(before))

    def send(self, update: bytes) -> dict:
        return self.client.call("doc:update", {"doc_id": self.doc_id, "update": update})

    def receive(self) -> int:
        """Apply every relayed update; returns how many arrived."""
        updates = [e for e in self.client.events("doc:update") if e["doc_id"] == self.doc_id]
        for e in updates:
            self.doc.apply_update(e["update"])
        return len(updates)

    @property
    def content(self) -> str:
        return str(self.text)


@pytest.fixture
def settings_overrides(settings_overrides):
    """No idle compaction unless a test asks: its background task would outlive the test."""
    return {**settings_overrides, "docs_compact_idle": 0}


def create_shared(rt, doc_id: str, text: str | None = None) -> None:
    """A document every ``user`` may edit and every ``viewer`` read (access is explicit)."""
    rt.docs.create(doc_id, text)
    rt.docs.set_grants(doc_id, [("role", "user", "edit"), ("role", "viewer", "read")],
                       by=None)


@pytest.fixture
def editor(connect):
    def make(rt, user="alice", roles=("user",), doc_id="spec-42", **kw) -> Editor:
        return Editor(connect(rt, user, roles=roles, **kw), doc_id)

    return make


# -- sync and convergence

def test_two_clients_editing_concurrently_converge(make_rt, editor, database_url):
    rt = make_rt(database_url=database_url)
    create_shared(rt, "spec-42", text="hello")
    alice, bob = editor(rt, "alice"), editor(rt, "bob")
    assert alice.join()["ok"] and bob.join()["ok"]
    assert alice.content == bob.content == "hello"
    # both edit before seeing the other's change
    assert alice.edit(0, "A:")["ok"]
    assert bob.edit(5, "!")["ok"]
    assert alice.edit(2, "x")["ok"]
    assert bob.receive() == 2 and alice.receive() == 1
    assert alice.content == bob.content
    assert sorted(alice.content) == sorted("A:xhello!")
    assert rt.docs.read("spec-42")["text"] == alice.content


def test_update_ack_carries_the_stored_sequence_number(rt, editor):
    create_shared(rt, "spec-42")
    alice = editor(rt)
    alice.join()
    first = alice.edit(0, "a")["data"]["seq"]
    assert alice.edit(1, "b")["data"] == {"doc_id": "spec-42", "seq": first + 1}


def test_late_joiner_gets_the_full_state(rt, editor):
    create_shared(rt, "spec-42")
    alice = editor(rt, "alice")
    alice.join()
    for word in ["one ", "two ", "three"]:
        assert alice.edit(len(alice.content), word)["ok"]
    late = editor(rt, "carol")
    reply = late.join()
    assert reply["data"]["seq"] == 3
    assert late.content == "one two three"


def test_join_with_a_state_vector_gets_only_what_is_missing(rt, editor, connect):
    create_shared(rt, "spec-42", text="shared base")
    alice = editor(rt)
    alice.join()
    alice.edit(0, ">> ")
    # bob already has the base; he sends his step 1 and must receive only the edit
    bob_doc = Doc()
    bob_doc.apply_update(Doc().get_update())
    base = rt.docs.state("spec-42")[0]
    bob_doc.apply_update(base)
    alice.edit(len(alice.content), " <<")
    bob = connect(rt, "bob")
    data = bob.call("doc:join", {"doc_id": "spec-42",
                                 "sync_step1": create_sync_message(bob_doc)})["data"]
    full = bob.call("doc:join", {"doc_id": "spec-42"})["data"]["sync_step2"]
    assert len(data["sync_step2"]) < len(full)
    handle_sync_message(data["sync_step2"][1:], bob_doc)
    assert str(bob_doc.get("text", type=Text)) == ">> shared base <<"


def test_client_step2_stores_what_the_server_lacked(rt, connect):
    create_shared(rt, "spec-42")
    offline = Doc()
    offline.get("text", type=Text).insert(0, "written offline")
    client = connect(rt)
    data = client.call("doc:join", {"doc_id": "spec-42"})["data"]
    step2 = handle_sync_message(data["sync_step1"][1:], offline)
    reply = client.call("doc:sync", {"doc_id": "spec-42", "message": step2})
    assert reply["ok"] and reply["data"]["message"] is None
    assert rt.docs.read("spec-42")["text"] == "written offline"


def test_sync_step1_is_answered_with_the_missing_state(rt, editor, connect):
    create_shared(rt, "spec-42", text="abc")
    client = connect(rt)
    client.call("doc:join", {"doc_id": "spec-42"})
    empty = Doc()
    reply = client.call("doc:sync", {"doc_id": "spec-42",
                                     "message": create_sync_message(empty)})["data"]
    assert reply["message"][1] == YSyncMessageType.SYNC_STEP2
    handle_sync_message(reply["message"][1:], empty)
    assert str(empty.get("text", type=Text)) == "abc"


def test_joining_an_unknown_document_creates_it_for_an_editor(rt, editor, connect):
    alice = editor(rt, doc_id="new-doc")
    assert alice.join()["ok"]
    assert rt.docs.exists("new-doc")
    reader = connect(rt, "rita", roles=("viewer",))
    assert reader.call("doc:join", {"doc_id": "other-new"})["error"]["code"] in (
        "forbidden", "not_found")


def test_unknown_document_is_not_found_when_creation_on_join_is_off(make_rt, connect):
    rt = make_rt(docs_create_on_join=False)
    reply = connect(rt).call("doc:join", {"doc_id": "nope"})
    assert reply["error"]["code"] == "not_found"
    assert not rt.docs.exists("nope")


# -- persistence

def test_state_survives_a_restart(make_rt, editor, database_url, tmp_path):
    rt = make_rt(database_url=database_url)
    create_shared(rt, "spec-42", text="base")
    alice, bob = editor(rt, "alice"), editor(rt, "bob")
    alice.join()
    bob.join()
    alice.edit(0, "[a]")
    bob.edit(4, "[b]")
    alice.receive()
    expected = alice.content
    rt.close()
    again = make_rt(database_url=database_url, audit_log=str(tmp_path / "audit2.log"))
    assert again.docs.read("spec-42")["text"] == expected
    late = editor(again, "carol")
    late.join()
    assert late.content == expected


def snapshot_upto(rt) -> int | None:
    import sqlalchemy as sa

    with rt.db.session() as s:
        return s.execute(sa.text("SELECT max(upto_seq) FROM doc_snapshots")).scalar_one()


def wait_for(predicate, timeout: float = 5.0) -> bool:
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_compaction_folds_updates_into_a_snapshot_without_losing_any(make_rt, editor,
                                                                     database_url):
    import sqlalchemy as sa

    rt = make_rt(database_url=database_url, docs_compact_every=5, docs_compact_idle=0)
    create_shared(rt, "spec-42")
    alice = editor(rt)
    alice.join()
    for ch in "abcdefg":
        assert alice.edit(len(alice.content), ch)["ok"]
    # the 5th update starts a background compaction (of what is stored by then)
    assert wait_for(lambda: (snapshot_upto(rt) or 0) >= 5)
    for ch in "hijkl":
        assert alice.edit(len(alice.content), ch)["ok"]
    assert wait_for(lambda: (snapshot_upto(rt) or 0) >= 10)
    rt.docs.compact("spec-42")
    with rt.db.session() as s:
        assert s.execute(sa.text("SELECT count(*) FROM doc_updates")).scalar_one() == 0
    assert snapshot_upto(rt) == 12
    late = editor(rt, "bob")
    late.join()
    assert late.content == "abcdefghijkl"
    assert alice.edit(0, "Z")["data"]["seq"] == 13
    assert rt.docs.read("spec-42")["text"] == "Zabcdefghijkl"


def test_a_process_with_an_open_document_catches_up_after_compaction_elsewhere(
        make_rt, editor, database_url, tmp_path):
    """Two Realtime objects on one database stand in for two processes."""
    one = make_rt(database_url=database_url)
    two = make_rt(database_url=database_url, audit_log=str(tmp_path / "two.log"))
    create_shared(one, "spec-42")
    watcher = editor(two, "wes")
    watcher.join()  # spec-42 is now open (cached) on process two
    alice = editor(one, "alice")
    alice.join()
    for ch in "abc":
        alice.edit(len(alice.content), ch)
    one.docs.compact("spec-42")
    alice.edit(len(alice.content), "d")
    # the cache of process two catches up from the snapshot and the log
    assert two.docs.read("spec-42")["text"] == "abcd"
    late = editor(two, "lee")
    late.join()
    assert late.content == "abcd"


def test_idle_documents_are_compacted_after_the_quiet_period(make_rt, editor):
    rt = make_rt(docs_compact_idle=0.2)
    import sqlalchemy as sa

    create_shared(rt, "spec-42")
    alice = editor(rt)
    alice.join()
    alice.edit(0, "quiet")
    assert snapshot_upto(rt) is None
    assert wait_for(lambda: snapshot_upto(rt) == 1)
    with rt.db.session() as s:
        assert s.execute(sa.text("SELECT count(*) FROM doc_updates")).scalar_one() == 0
    assert rt.docs.read("spec-42")["text"] == "quiet"


# -- permissions and validation

def test_read_only_user_joins_but_its_updates_are_refused(make_rt, editor):
    rt = make_rt(roles={"user": ["doc:edit", "doc:read"], "viewer": ["doc:read"]})
    create_shared(rt, "spec-42", text="locked")
    viewer = editor(rt, "vic", roles=("viewer",))
    reply = viewer.join()
    assert reply["data"]["read_only"] is True
    assert viewer.answer["ok"]  # an empty step 2 from a reader is fine
    watcher = editor(rt, "wes")
    watcher.join()
    refused = viewer.edit(0, "vandal ")
    assert refused["error"]["code"] == "forbidden"
    assert rt.docs.read("spec-42")["text"] == "locked"
    assert watcher.receive() == 0
    assert audit_lines(rt, "permission_denied")


def test_access_callback_narrows_a_document_to_read_or_nothing(rt, editor, connect):
    create_shared(rt, "team:plan", text="plan")
    rt.docs.access_check = lambda p, doc_id: {"alice": "edit", "bob": "read"}.get(p.user_id)
    alice = editor(rt, "alice", doc_id="team:plan")
    bob = editor(rt, "bob", doc_id="team:plan")
    assert alice.join()["data"]["read_only"] is False
    assert bob.join()["data"]["read_only"] is True
    assert bob.edit(0, "x")["error"]["code"] == "forbidden"
    # a read-only step 2 with content is refused too, and nothing is stored
    sneaky = Doc()
    sneaky.get("text", type=Text).insert(0, "sneaky")
    step2 = handle_sync_message(bob.joined["sync_step1"][1:], sneaky)
    refused = bob.client.call("doc:sync", {"doc_id": "team:plan", "message": step2})
    assert refused["error"]["code"] == "forbidden"
    carol = connect(rt, "carol")
    assert carol.call("doc:join", {"doc_id": "team:plan"})["error"]["code"] == "forbidden"
    assert rt.docs.read("team:plan")["text"] == "plan"


def test_malformed_update_is_refused_and_changes_nothing(rt, editor, database_url):
    create_shared(rt, "spec-42", text="intact")
    alice, bob = editor(rt, "alice"), editor(rt, "bob")
    alice.join()
    bob.join()
    before = rt.docs.state("spec-42")
    for bad in (os.urandom(64), b"\x01", b"\xff" * 10, alice.doc.get_update()[:-4]):
        reply = alice.send(bad)
        assert reply["error"]["code"] == "invalid_payload", bad
    assert rt.docs.state("spec-42") == before
    assert bob.receive() == 0
    assert alice.edit(0, "still ")["ok"]  # the connection stays usable


def test_update_must_be_binary(rt, editor):
    create_shared(rt, "spec-42")
    alice = editor(rt)
    alice.join()
    reply = alice.client.call("doc:update", {"doc_id": "spec-42", "update": "not bytes"})
    assert reply["error"]["code"] == "invalid_payload"
    assert reply["error"]["details"][0]["field"] == "update"


def test_oversized_update_is_refused(make_rt, editor):
    rt = make_rt(max_payload_bytes=2048)
    create_shared(rt, "spec-42")
    alice = editor(rt)
    alice.join()
    big = Doc()
    big.get("text", type=Text).insert(0, "x" * 5000)
    assert alice.send(big.get_update())["error"]["code"] == "payload_too_large"
    assert rt.docs.read("spec-42")["text"] == ""


def test_updates_need_a_join_first(rt, editor):
    create_shared(rt, "spec-42")
    alice = editor(rt)
    assert alice.edit(0, "x")["error"]["code"] == "conflict"


def test_malformed_sync_message_is_refused(rt, editor):
    create_shared(rt, "spec-42")
    alice = editor(rt)
    alice.join()
    for bad in (b"\x01\x00\x01", b"\x00\x07\x01\x00", b"\x00\x01\x05ab"):
        reply = alice.client.call("doc:sync", {"doc_id": "spec-42", "message": bad})
        assert reply["error"]["code"] == "invalid_payload"


def test_bad_document_id_is_invalid(rt, connect):
    reply = connect(rt).call("doc:join", {"doc_id": "../etc/passwd"})
    assert reply["error"]["code"] == "invalid_payload"


# -- awareness

def test_awareness_carries_the_server_stamped_user(rt, editor, connect):
    create_shared(rt, "spec-42")
    alice = editor(rt, "alice", name="Alice")
    bob = editor(rt, "bob")
    alice.join()
    bob.join()
    reply = alice.client.call("doc:awareness", {"doc_id": "spec-42", "state": {
        "cursor": {"anchor": 1, "head": 1}, "user": {"user_id": "bob", "name": "Bob"}}})
    assert reply["ok"]
    seen = bob.client.events("doc:awareness")
    assert len(seen) == 1
    assert seen[0]["user"] == {"user_id": "alice", "name": "Alice"}
    assert seen[0]["client_id"] == alice.joined["client_id"] == reply["data"]["client_id"]
    assert seen[0]["state"]["cursor"] == {"anchor": 1, "head": 1}
    assert alice.client.events("doc:awareness") == []  # not echoed to the sender
    # a late joiner finds the current states in its join reply
    carol = editor(rt, "carol")
    states = carol.join()["data"]["awareness"]
    assert [(s["user"]["user_id"], s["client_id"]) for s in states] == [
        ("alice", alice.joined["client_id"])]


def test_awareness_is_cleared_on_disconnect_and_on_leave(rt, editor):
    create_shared(rt, "spec-42")
    alice, bob, carol = editor(rt, "alice"), editor(rt, "bob"), editor(rt, "carol")
    for e in (alice, bob, carol):
        e.join()
        e.client.call("doc:awareness", {"doc_id": "spec-42", "state": {"cursor": 0}})
    for e in (alice, bob, carol):
        e.client.get_received()
    alice.client.disconnect()
    gone = bob.client.events("doc:awareness")
    assert gone == [{"doc_id": "spec-42", "client_id": alice.joined["client_id"],
                     "user": {"user_id": "alice", "name": "alice"}, "state": None}]
    assert carol.client.call("doc:leave", {"doc_id": "spec-42"})["data"]["left"] is True
    left = bob.client.events("doc:awareness")
    assert [e["client_id"] for e in left] == [carol.joined["client_id"]]
    assert left[0]["state"] is None
    # carol left the room: she no longer receives updates
    bob.edit(0, "x")
    assert carol.receive() == 0
    late = editor(rt, "dan")
    assert [s["user"]["user_id"] for s in late.join()["data"]["awareness"]] == ["bob"]


def test_refresh_without_read_access_closes_every_joined_document(make_rt, editor,
                                                                   make_token):
    """A joined document keeps relaying to a connection only while it may read it: a refresh
    whose roles no longer hold ``doc:read`` closes it, as ``doc:leave`` would, at once."""
    rt = make_rt(roles={"user": ["doc:edit", "doc:read"], "guest": []})
    for doc_id in ("spec-42", "notes"):
        create_shared(rt, doc_id, text="base ")
    alice, bob = editor(rt, "alice"), editor(rt, "bob")
    alice.join()
    bob.join()
    Editor(bob.client, "notes").join()  # the same connection, a second document
    for e in (alice, bob):
        e.client.call("doc:awareness", {"doc_id": "spec-42", "state": {"cursor": 1}})
    for e in (alice, bob):
        e.client.get_received()

    reply = bob.client.call("auth:refresh",
                            {"token": make_token("bob", roles=["guest"], ttl=600)})

    assert reply["ok"], reply
    closed = sorted(bob.client.events("doc:closed"), key=lambda e: e["doc_id"])
    assert closed == [{"doc_id": "notes", "reason": "forbidden"},
                      {"doc_id": "spec-42", "reason": "forbidden"}]
    cleared = alice.client.events("doc:awareness")  # the others see bob leave
    assert [(e["user"]["user_id"], e["state"]) for e in cleared] == [("bob", None)]
    alice.edit(0, "after ")
    alice.client.call("doc:awareness", {"doc_id": "spec-42", "state": {"cursor": 9}})
    received = bob.client.get_received()
    assert [m["name"] for m in received if m["name"].startswith("doc:")] == []
    assert bob.edit(0, "x")["error"]["code"] == "forbidden"  # no doc:edit any more
    leaves = audit_lines(rt, "doc_leave")
    assert sorted((e["details"]["doc_id"], e["details"]["reason"]) for e in leaves) == [
        ("notes", "forbidden"), ("spec-42", "forbidden")]


def test_refresh_checks_the_access_callback_again_for_each_joined_document(rt, editor, connect,
                                                                         make_token):
    """The host app's per-document rule runs again too: a document it now refuses is closed,
    one it narrows to ``read`` refuses updates, one whose check fails is closed as
    ``unavailable`` (access that cannot be confirmed is not kept)."""
    access = {"team:plan": "edit", "team:spec": "edit", "team:ops": "edit"}

    def check(principal, doc_id):
        if access[doc_id] == "boom":
            raise RuntimeError("directory down")
        return access[doc_id] if principal.user_id == "bob" else "edit"

    rt.docs.access_check = check
    for doc_id in access:
        create_shared(rt, doc_id, text="x")
    alice = editor(rt, "alice", doc_id="team:plan")
    alice.join()
    client = connect(rt, "bob")
    bobs = {doc_id: Editor(client, doc_id) for doc_id in access}  # one connection, 3 docs
    for e in bobs.values():
        assert e.join()["data"]["read_only"] is False
    client.get_received()
    access.update({"team:plan": None, "team:spec": "read", "team:ops": "boom"})

    assert client.call("auth:refresh", {"token": make_token("bob", ttl=600)})["ok"]

    assert sorted(client.events("doc:closed"), key=lambda e: e["doc_id"]) == [
        {"doc_id": "team:ops", "reason": "unavailable"},
        {"doc_id": "team:plan", "reason": "forbidden"}]
    alice.edit(0, "secret plan ")
    assert bobs["team:plan"].receive() == 0
    assert bobs["team:spec"].edit(0, "y")["error"]["code"] == "forbidden"
    assert bobs["team:plan"].edit(0, "y")["error"]["code"] == "conflict"  # join first
    assert rt.docs.read("team:spec")["text"] == "x"


def test_refresh_with_the_same_access_keeps_every_joined_document(rt, editor, make_token):
    create_shared(rt, "spec-42", text="x")
    alice, bob = editor(rt, "alice"), editor(rt, "bob")
    alice.join()
    bob.join()
    bob.client.get_received()
    assert bob.client.call("auth:refresh", {"token": make_token("bob", ttl=600)})["ok"]
    assert bob.client.events("doc:closed") == []
    alice.edit(0, "hello ")
    assert bob.receive() == 1


# -- audit and the HTTP API

def test_join_update_and_leave_are_audited_without_content(rt, editor):
    create_shared(rt, "spec-42")
    alice = editor(rt)
    alice.join()
    alice.edit(0, "top secret words")
    alice.client.call("doc:leave", {"doc_id": "spec-42"})
    join = audit_lines(rt, "doc_join")[-1]
    update = audit_lines(rt, "doc_update")[-1]
    leave = audit_lines(rt, "doc_leave")[-1]
    assert join["details"]["doc_id"] == "spec-42" and join["user_id"] == "alice"
    assert update["details"]["size"] > 0 and update["details"]["doc_id"] == "spec-42"
    assert leave["details"]["reason"] == "leave"
    with open(rt.settings.audit_log) as fh:
        assert "top secret" not in fh.read()


def test_http_create_and_read_a_document(make_rt, editor):
    rt = make_rt(api_keys=[hash_api_key(API_KEY)])
    http = rt.app.test_client()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    created = http.post("/api/v1/docs", json={"doc_id": "readme", "text": "# Title\n"},
                        headers=headers)
    assert created.status_code == 201
    assert created.json["text"] == "# Title\n"
    again = http.post("/api/v1/docs", json={"doc_id": "readme"}, headers=headers)
    assert again.status_code == 409
    granted = http.put("/api/v1/docs/readme/access", headers=headers,
                       json={"grants": [{"user_id": "alice", "mode": "edit"}]})
    assert granted.status_code == 200
    alice = editor(rt, doc_id="readme")
    alice.join()
    alice.edit(len(alice.content), "body")
    got = http.get("/api/v1/docs/readme", headers=headers)
    assert got.json["text"] == "# Title\nbody" and got.json["seq"] == 2
    plain = http.get("/api/v1/docs/readme?format=text", headers=headers)
    assert plain.get_data(as_text=True) == "# Title\nbody"
    assert http.get("/api/v1/docs/missing", headers=headers).status_code == 404
    assert http.get("/api/v1/docs/readme").status_code == 401
    bad = http.post("/api/v1/docs", json={"doc_id": "a b"}, headers=headers)
    assert bad.status_code == 400


def test_read_names_root_types(rt):
    from pycrdt import Map

    create_shared(rt, "meta-doc")
    doc = Doc()
    doc.get("meta", type=Map)["title"] = "Plan"
    doc.get("text", type=Text).insert(0, "body")
    rt.docs._append("meta-doc", doc.get_update(), None)
    read = rt.docs.read("meta-doc", roots={"text": "text", "meta": "map"})
    assert read["content"] == {"text": "body", "meta": {"title": "Plan"}}
