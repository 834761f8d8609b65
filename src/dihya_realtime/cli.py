"""``dihya-realtime serve | token | migrate | audit verify | purge | digest | docs |
hash-api-key``.

Imports stay inside the commands: ``serve`` must monkey-patch the standard library for
gevent before anything else imports ``socket`` or ``threading``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path
from typing import Any

DEV_SECRET_FILE = ".dihya-dev-secret"


def _settings(dev: bool = False, **overrides: Any):  # noqa: ANN202 - Settings
    from dihya_realtime.kernel.settings import SettingsError, load_settings

    try:
        settings = load_settings(**overrides) if not dev else load_settings(dev=True, **overrides)
    except SettingsError as exc:
        sys.exit(f"dihya-realtime: {exc}")
    if settings.dev and not settings.jwt_configured:
        settings.jwt_secret = _dev_secret()
    return settings


def _dev_secret() -> Any:
    """A per-checkout random secret for dev mode, kept so `token` and `serve` agree."""
    from dihya_realtime.kernel.devmode import dev_secret

    return dev_secret(DEV_SECRET_FILE)


def cmd_serve(args: argparse.Namespace) -> int:
    import gevent
    from gevent import monkey

    if "GEVENT_TRACK_GREENLET_TREE" not in os.environ:
        # gevent records, for every greenlet, who spawned it and the spawning stack (for
        # its debugging tools); with two engine.io greenlets per connection that was 4.5 KB of
        # RSS per idle connection (benchmarks/README.md, round 5). Opt back in with the variable.
        gevent.config.track_greenlet_tree = False
    monkey.patch_all()
    import logging

    from dihya_realtime.app import create_app
    from dihya_realtime.kernel.auth import mint_token
    from dihya_realtime.kernel.devmode import is_dev_secret
    from dihya_realtime.kernel.settings import SettingsError
    from dihya_realtime.serving import serve_forever

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    quiet_alembic(args.verbose)
    overrides: dict[str, Any] = {"async_mode": "gevent"}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    settings = _settings(dev=args.dev, **overrides)
    try:
        settings.require_production_ready()
    except SettingsError as exc:
        sys.exit(f"dihya-realtime: {exc}")
    app = create_app(settings)
    rt = app.extensions["dihya_realtime"]
    if settings.dev:
        from dihya_realtime.features import migration_branches

        rt.db.migrate(migration_branches(rt.settings.features))

    def ready(host: str, port: int) -> None:
        broker = "redis" if settings.redis_url else "memory"
        mode = "dev" if settings.dev else "production"
        print(f"dihya-realtime ready on http://{host}:{port} ({mode} mode, database "
              f"{settings.database_url.split('://')[0]}, {broker} broker, pid {os.getpid()})",
              flush=True)
        if settings.dev and not is_dev_secret(settings.jwt_secret):
            print("dev mode with a configured JWT secret: no demo tokens, no POST /dev/token "
                  "(they sign only with the generated dev secret)", flush=True)
        elif settings.dev:
            for user, roles in (("alice", ["user", "moderator"]), ("bob", ["user"])):
                token = mint_token(settings, user, roles, name=user.capitalize(), ttl=8 * 3600)
                print(f"demo token for {user} ({','.join(roles)}): {token}", flush=True)
            print(f"connect: io('http://{host}:{port}', {{auth: {{token: '<token>'}}}})",
                  flush=True)

    return serve_forever(app, rt, settings.host, settings.port, ready)


def quiet_alembic(verbose: bool = False) -> None:
    """Keep Alembic's INFO lines (plugin set-up, "Context impl SQLiteImpl.", every "Running
    upgrade") out of the server's output: Alembic logs at WARNING and above unless ``--verbose``
    or the user's own logging configuration already chose a level for the ``alembic`` logger."""
    import logging

    alembic = logging.getLogger("alembic")
    if verbose:
        alembic.setLevel(logging.INFO)
    elif alembic.level == logging.NOTSET:
        alembic.setLevel(logging.WARNING)


class _UpgradeCounter:
    """Counts Alembic's "Running upgrade" records while ``migrate`` runs, for its one line."""

    def __init__(self) -> None:
        import logging

        self.logger = logging.getLogger("alembic.runtime.migration")
        self.applied = 0
        self.handler = logging.Handler()
        self.handler.emit = self._emit  # type: ignore[method-assign]

    def _emit(self, record: Any) -> None:
        if record.getMessage().startswith("Running upgrade"):
            self.applied += 1

    def __enter__(self) -> _UpgradeCounter:
        import logging

        self.level = self.logger.level
        self.logger.setLevel(logging.INFO)  # the records exist; quiet_alembic hides the others
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)


def cmd_token(args: argparse.Namespace) -> int:
    from dihya_realtime.kernel.auth import mint_token

    settings = _settings(dev=args.dev)
    roles = [r for r in (args.roles or "").split(",") if r]
    print(mint_token(settings, args.user, roles, name=args.name, ttl=args.ttl))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from dihya_realtime.features import migration_branches
    from dihya_realtime.store import Database

    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    quiet_alembic(args.verbose)
    settings = _settings(dev=args.dev)
    with _UpgradeCounter() as counter:
        Database(settings.database_url).migrate(migration_branches(settings.features))
    done = (f"{counter.applied} revision(s) applied" if counter.applied
            else "already up to date")
    print(f"database migrated: {settings.database_url.split('://')[0]}, {done}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from dihya_realtime.kernel.audit import verify
    from dihya_realtime.store import Database

    settings = _settings(dev=args.dev)
    database = Database(settings.database_url)
    if not database.has_table("audit_events"):
        print("no audit trail in this database: run `dihya-realtime migrate` first",
              file=sys.stderr)
        return 2
    result = verify(database)
    if result.ok:
        print(f"audit trail intact: {result.rows} rows")
        return 0
    if result.intact:  # the chain holds, but records were lost before reaching it
        print(f"audit trail INCOMPLETE: {result.reason}", file=sys.stderr)
        return 1
    print(f"audit trail TAMPERED: {result.reason}", file=sys.stderr)
    return 1


def cmd_purge(args: argparse.Namespace) -> int:
    from dihya_realtime.features.notifications.service import purge_notifications
    from dihya_realtime.kernel.audit import AuditLog
    from dihya_realtime.kernel.settings import parse_duration
    from dihya_realtime.store import Database

    settings = _settings(dev=args.dev)
    try:
        age = (parse_duration(args.older_than) if args.older_than
               else settings.notifications_retention)
    except ValueError as exc:
        sys.exit(f"dihya-realtime: --older-than: {exc}")
    db = Database(settings.database_url)
    deleted = purge_notifications(db, age)
    audit = AuditLog(db if settings.audit_db else None, settings.audit_log)
    audit.record("notifications_purged", outcome="ok",
                 details={"deleted": deleted, "older_than_seconds": age})
    audit.close()
    db.dispose()
    print(f"purged {deleted} read or archived notifications older than {age:g}s")
    return 0


def cmd_digest(args: argparse.Namespace) -> int:
    """Send the due email digests once and exit (for cron); prints how many went out."""
    import logging

    from dihya_realtime.features.notifications.digest import DigestNotConfigured, DigestService
    from dihya_realtime.features.notifications.digest_tokens import NoSigningKey
    from dihya_realtime.kernel.audit import AuditLog
    from dihya_realtime.store import Database

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    settings = _settings(dev=args.dev)
    db = Database(settings.database_url)
    if not db.has_table("notification_digests"):
        db.dispose()
        print("no digest tables in this database: run `dihya-realtime migrate` first",
              file=sys.stderr)
        return 2
    audit = AuditLog(db if settings.audit_db else None, settings.audit_log)
    try:
        run = DigestService(db, settings, audit.record).send_due()
    except (DigestNotConfigured, NoSigningKey) as exc:
        print(f"dihya-realtime: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the SMTP server did not answer: nothing was claimed
        print(f"dihya-realtime: SMTP unreachable ({type(exc).__name__}); nothing sent",
              file=sys.stderr)
        return 1
    finally:
        audit.close()
        db.dispose()
    print(f"digests sent: {run.sent} ({run.items} notifications), failed: {run.failed}, "
          f"without an address: {run.no_address}")
    return 1 if run.stopped else 0


def cmd_docs(args: argparse.Namespace) -> int:
    import dihya_realtime.app  # noqa: F401 - declares every event
    from dihya_realtime.docs import write_docs
    from dihya_realtime.kernel.registry import registry

    stale = write_docs(registry, Path(args.root), check=args.check)
    if args.check:
        if stale:
            print("stale generated docs: " + ", ".join(stale), file=sys.stderr)
            return 1
        print("generated docs are current")
        return 0
    print("wrote " + (", ".join(stale) if stale else "nothing (already current)"))
    return 0


def cmd_hash_api_key(args: argparse.Namespace) -> int:
    from dihya_realtime.kernel.auth import hash_api_key

    key = args.key or secrets.token_urlsafe(32)
    if not args.key:
        print(f"key (give it to the caller, keep it secret): {key}")
    print(f"hash (put it in DIHYA_RT_API_KEYS): {hash_api_key(key)}")
    return 0


def cmd_vapid_keys(args: argparse.Namespace) -> int:
    """Make the Web Push (VAPID) key pair: the private key to a new PEM file, the public key
    printed in the browser's ``applicationServerKey`` form."""
    from pathlib import Path

    from dihya_realtime.features.notifications.push_vapid import generate_key_pair

    path = Path(args.private_key_file)
    try:
        public_key = generate_key_pair(path)
    except FileExistsError:
        print(f"{path} exists: a new key would end every browser's subscription; "
              "remove it first if that is what you want", file=sys.stderr)
        return 1
    print(f"private key (set DIHYA_RT_VAPID_PRIVATE_KEY_FILE={path}): written, mode 0600")
    print(f"public key (applicationServerKey): {public_key}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dihya-realtime",
                                     description="Realtime (Socket.IO) backend for Flask apps")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_dev(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--dev", action="store_true",
                       help="dev mode: SQLite file, memory broker, a local dev JWT secret")
        return p

    p = with_dev(sub.add_parser("serve", help="run the server (gevent)"))
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--verbose", action="store_true", help="log Alembic's migration steps too")
    p.set_defaults(func=cmd_serve)

    p = with_dev(sub.add_parser("token", help="mint a JWT with the configured key"))
    p.add_argument("--user", required=True)
    p.add_argument("--roles", default="user")
    p.add_argument("--name")
    p.add_argument("--ttl", type=float, default=3600)
    p.set_defaults(func=cmd_token)

    p = with_dev(sub.add_parser("migrate", help="create or upgrade the database schema"))
    p.add_argument("--verbose", action="store_true", help="log each Alembic step")
    p.set_defaults(func=cmd_migrate)

    audit = sub.add_parser("audit", help="audit trail tools")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    p = with_dev(audit_sub.add_parser("verify", help="check the hash chain; exit 1 if tampered"))
    p.set_defaults(func=cmd_audit_verify)

    p = with_dev(sub.add_parser(
        "purge", help="delete read or archived notifications older than the retention"))
    p.add_argument("--older-than", help="an age such as 30d or 12h "
                   "(default: DIHYA_RT_NOTIFICATIONS_RETENTION, 30d)")
    p.set_defaults(func=cmd_purge)

    p = with_dev(sub.add_parser("digest", help="send the due email digests once (for cron)"))
    p.set_defaults(func=cmd_digest)

    p = sub.add_parser("docs", help="generate the events reference and the AsyncAPI document")
    p.add_argument("--check", action="store_true", help="exit 1 if the generated files are stale")
    p.add_argument("--root", default=".")
    p.set_defaults(func=cmd_docs)

    p = sub.add_parser("hash-api-key", help="make an API key and the hash to configure")
    p.add_argument("--key", help="hash this key instead of making a new one")
    p.set_defaults(func=cmd_hash_api_key)

    p = sub.add_parser("vapid-keys", help="make the Web Push (VAPID) key pair")
    p.add_argument("--private-key-file", default="vapid_private_key.pem",
                   help="where to write the private key (PEM); never overwritten")
    p.set_defaults(func=cmd_vapid_keys)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
