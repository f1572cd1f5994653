#!/usr/bin/env python3
"""Runs the real etr and epraccur fixture sequences (tests/fixtures/ods/csv) through `odsync run`,
one file after another with the run clock at each file's date, and prints per step the counts by
change kind, what an accepted publication shift explains, left-window closures, recoding events,
unmapped roles, and what the shift guard says when it stops a step (the step is then repeated
with --accept-shift).

    python3 bench/ods_series.py <odsync binary> <work dir> [role mapping file]
"""
import json, os, subprocess, sys, shutil, pathlib
ROOT = pathlib.Path(__file__).resolve().parent.parent
binary = sys.argv[1]; out = os.path.abspath(sys.argv[2])
mapping = sys.argv[3] if len(sys.argv) > 3 else str(ROOT / "pipelines" / "role_mapping.toml")
fx = str(ROOT / "tests" / "fixtures" / "ods" / "csv")
seqs = {
 "etr": [("etr-2018-08-31-odsR.csv","2018-09-01"),("etr-2021-nhsx.csv","2021-06-01"),("etr-2025-07-folakeobalakun.csv","2025-07-15"),("etr-2025-12-jhau.csv","2025-12-15")],
 "epraccur": [("epraccur-2015-05-26-odsR-subset-A8-Y00.csv","2015-05-27"),("epraccur-2018-08-31-odsR-subset-A8-Y00.csv","2018-09-01"),("epraccur-2019-11-19-psychty-subset-A8-Y00.csv","2019-11-20"),("epraccur-2026-02-dse-derived-A8-Y00.csv","2026-02-15")],
 "wlhbsite": [("wlhbsite-2025-03-rcpch.csv","2025-03-15")],
}
shutil.rmtree(out, ignore_errors=True); os.makedirs(out)
for kind, files in seqs.items():
    for f, day in files:
        p = pathlib.Path(out)/f"{kind}.toml"
        p.write_text(f'name = "{kind}"\n[source]\ntype = "csv"\nkind = "{kind}"\nlocation = "{fx}/{f}"\n[roles]\nmapping = "{mapping}"\n')
        env = dict(os.environ, ODSYNC_NOW=day+"T06:00:00Z")
        args = [binary, "run", str(p), "--warehouse", out+"/wh", "--json"]
        r = subprocess.run(args, env=env, capture_output=True, text=True)
        shift = False
        if r.returncode != 0 and "accept-shift" in (r.stdout + r.stderr):
            print(f"--- {kind} {f}: guard refused (exit {r.returncode}):")
            print("\n".join("    " + l for l in r.stderr.strip().splitlines() if l.startswith("  - ")))
            r = subprocess.run(args + ["--accept-shift"], env=env, capture_output=True, text=True); shift = True
        try:
            doc = json.loads(r.stdout)
        except Exception:
            print(kind, f, "exit", r.returncode, r.stdout[-500:], r.stderr[-2000:]); continue
        d = doc.get("diff") or {}
        print(f"{kind} {f} exit={r.returncode} shift={shift} kinds={d.get('by_kind')} shift_explains={d.get('by_kind_publication_shift')} left_window={doc.get('records',{}).get('left_window')} recodings={len(d.get('recodings',[]))} unmapped={[ (u['role_id'],u['organisations']) for u in doc.get('unmapped_roles',[])]}")
