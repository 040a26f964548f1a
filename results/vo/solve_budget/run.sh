cd /work/main
for spec in 18:A 18:B 10:A 10:B 18:B 18:A 10:B 10:A; do
  s=${spec%:*}; v=${spec#*:}
  extra=""; [ $v = B ] && extra="--set ba.max_solve_time_ms=40"
  OPENBLAS_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/bench_vo.py --seeds 0 --speed-seed $s --speed-duration 60 --modes rgbd stereo --kitti /nonexistent --cache /tmp/vo/cache --output /tmp/vo/budget/out_${s}_$v $extra > /tmp/vo/budget/${s}_$v.$(date +%s).log 2>&1
  python3 - "$s" "$v" <<'PY'
import json,sys
d=json.load(open(f"/tmp/vo/budget/out_{sys.argv[1]}_{sys.argv[2]}/summary.json"))
for r in d.get("speed", []):
    print(sys.argv[1], sys.argv[2], r["mode"], "lost", r["lost"], "drift %.2f" % r["drift_percent"], "ate %.1f cm" % (100*r["ate_rmse_m"]), "ba p50/p95 %.1f/%.1f" % (r["ba_ms"]["p50"], r["ba_ms"]["p95"]), "limited", r.get("ba_time_limited"), "of", r["ba_solves"], "track p95 %.1f" % r["tracking_ms"]["p95"], "rtf %.2f" % r["real_time_factor"], flush=True)
PY
done
