"""Run benchmark groups, print a table, merge the figures into var/bench/latest.json.

Each `benchmarks/bench_<group>.py` has `run() -> dict[str, float]` returning flat
metric names (e.g. `audit.appends_per_s_1`). Speed figures come with their baseline
measured in the same run, so a ratio means something on any machine.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).parent
OUT = Path("var/bench/latest.json")


def groups() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    wanted = argv or groups()
    unknown = set(wanted) - set(groups())
    if unknown:
        print(
            f"unknown benchmark group(s): {', '.join(sorted(unknown))}; have: {', '.join(groups())}"
        )
        return 2
    console = Console()
    results: dict[str, float] = {}
    for group in wanted:
        console.print(f"[bold]bench {group}[/] …")
        started = time.perf_counter()
        module = importlib.import_module(f"benchmarks.bench_{group}")
        figures = module.run()
        results.update(figures)
        console.print(f"  done in {time.perf_counter() - started:.1f}s")
    table = Table(title="minyun benchmarks")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in sorted(results.items()):
        table.add_row(name, f"{value:,.3f}" if isinstance(value, float) else str(value))
    console.print(table)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    merged = json.loads(OUT.read_text()) if OUT.exists() else {}
    merged.update(results)
    OUT.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    console.print(f"written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
