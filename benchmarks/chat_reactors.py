"""``chat:reactors`` on a message many people reacted to, with and without its index, in one
run (issue 18: "who reacted").

Seeds one message with ``--users`` reactions spread over ``--kinds`` emoji on a fresh
PostgreSQL database (or SQLite with ``--sqlite``), then times the service call behind
``chat:reactors`` (its count and its first page) for one emoji: first with the migration's
index ``ix_chat_reactions_message_emoji_user``, then with it dropped (the baseline: only the
primary key ``(message_id, user_id, emoji)``). Prints the median and p95 of each side by side:

    .venv/bin/python benchmarks/chat_reactors.py
    .venv/bin/python benchmarks/chat_reactors.py --users 100000 --kinds 20 --repeat 200
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa

INDEX = "ix_chat_reactions_message_emoji_user"
POSTGRES_ADMIN = os.environ.get("DIHYA_RT_BENCH_POSTGRES_ADMIN",
                                "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def timings(call, repeat: int) -> tuple[float, float]:
    """Median and p95 of ``repeat`` calls, in milliseconds."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--kinds", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()

    from flask import Flask

    from dihya_realtime.features.chat.service import Actor
    from dihya_realtime.realtime import Realtime

    name = f"dihya_bench_reactors_{os.getpid()}"
    admin = None
    if args.sqlite:
        url = f"sqlite:///{tempfile.mkdtemp()}/r.db"
    else:
        admin = sa.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    rt = Realtime(jwt_secret="x" * 40, async_mode="threading", database_url=url,
                  audit_log="off", audit_db=False, chat_max_reaction_kinds=max(20, args.kinds))
    try:
        rt.db.migrate()
        rt.init_app(Flask("bench"))  # the features (rt.chat) come with the app
        owner = Actor("owner", "Owner")
        room = rt.chat.create_room(owner, "bench", None, "public")["id"]
        message = rt.chat.send(owner, room, "react to me", str(uuid.uuid4()))[0]["id"]
        emoji = [f":e{k}:" for k in range(args.kinds)]
        now = datetime.now(UTC)
        rows = [{"message_id": message, "user_id": f"u{i:07d}", "emoji": emoji[i % args.kinds],
                 "created_at": now} for i in range(args.users)]
        with rt.db.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO chat_reactions (message_id, user_id, emoji, "
                                 "created_at) VALUES (:message_id, :user_id, :emoji, "
                                 ":created_at)"), rows)
            if not args.sqlite:
                conn.execute(sa.text("ANALYZE chat_reactions"))

        def call() -> None:
            page = rt.chat.reactors(owner, message, emoji[0])
            assert page["count"] == len(range(0, args.users, args.kinds)), page["count"]

        with_index = timings(call, args.repeat)
        with rt.db.engine.begin() as conn:
            conn.execute(sa.text(f"DROP INDEX {INDEX}"))
            if not args.sqlite:
                conn.execute(sa.text("ANALYZE chat_reactions"))
        without = timings(call, args.repeat)
        db = "sqlite" if args.sqlite else "postgresql"
        print(f"chat:reactors, one message with {args.users} reactions over {args.kinds} emoji "
              f"({db}, {args.repeat} calls each): count + first page of one emoji")
        print(f"{'':24}{'median ms':>12}{'p95 ms':>12}")
        print(f"{'with the index':24}{with_index[0]:12.2f}{with_index[1]:12.2f}")
        print(f"{'primary key only':24}{without[0]:12.2f}{without[1]:12.2f}")
    finally:
        rt.close()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
