#!/usr/bin/python3
"""Validate CADF events (JSON lines on stdin, `stackbpf audit export --format cadf`)
with pycadf's own classes (Debian python3-pycadf). pycadf has no from-dict: the
object tree is rebuilt with its constructors, where every attribute goes through
pycadf's validators (a bad action, outcome, typeURI or id raises ValueError),
then Event.is_valid() and as_dict() must give the input back.
Prints one JSON summary line: {"events", "valid", "roundtrip", "warnings", "bad": [...]}."""
import json, sys, warnings
from pycadf import attachment, event, host, measurement, metric, reason, resource

def extra(obj, d, used):
    for k, v in d.items():
        if k not in used:
            setattr(obj, k, v)
    return obj

def res(d):
    if d is None:
        return None
    kw = {k: d[k] for k in ('id', 'typeURI', 'name', 'ref', 'domain') if k in d}
    if 'host' in d:
        h = d['host']
        kw['host'] = host.Host(**{k: h[k] for k in ('id', 'address', 'agent', 'platform') if k in h})
    return extra(resource.Resource(**kw), d, ('id', 'typeURI', 'name', 'ref', 'domain', 'host'))

def ev(d):
    e = event.Event(eventType=d['eventType'], id=d['id'], eventTime=d['eventTime'], action=d['action'],
                    outcome=d['outcome'], initiator=res(d['initiator']), target=res(d['target']),
                    observer=res(d['observer']),
                    reason=reason.Reason(**d['reason']) if 'reason' in d else None)
    for m in d.get('measurements', []):
        mt = m['metric']
        e.add_measurement(measurement.Measurement(result=m['result'], metric=metric.Metric(metricId=mt['metricId'], unit=mt['unit'], name=mt['name'])))
    for a in d.get('attachments', []):
        e.add_attachment(attachment.Attachment(typeURI=a['typeURI'], content=a['content'], name=a['name']))
    return extra(e, d, ('typeURI', 'eventType', 'id', 'eventTime', 'action', 'outcome', 'initiator', 'target',
                        'observer', 'reason', 'measurements', 'attachments'))

n = valid = roundtrip = nwarn = 0
bad = []
for line in sys.stdin:
    if not line.strip():
        continue
    n += 1
    d = json.loads(line)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        try:
            e = ev(d)
            ok = e.is_valid()
            rt = e.as_dict() == d
        except (ValueError, KeyError, TypeError) as x:
            ok, rt = False, False
            bad.append({'id': d.get('id'), 'error': repr(x)})
    nwarn += len(w)
    valid += ok
    roundtrip += rt
    if not (ok and rt) and len(bad) < 10:
        bad.append({'id': d.get('id'), 'valid': ok, 'roundtrip': rt})
print(json.dumps({'events': n, 'valid': valid, 'roundtrip': roundtrip, 'warnings': nwarn, 'bad': bad}))
sys.exit(0 if n and valid == n and roundtrip == n else 1)
