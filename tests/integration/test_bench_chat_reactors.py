"""``benchmarks/chat_reactors.py`` still runs: a small message, both databases, both figures
printed (it needs no Node, unlike ``make bench``'s scenarios)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("db", ["--sqlite", None], ids=["sqlite", "postgresql"])
def test_the_chat_reactors_benchmark_prints_both_sides(db: str | None) -> None:
    """``benchmarks/chat_reactors.py`` runs (a small message) and prints the two figures."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "chat_reactors.py"), "--users", "400",
         "--repeat", "3", *([db] if db else [])],
        capture_output=True, text=True, timeout=110, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert "400 reactions over 20 emoji" in lines[0]
    figures = {line[:24].strip(): line[24:].split() for line in lines[2:]}
    assert set(figures) == {"with the index", "primary key only"}
    assert all(len(f) == 2 and all(float(x) > 0 for x in f) for f in figures.values())
