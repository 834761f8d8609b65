"""`make bench` still runs: a tiny acked scenario against our server, through the real harness.

Only our server is started (no Node baseline server), but the load generator is Node, so the
test is skipped where Node or the generator's packages are missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "benchmarks" / "node"

pytestmark = pytest.mark.skipif(
    not shutil.which("node") or not (NODE_DIR / "node_modules" / "socket.io-client").is_dir(),
    reason="needs node and `npm ci --prefix benchmarks/node`",
)


def run_quick_bench(tmp_path: Path, *args: str, timeout: int) -> tuple[str, list[dict]]:
    """`benchmarks/run.py --quick` against our server only: its stdout and JSON-line rows."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--targets", "dihya",
         *args, "--out-dir", str(tmp_path),
         "--dihya", str(Path(sys.executable).parent / "dihya-realtime")],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for f in tmp_path.glob("*.jsonl")
            for line in f.read_text().splitlines()]
    return proc.stdout, rows


@pytest.mark.timeout(60)
def test_quick_acked_bench_reports_a_positive_rate(tmp_path: Path) -> None:
    stdout, lines = run_quick_bench(tmp_path, "--scenario", "acked", "--acked-clients", "50",
                                    "--seconds", "1", timeout=50)
    assert len(lines) == 1
    row = lines[0]
    for key in ("scenario", "target", "acks_per_s", "p50_ms", "p99_ms", "gen_cpu", "server_cpu",
                "valid", "date", "commit", "machine", "pinned"):
        assert key in row, key
    assert row["scenario"] == "acked" and row["target"] == "dihya"
    assert row["acks_per_s"] > 0
    # 50 clients for one second stay inside publish's own limit (50/s, burst 100 each)
    assert row["errors"] == {}
    assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert list(tmp_path.glob("*.md")), "the Markdown table is written too"
    assert "acks/s" in stdout


@pytest.mark.timeout(120)
def test_quick_chat_bench_stores_every_acked_message_warm_up_included(tmp_path: Path) -> None:
    _, rows = run_quick_bench(tmp_path, "--scenario", "chat", "--acked-clients", "20",
                              "--chat-rooms", "2", "--seconds", "1", timeout=110)
    assert sorted(r["database"] for r in rows) == ["postgres", "sqlite"]
    for row in rows:
        assert row["rooms"] == 2 and row["errors"] == {}
        assert row["acked"] == row["sent"] > 0
        assert row["warmup"]["acked"] == row["warmup"]["sent"] > 0
        # the ack promises the row: every acked send, warm-up included, is stored
        assert row["persisted"] == row["acked"] + row["warmup"]["acked"]
        assert 0 < row["p50_ms"] <= row["p99_ms"]


@pytest.mark.timeout(120)
@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")
def test_quick_cluster_bench_an_idle_second_process_costs_little_and_chat_is_counted(
        tmp_path: Path) -> None:
    stdout, rows = run_quick_bench(
        tmp_path, "--scenario", "cluster", "--cluster-parts", "foreign,chat",
        "--cluster-baseline", "none", "--cluster-members", "10", "--seconds", "1", timeout=110)
    foreign = [r for r in rows if r.get("part") == "foreign"]
    chat = [r for r in rows if r.get("part") == "chat"]
    assert len(foreign) == 1 and len(chat) == 1, rows
    row = foreign[0]
    assert row["valid"], row.get("invalid_reason")
    assert row["fixed"]["delivered"] == row["fixed"]["expected"] > 0
    assert row["cpu_a_s"] > 0
    # B has no client: with interest routing it receives none of A's publications (the code
    # before it measured 0.12-0.18 here, B decoding every one of them)
    assert row["b_over_a"] < 0.05, row
    row = chat[0]
    assert row["valid"], row.get("invalid_reason")
    assert row["acked"] == row["sent"] > 0
    assert row["publishes_per_message"] >= 1 and row["deliveries_per_message"] >= 1
    assert row["channels"], "the tap saw the chat messages' channel"
    assert "B CPU / A CPU" in stdout
