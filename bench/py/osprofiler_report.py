#!/usr/bin/python3
"""OSProfiler's own account of traced requests, for the `diagnose` benchmark.

usage: osprofiler_report.py CONNECTION_STRING < base_ids   (one trace base id per line)
prints one JSON object: {base_id: {project: {"db": N, "db_ms": MS, "wsgi": [[method, path, ms], ...], "statements": [SQL, ...]}}}
The report is what `osprofiler trace show --json` prints (the driver's get_report)."""
import json
import sys

from osprofiler.drivers import base

out = {}
for line in sys.stdin:
    base_id = line.strip()
    if not base_id:
        continue
    # a driver keeps one report's state (its start time): one driver per trace
    report = base.get_driver(sys.argv[1]).get_report(base_id)
    per = {}

    def walk(node):
        for c in node.get("children", []):
            i = c["info"]
            p = per.setdefault(i.get("project") or "?", {"db": 0, "db_ms": 0, "wsgi": [], "statements": []})
            # SQLAlchemy's spans: "db" (Keystone), "neutron.db" (neutron_lib's add_tracing)
            if i["name"] == "db" or i["name"].endswith(".db"):
                p["db"] += 1
                p["db_ms"] += i["finished"] - i["started"]
                db = i.get("meta.raw_payload." + i["name"] + "-start", {}).get("info", {}).get("db", {})
                p["statements"].append(str(db.get("statement", ""))[:2048])
            elif i["name"] == "wsgi":
                r = i.get("meta.raw_payload.wsgi-start", {}).get("info", {}).get("request", {})
                p["wsgi"].append([r.get("method"), r.get("path"), i["finished"] - i["started"]])
            walk(c)

    walk(report)
    out[base_id] = per
print(json.dumps(out))
