#!/usr/bin/env python3
"""evaluate.py: scores the correlator's incidents against fleet-sim's ground
truth (tests/fleet/README.md, /work/fleet-spec.md's truth format).

For every injected incident of the truth it finds the stored spike events
(host, kind, host-clock time), the incident the correlator put most of them
in, and that incident's #1 suspect. It prints, per cause: incidents found
with the right #1 suspect, decoys at #1, and the false incidents (incidents
made mostly of baseline noise) per 100 host-hours. With --spikes-at N it
also asks `spikehound spikes --at T --window W --json` around N injected
burst incidents and prints the precision and recall of the hosts returned.

usage: evaluate.py --dsn DSN --truth FILE [--cli PATH --server URL]
                   [--spikes-at N] [--min-found 0.95] [--max-false 1.0]
Exit status: 0 when the thresholds hold, 1 when not, 2 on bad input.
"""
import argparse
import csv
import io
import json
import os
import statistics
import subprocess
import sys


def psql(dsn, sql):
    out = subprocess.run(["psql", dsn, "-qAt", "-c", f"COPY ({sql}) TO STDOUT WITH CSV"],
                         check=True, capture_output=True, text=True).stdout
    return list(csv.reader(io.StringIO(out)))


def comm_of(feature):
    """The process a process-type feature names, or None."""
    kind, _, rest = feature.partition(":")
    if kind in ("process", "started"):
        return rest
    if kind == "cmdline":
        first = rest.split(" ", 1)[0]
        return os.path.basename(first)[:15]
    return None


def matches(top, want):
    if top is None:
        return False
    if top == want:
        return True
    c = comm_of(want)
    return c is not None and comm_of(top) == c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--truth", required=True)
    ap.add_argument("--cli")
    ap.add_argument("--server")
    ap.add_argument("--spikes-at", type=int, default=0)
    ap.add_argument("--window", default="2s")
    ap.add_argument("--min-found", type=float, default=0.95)
    ap.add_argument("--max-false", type=float, default=1.0)
    a = ap.parse_args()

    run, causes, spikes, hosts = None, {}, [], {}
    with open(a.truth) as f:
        for line in f:
            j = json.loads(line)
            t = j.get("type")
            if t == "run":
                run = j
            elif t == "cause":
                causes[j["name"]] = j
            elif t == "spike":
                spikes.append(j)
            elif t == "host":
                hosts[j["host_id"]] = j
    if run is None:
        print("evaluate: no run line in the truth", file=sys.stderr)
        return 2

    # stored events: (host, kind, host-clock µs) -> incident
    ev = {}
    for host, kind, us, inc in psql(a.dsn, "SELECT replace(host_id::text, '-', ''), kind,"
                                    " (extract(epoch FROM ts) * 1000000)::bigint,"
                                    " coalesce(incident_id, 0) FROM spike_events"):
        ev[(host, kind, int(us))] = int(inc)
    incidents = {}
    for iid, typ, kind, nhosts, nev in psql(a.dsn, "SELECT incident_id, type, kind, hosts, events"
                                            " FROM incidents"):
        incidents[int(iid)] = {"type": typ, "kind": kind, "hosts": int(nhosts), "events": int(nev),
                               "top": None, "truth": 0}
    for iid, feat, sw, st, ow, ot, p in psql(a.dsn, "SELECT incident_id, feature, spiking_with,"
                                             " spiking_total, others_with, others_total, p_value"
                                             " FROM incident_suspects WHERE rank = 1"):
        if int(iid) in incidents:
            incidents[int(iid)]["top"] = feat
            incidents[int(iid)]["top_counts"] = f"{sw}/{st} vs {ow}/{ot}, p={float(p):.2g}"

    # truth incidents -> majority correlator incident
    by_inc = {}
    unmatched = 0
    for s in spikes:
        key = (s["host_id"].replace("-", "").lower(), s["kind"], s["host_ts_ns"] // 1000)
        inc = ev.get(key)
        if inc is None:
            unmatched += 1
            continue
        by_inc.setdefault(s["incident"], {"cause": s["cause"], "hits": {}, "events": [],
                                          "hosts": set()})
        d = by_inc[s["incident"]]
        d["hits"][inc] = d["hits"].get(inc, 0) + 1
        d["events"].append(s)
        d["hosts"].add(key[0])
        if inc in incidents:
            incidents[inc]["truth"] += 1
    per_cause = {}
    for name, d in sorted(by_inc.items()):
        inc, n = max(((i, c) for i, c in d["hits"].items() if i), key=lambda x: x[1],
                     default=(0, 0))
        c = causes.get(d["cause"], {})
        top = incidents.get(inc, {}).get("top")
        ok = matches(top, c.get("feature", ""))
        pc = per_cause.setdefault(d["cause"], {"incidents": 0, "found": 0, "misses": []})
        pc["incidents"] += 1
        pc["found"] += ok
        if not ok:
            pc["misses"].append((name, inc, top, n, sum(d["hits"].values())))
    decoys = {c["feature"] for c in causes.values() if c.get("decoy")}

    def is_decoy(top):
        return top is not None and (top in decoys or any(
            comm_of(top) == comm_of(f) for f in decoys if comm_of(f)))
    false_inc = [i for i, d in incidents.items() if d["truth"] * 2 < d["events"]]
    # the decoy must never be #1 of an incident made of injected spikes
    decoy_top = sum(1 for i, d in incidents.items() if i not in false_inc and is_decoy(d["top"]))
    decoy_noise = sum(1 for i in false_inc if is_decoy(incidents[i]["top"]))
    host_hours = float(run.get("host_hours", 0)) or 1.0
    false_rate = 100.0 * len(false_inc) / host_hours

    print(f"truth: {len(spikes)} injected spikes ({unmatched} not stored), "
          f"{len(by_inc)} injected incidents, {host_hours:.0f} host-hours; "
          f"correlator: {len(incidents)} incidents")
    total, found = 0, 0
    for cause, pc in sorted(per_cause.items()):
        want = causes.get(cause, {}).get("feature", "?")
        print(f"  cause {cause}: {pc['found']}/{pc['incidents']} incidents with #1 = {want}")
        for name, inc, top, n, tot in pc["misses"][:5]:
            det = incidents.get(inc, {}).get("top_counts", "")
            print(f"    miss {name}: incident {inc or '-'} ({n}/{tot} of its spikes), #1 {top} {det}")
        total += pc["incidents"]
        found += pc["found"]
    for iid in sorted(false_inc)[:5]:
        d = incidents[iid]
        print(f"  false incident {iid}: {d['type']} {d['kind']} on {d['hosts']} hosts, "
              f"{d['events']} events, #1 {d['top']}")
    share = found / total if total else 0.0
    print(f"found: {found}/{total} = {100 * share:.1f}% (want >= {100 * a.min_found:.0f}%); "
          f"decoy at #1: {decoy_top} (and of {decoy_noise} noise incidents); "
          f"false incidents: {len(false_inc)} = "
          f"{false_rate:.2f} per 100 host-hours (want <= {a.max_false})")
    ok = share >= a.min_found and decoy_top == 0 and false_rate <= a.max_false

    if a.spikes_at and a.cli and a.server:
        bursts = [(n, d) for n, d in sorted(by_inc.items()) if "#" in n][:a.spikes_at]
        precs, recs = [], []
        for name, d in bursts:
            ts = statistics.median(s["ts_ns"] for s in d["events"])
            kind = d["events"][0]["kind"]
            out = subprocess.run([a.cli, "--server", a.server, "--json", "spikes", "--at",
                                  "@%.6f" % (ts / 1e9), "--window", a.window, "--kind", kind,
                                  "--limit", "100000"], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"  spikes --at for {name} failed: {out.stderr.strip()}")
                ok = False
                continue
            got = {s["host_id"].replace("-", "").lower() for s in json.loads(out.stdout)["spikes"]}
            inter = got & d["hosts"]
            precs.append(len(inter) / len(got) if got else 0.0)
            recs.append(len(inter) / len(d["hosts"]))
        if precs:
            print(f"spikes --at (window {a.window}, kind of the incident) over {len(precs)} "
                  f"injected bursts: precision mean {100 * statistics.mean(precs):.1f}% "
                  f"(min {100 * min(precs):.1f}%), recall mean {100 * statistics.mean(recs):.1f}% "
                  f"(min {100 * min(recs):.1f}%)")
    print("RESULT:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
