"""``python -m benchmarks.fuzz``: start a server, fuzz it for ``FUZZ_SECONDS``, report.

Exit status 1 when the server logged an unhandled exception, replied ``internal``, dropped a
bystander, or died; the report names the payloads to reproduce each finding.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path

from .campaign import Campaign, render
from .server import Serve, generous_limits, pin


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fuzz", description=__doc__)
    p.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", 60)),
                   help="length of the campaign (env FUZZ_SECONDS, default 60)")
    p.add_argument("--workers", type=int, default=int(os.environ.get("FUZZ_WORKERS", 12)),
                   help="fuzzing connections in parallel")
    p.add_argument("--bystanders", type=int, default=4)
    p.add_argument("--batch", type=int, default=4, help="schema payloads in flight per connection")
    p.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", 0)) or None,
                   help="random seed (default: a new one, printed)")
    p.add_argument("--redis", nargs="?", const="redis://127.0.0.1:6379/0",
                   default=os.environ.get("FUZZ_REDIS") or None,
                   help="use Redis as broker and message queue (default URL: local 6379)")
    p.add_argument("--replay-seconds", type=float, default=10.0,
                   help="after the campaign, replay candidate payloads to find which one killed"
                        " the server or causes each kind of server error (0: off)")
    p.add_argument("--json", help="also write the full report as JSON to this file")
    p.add_argument("--no-pin", action="store_true",
                   help="do not pin the server to core 0 and the fuzzer to core 1")
    p.add_argument("--keep", action="store_true", help="keep the server's directory (logs)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed or secrets.randbelow(10**6) + 1
    server_pin = [] if args.no_pin else pin(0)
    if server_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1})
    tmp = tempfile.mkdtemp(prefix="dihya-fuzz-")
    env = {**generous_limits(), "DIHYA_RT_RATE_LIMIT_ABUSE_STRIKES": "1000000000"}
    if args.redis:
        env.update({"DIHYA_RT_REDIS_URL": args.redis,
                    "DIHYA_RT_REDIS_PREFIX": f"fuzz-{secrets.token_hex(4)}"})
    server = Serve(Path(tmp), env=env, pin=server_pin)
    print(f"fuzz: server {'on core 0 ' if server_pin else ''}in {tmp}, "
          f"{args.seconds:g} s, seed {seed}" + (f", Redis {args.redis}" if args.redis else ""),
          file=sys.stderr, flush=True)
    server.start()
    try:
        report = Campaign(server, seconds=args.seconds, workers=args.workers,
                          bystanders=args.bystanders, seed=seed,
                          cpu=1 if server_pin else None, batch=args.batch,
                          replay_seconds=args.replay_seconds).run()
    finally:
        server.stop()
    report["server_dir"] = tmp if args.keep else None
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    print(render(report), flush=True)
    if not args.keep:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
