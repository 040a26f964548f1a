"""Per run: frame ATE RMSE (cm) before and after, from two sets of bench_loop_closure.json files.

    python3 results/loop_closure/robust_pgo/compare.py --before A.json B.json --after C.json D.json
"""
import argparse
import json

p = argparse.ArgumentParser()
p.add_argument("--before", nargs="+", required=True)
p.add_argument("--after", nargs="+", required=True)
a = p.parse_args()


def runs(paths):
    out = {}
    for path in paths:
        report = json.load(open(path))
        for row in report.get("houses", []) + report.get("twins", []):
            out[(row["sequence"], row["mode"])] = row
    return out


before, after = runs(a.before), runs(a.after)
print("| run | VO alone | before | after | change | max before / after | loops before / after | wrong after |")
print("|---|---:|---:|---:|---:|---|---|---:|")
for key in sorted(after, key=lambda k: after[k]["ate_mixed"]["rmse"] - before.get(k, after[k])["ate_mixed"]["rmse"]):
    if key not in before:
        continue
    b, c = before[key], after[key]
    name = key[0].split("-180s")[0].replace("-s", " s") + " " + ("RGB-D" if key[1] == "rgbd" else key[1])
    print(f"| {name} | {100 * c['ate_vo']['rmse']:.2f} | {100 * b['ate_mixed']['rmse']:.2f} | {100 * c['ate_mixed']['rmse']:.2f} | "
          f"{100 * (c['ate_mixed']['rmse'] / b['ate_mixed']['rmse'] - 1):+.0f}% | {100 * b['ate_mixed']['max']:.1f} / {100 * c['ate_mixed']['max']:.1f} | "
          f"{b['loops']['accepted']} / {c['loops']['accepted']} | {c['loops']['wrong']} |")
