#!/usr/bin/python3
"""Trace headers for N requests, as OSProfiler's own client makes them.

usage: osprofiler_headers.py HMAC_KEY N
prints one JSON list of {"base_id", "headers": {"X-Trace-Info", "X-Trace-HMAC"}}"""
import json
import sys

from osprofiler import profiler, web

out = []
for _ in range(int(sys.argv[2])):
    p = profiler.init(sys.argv[1])  # a new base id each time
    h = web.get_trace_id_headers()
    out.append({"base_id": p.get_base_id(), "headers": {k: v.decode() if isinstance(v, bytes) else v for k, v in h.items()}})
    profiler.clean()
print(json.dumps(out))
