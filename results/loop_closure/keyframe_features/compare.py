"""Rows of bench_loop_closure JSON files against the README's rows (results/loop_closure/neighbours/),
worst loop-closed ATE first: VO, PGO and loop-closed ATE RMSE (cm) before / after, the ratio to the
VO alone, loops, recall, `mixed` / fp64 and the global BA's size and time.

    PYTHONPATH=. .venv/bin/python results/loop_closure/keyframe_features/compare.py results/loop_closure/keyframe_features/extra_1500_*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

BEFORE = Path(__file__).resolve().parents[1] / "neighbours"


def rows(files: list[Path]) -> dict[tuple[str, str], dict]:
    """Each file's runs by (sequence without its duration suffix, mode); later files win."""
    out = {}
    for path in files:
        data = json.loads(path.read_text())
        for run in data["houses"] + data["twins"]:
            out[(run["sequence"].split("-180s")[0], run["mode"])] = run
    return out


def cm(run: dict, key: str) -> float:
    """ATE RMSE (cm) of trajectory ``key`` (``ate_vo``, ``ate_pgo``, ``ate_mixed``) of ``run``."""
    return 100.0 * run[key]["rmse"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("after", type=Path, nargs="+")
    args = parser.parse_args()
    before, after = rows(sorted(BEFORE.glob("*.json"))), rows(args.after)
    print("run | VO | PGO | loop-closed | change | ratio | loops (wrong) | recall | mixed/fp64 | global BA observations, solve + association s")
    for key in sorted(after, key=lambda k: -cm(after[k], "ate_mixed")):
        a, b = after[key], before[key]
        lc_a, lc_b = cm(a, "ate_mixed"), cm(b, "ate_mixed")
        ba = a["global_ba"]
        print(f"{key[0]} {key[1]} | {cm(b, 'ate_vo'):.2f} / {cm(a, 'ate_vo'):.2f} | {cm(b, 'ate_pgo'):.2f} / {cm(a, 'ate_pgo'):.2f} | "
              f"{lc_b:.2f} -> {lc_a:.2f} | {100 * (lc_a / lc_b - 1):+.0f}% | {lc_b / cm(b, 'ate_vo'):.3f} -> {lc_a / cm(a, 'ate_vo'):.3f} | "
              f"{b['loops']['accepted']} -> {a['loops']['accepted']} ({a['loops']['wrong']}) | {b['loops']['recall']:.2f} -> {a['loops']['recall']:.2f} | "
              f"{a['ate_mixed']['rmse'] / a['ate_fp64']['rmse']:.3f} | {ba['observations']}, {ba['solve_s']:.0f} + {ba['association_s']:.0f}")


if __name__ == "__main__":
    main()
