#!/usr/bin/env python3
"""`make bench`, part 2: whole `odsync run`s as users run them, each in its own process, with
wall time and peak RSS (from wait4), side by side with the hand-written DuckDB job.

Scenarios (BENCH_WHOLE selects, comma-separated; default all):
  csv      csv nightly: baseline and next day of gen_epraccur.py files (BENCH_CSV_ROWS, default
           250000,1000000); when Python's duckdb is importable, duckdb_nightly.py runs on the
           same files in the same minutes, alternating, and the ratio is printed
  trud     trud baseline on a national-scale synthetic release (gen_trud.py), then trud monthly
           (the next month's release: diff, history, merge)
  ord      ord incremental: a 371k-organisation pipeline baselined from a TRUD release of the
           local server's state, then /sync deltas of 2,000 changed records from the local
           server (throttle off); then a 2-code refresh

Usage: whole_runs.py ODSYNC_BINARY WORK_DIR
"""
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def run(cmd, env=None, cwd=None):
    """Runs one process; returns (seconds, peak RSS MB, stdout)."""
    started = time.monotonic()
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stderr.write(f"FAILED: {' '.join(cmd)}\n{out.decode()}\n{err.decode()}\n")
        sys.exit(1)
    return seconds, usage.ru_maxrss / 1024.0, out.decode()


def row(name, rows, seconds, rss, extra=""):
    print(f"  {name:<28} {rows:>9,} rows  {seconds:7.2f} s  {rss:7.0f} MB peak  {extra}", flush=True)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def odsync_env(work, now):
    env = dict(os.environ)
    env.update({
        "ODSYNC_PIPELINES_DIR": os.path.join(work, "pipelines"),
        "ODSYNC_WAREHOUSE": os.path.join(work, "warehouse"),
        "ODSYNC_NOW": now,
        "ODSYNC_LOG": "warn",
    })
    return env


def write_pipeline(work, name, text):
    os.makedirs(os.path.join(work, "pipelines"), exist_ok=True)
    with open(os.path.join(work, "pipelines", f"{name}.toml"), "w") as f:
        f.write(text)


def stages(out):
    try:
        doc = json.loads(out)
    except ValueError:
        return ""
    return ", ".join(f"{s['stage']} {s['ms'] / 1000:.1f}" for s in doc.get("stages", []))


def has_duckdb():
    try:
        import duckdb  # noqa: F401
        return True
    except ImportError:
        return False


def csv_nightly(odsync, work, rows, repeats):
    data = os.path.join(work, f"csv-{rows}")
    if not os.path.exists(os.path.join(data, "new.csv")):
        subprocess.run([sys.executable, os.path.join(HERE, "gen_epraccur.py"), "--rows", str(rows), "--out", data],
                       check=True, stdout=subprocess.DEVNULL)
    current = os.path.join(data, "current.csv")
    pipe = f"gp{rows}"
    write_pipeline(work, pipe, f'name = "{pipe}"\n[source]\ntype = "csv"\nkind = "epraccur"\nlocation = "{current}"\n')
    peer = has_duckdb()
    results = {"odsync base": [], "odsync night": [], "duckdb base": [], "duckdb night": []}
    for _ in range(repeats):
        shutil.rmtree(os.path.join(work, "warehouse", pipe), ignore_errors=True)
        shutil.copy(os.path.join(data, "base.csv"), current)
        base = run([odsync, "run", pipe, "--json"], env=odsync_env(work, "2026-09-01T02:00:00Z"))
        shutil.copy(os.path.join(data, "new.csv"), current)
        night = run([odsync, "run", pipe, "--json"], env=odsync_env(work, "2026-09-02T02:00:00Z"))
        results["odsync base"].append(base)
        results["odsync night"].append(night)
        if peer:
            wh = os.path.join(work, f"duckdb-{rows}")
            shutil.rmtree(wh, ignore_errors=True)
            for key, f in (("duckdb base", "base.csv"), ("duckdb night", "new.csv")):
                results[key].append(run([sys.executable, os.path.join(HERE, "duckdb_nightly.py"), os.path.join(data, f), wh]))
    for label in ("base", "night"):
        ours = results[f"odsync {label}"]
        t, m = median([r[0] for r in ours]), median([r[1] for r in ours])
        extra = ""
        if peer:
            theirs = results[f"duckdb {label}"]
            dt, dm = median([r[0] for r in theirs]), median([r[1] for r in theirs])
            extra = f"duckdb job {dt:.2f} s / {dm:.0f} MB; ratio {t / dt:.1f}x"
        row(f"csv {'baseline' if label == 'base' else 'next day'}", rows, t, m, extra)
        print(f"      stages (s): {stages(ours[len(ours) // 2][2])}")
    if not peer:
        print("      (pip install duckdb to time the hand-written DuckDB job beside it)")


def trud(odsync, work):
    data = os.path.join(work, "trud")
    os.makedirs(data, exist_ok=True)
    releases = []
    for month in (1, 2):
        found = [f for f in os.listdir(data) if f.endswith(f"_month{month}.zip")]
        if not found:
            subprocess.run([sys.executable, os.path.join(HERE, "gen_trud.py"), "--out", data, "--month", str(month)],
                           check=True, stdout=subprocess.DEVNULL)
            found = [f for f in os.listdir(data) if f.endswith(f"_month{month}.zip")]
        releases.append(os.path.join(data, found[0]))
    current = os.path.join(data, "current.zip")
    write_pipeline(work, "national", f'name = "national"\n[source]\ntype = "trud_xml"\nlocation = "{current}"\n')
    shutil.rmtree(os.path.join(work, "warehouse", "national"), ignore_errors=True)
    shutil.copy(releases[0], current)
    t, m, out = run([odsync, "run", "national", "--json"], env=odsync_env(work, "2026-08-29T02:00:00Z"))
    orgs = json.loads(out)["records"]["organisations"]
    row("trud baseline", orgs, t, m)
    print(f"      stages (s): {stages(out)}")
    shutil.copy(releases[1], current)
    t, m, out = run([odsync, "run", "national", "--json", "--accept-shift"], env=odsync_env(work, "2026-09-26T02:00:00Z"))
    doc = json.loads(out)
    row("trud monthly", doc["records"]["organisations"], t, m, f"{doc['diff']['changes']:,} change rows")
    print(f"      stages (s): {stages(out)}")


def ord_incremental(odsync, work, sites):
    states = os.path.join(work, "states")
    roles = os.path.join(REPO, "tests/fixtures/ods/roles-2022.json")
    for name, body in (
        ("vol-1", f'served_on = "2026-09-01"\ndata_date = "2026-08-01"\ngenerated_sites = {sites}\n'),
        ("vol-2", f'served_on = "2026-09-02"\ndata_date = "2026-09-02"\ngenerated_sites = {sites}\n'
                  f'generated_changed = 2000\ngenerated_unchanged_since = "2026-08-01"\n'),
    ):
        os.makedirs(os.path.join(states, name), exist_ok=True)
        with open(os.path.join(states, name, "state.toml"), "w") as f:
            f.write(body + f'roles = "{roles}"\n')
    release = os.path.join(work, f"vol-1-release-{sites}.zip")
    if not os.path.exists(release):
        run([odsync, "serve", "--states", states, "--state", "vol-1", "--write-trud", release, "--published", "2026-09-01"])
    port_file = os.path.join(work, "port")
    if os.path.exists(port_file):
        os.remove(port_file)
    server = subprocess.Popen([odsync, "serve", "--states", states, "--state", "vol-2", "--port-file", port_file],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if os.path.exists(port_file):
                break
            time.sleep(0.1)
        port = open(port_file).read().strip()
        write_pipeline(work, "ordvol",
                       f'name = "ordvol"\n[source]\ntype = "ord"\nbase_url = "http://127.0.0.1:{port}/ORD/2-0-0"\n'
                       f'[baseline]\ntype = "trud_xml"\nlocation = "{release}"\n'
                       f'[scope]\nprimary_roles = ["RO198"]\n'
                       f'[http]\nrequests_per_second = 1000.0\nconcurrency = 8\n')
        shutil.rmtree(os.path.join(work, "warehouse", "ordvol"), ignore_errors=True)
        t, m, out = run([odsync, "run", "ordvol", "--json"], env=odsync_env(work, "2026-09-01T02:00:00Z"))
        row("ord baseline via trud", json.loads(out)["records"]["organisations"], t, m)
        t, m, out = run([odsync, "run", "ordvol", "--json"], env=odsync_env(work, "2026-09-02T02:00:00Z"))
        doc = json.loads(out)
        fetch = next((s["ms"] for s in doc["stages"] if s["stage"] == "fetch"), 0) / 1000
        row("ord incremental", doc["records"]["fetched"], t, m, f"of which fetch (HTTP) {fetch:.2f} s; without it {t - fetch:.2f} s")
        print(f"      stages (s): {stages(out)}")
        t, m, out = run([odsync, "run", "ordvol", "--json", "--codes", "GS0001,GS0002"], env=odsync_env(work, "2026-09-02T03:00:00Z"))
        row("codes refresh (2 codes)", json.loads(out)["records"]["organisations"], t, m)
        print(f"      stages (s): {stages(out)}")
    finally:
        server.terminate()
        server.wait()


def main():
    odsync, work = sys.argv[1], os.path.abspath(sys.argv[2])
    if os.sep in odsync:
        odsync = os.path.abspath(odsync)
    os.makedirs(work, exist_ok=True)
    which = os.environ.get("BENCH_WHOLE", "csv,trud,ord").split(",")
    print("whole runs (each its own process; wall time, peak RSS):")
    if "csv" in which:
        repeats = int(os.environ.get("BENCH_REPEATS", "3"))
        for rows in [int(r) for r in os.environ.get("BENCH_CSV_ROWS", "250000,1000000").split(",")]:
            csv_nightly(odsync, work, rows, repeats if rows <= 250000 else 1)
    if "trud" in which:
        trud(odsync, work)
    if "ord" in which:
        ord_incremental(odsync, work, int(os.environ.get("BENCH_ORD_SITES", "371000")))


if __name__ == "__main__":
    main()
