// Synthetic events for the tests of pure logic: a Keystone uwsgi worker's
// HTTP request with the fields a test sets (the real tracer's are in
// test/trace/keystone.test.ts).
import type { TraceEvent } from '../../src/trace/event.js';

export function keystoneRequest(ts: number, data: Record<string, unknown>): TraceEvent {
  return {
    ts,
    type: 'http.request',
    service: 'keystone',
    pid: 10,
    tid: 10,
    ppid: 1,
    uid: 0,
    comm: 'uwsgi_python311',
    data: { role: 'server', ...data },
  } as TraceEvent;
}
