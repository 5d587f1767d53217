"""benchmarks/contention.py: one workload alone and in two processes at once, as a table row."""

from __future__ import annotations

import re

from benchmarks import contention


def test_the_table_has_a_row_per_workload_with_its_slowdown(capsys) -> None:
    assert contention.main(["--only", "alu", "--seconds", "0.2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| workload |")
    (row,) = [line for line in out if line.startswith("| alu |")]
    alone, both, slowdown = (cell.strip() for cell in row.strip("|").split("|")[1:])
    assert re.fullmatch(r"[\d.]+ / [\d.]+", alone) and re.fullmatch(r"[\d.]+, [\d.]+", both)
    assert float(slowdown.rstrip("×")) > 0
