"""The loop-closure bench's per-run table, worst first, from its JSON reports (not a test).

    PYTHONPATH=. .venv/bin/python bench/lc_report.py OUT.json [OUT2.json ...] [--kind houses|twins]

``bench/bench_loop_closure.py`` writes one JSON per invocation (``--out``); this prints, for
every run in them, ATE RMSE of the VO alone, of the PGO before the global BA (reports that have
it) and with loop closure, the final trajectory (cm), their ratio, the max /
p99 / p90 / mean table the issue asks for before and after, accepted and wrong loops, recall,
`mixed` against fp64 and whether every solve converged, sorted by the loop-closed ATE (worst
first), then the counts against the issue's targets (ATE <= 3 cm, <= 1/5 of the VO alone).
A run (sequence and mode) found in several reports is taken from the last one given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: The issue's targets: ATE RMSE with loop closure at most this (m) and this fraction of the VO's.
ATE_TARGET_M, RATIO_TARGET = 0.03, 0.2
HEADER = ("| run | VO alone | PGO alone | **with loop closure** | ratio | max / p99 / p90 / mean with loop closure "
          "| same, VO alone | loops | wrong | recall | `mixed` / fp64 | converged |\n"
          "|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---|")


def run_name(row: dict) -> str:
    """``house s2 RGB-D`` from a row's sequence directory name and VO mode."""
    place, seed = row["sequence"].split("-")[:2]
    return f"{place} {seed} {'RGB-D' if row['mode'] == 'rgbd' else 'stereo'}"


def _cm(stats: dict) -> str:
    return " / ".join(f"{100 * stats[k]:.1f}" for k in ("max", "p99", "p90", "mean"))


def table_row(row: dict) -> str:
    """One markdown row of the per-run table (ATE in cm)."""
    vo, lc, loops = row["ate_vo"], row["ate_mixed"], row["loops"]
    pgo = f"{100 * row['ate_pgo']['rmse']:.2f}" if "ate_pgo" in row else "-"
    return (f"| {run_name(row)} | {100 * vo['rmse']:.1f} | {pgo} | **{100 * lc['rmse']:.2f}** | {lc['rmse'] / vo['rmse']:.2f} "
            f"| {_cm(lc)} | {_cm(vo)} | {loops['accepted']} | {loops['wrong']} | {loops['recall']:.2f} "
            f"| {lc['rmse'] / row['ate_fp64']['rmse']:.3f} | {row['converged']} |")


def counts(rows: list[dict]) -> str:
    """The runs against the issue's targets, and the loops over all of them."""
    within = sum(r["ate_mixed"]["rmse"] <= ATE_TARGET_M for r in rows)
    ratio = sum(r["ate_mixed"]["rmse"] <= RATIO_TARGET * r["ate_vo"]["rmse"] for r in rows)
    accepted = sum(r["loops"]["accepted"] for r in rows)
    wrong = sum(r["loops"]["wrong"] for r in rows)
    closed = sum(r["loops"]["revisits_closed"] for r in rows)
    revisits = sum(r["loops"]["true_revisits"] for r in rows)
    return (f"ATE <= {100 * ATE_TARGET_M:g} cm in {within} of {len(rows)}; <= {RATIO_TARGET:g} of the VO alone in "
            f"{ratio} of {len(rows)}; {wrong} wrong of {accepted} accepted loops; recall {closed / max(revisits, 1):.2f} "
            f"({closed} of {revisits}); every solve converged in {sum(bool(r['converged']) for r in rows)} of {len(rows)}")


def main() -> None:
    """Print the table and the counts of the given reports."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reports", nargs="+", type=Path, help="JSON files written by bench_loop_closure.py --out")
    parser.add_argument("--kind", choices=("houses", "twins"), action="append",
                        help="only these sequences (default: both)")
    args = parser.parse_args()
    kinds = args.kind or ["houses", "twins"]
    latest = {(row["sequence"], row["mode"]): row  # a run in a later report replaces the same run in an earlier one
              for path in args.reports for kind in kinds for row in json.loads(path.read_text()).get(kind, [])}
    rows = list(latest.values())
    rows.sort(key=lambda r: -r["ate_mixed"]["rmse"])
    print(HEADER)
    for row in rows:
        print(table_row(row))
    print()
    print(counts(rows))


if __name__ == "__main__":
    main()
