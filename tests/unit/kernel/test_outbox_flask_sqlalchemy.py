"""The docs' Flask-SQLAlchemy example, run: a view commits an order and its publication
together, or neither (docs/host-integration.md)."""

from __future__ import annotations

import pytest
from flask import Flask, abort
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dihya_realtime import Realtime
from tests.unit.conftest import Inbox, fresh_registry, wait_until


@pytest.fixture
def host_app(settings_overrides, database_url):
    app = Flask("shop")
    app.config.update(SECRET_KEY="test", SQLALCHEMY_DATABASE_URI=database_url)

    class Model(DeclarativeBase):  # one per app: each test declares its tables again
        pass

    db = SQLAlchemy(app, model_class=Model)

    class Order(db.Model):  # type: ignore[name-defined]
        __tablename__ = "shop_orders"
        id: Mapped[int] = mapped_column(primary_key=True)
        item: Mapped[str]

    rt = Realtime(registry_=fresh_registry(), **{**settings_overrides,
                                                  "database_url": database_url,
                                                  "outbox_poll_interval": 0.1,
                                                  "outbox_lease": 2})
    rt.db.migrate()
    rt.init_app(app)

    @app.post("/orders/<item>")
    def place_order(item: str):
        order = Order(item=item)
        db.session.add(order)
        db.session.flush()
        rt.publish("live:orders", {"id": order.id, "item": item}, session=db.session)
        if item == "unavailable":
            abort(409)  # the request fails: Flask-SQLAlchemy rolls the session back
        db.session.commit()
        return {"id": order.id}

    with app.app_context():
        db.create_all()
    yield app, rt, db, Order
    rt.close()


def test_a_committed_view_publishes_and_a_failed_one_does_not(host_app, connect):
    app, rt, db, order_model = host_app
    watcher = connect(rt, "alice", roles=("admin",))
    assert watcher.call("subscribe", {"channel": "live:orders"})["ok"]
    inbox = Inbox(watcher)
    http = app.test_client()
    assert http.post("/orders/unavailable").status_code == 409
    assert http.post("/orders/book").status_code == 200
    wait_until(lambda: [p["data"]["item"] for p in inbox.events("publication")] == ["book"])
    assert rt.outbox.relay.run_once() == 0
    assert [p["data"]["item"] for p in inbox.events("publication")] == ["book"]
    with app.app_context():
        assert [o.item for o in db.session.query(order_model).all()] == ["book"]
