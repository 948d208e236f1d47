"""Frames as py-amqp writes them, for oslo.messaging RPC messages as oslo.messaging builds them.

The oracle of the AMQP decoder's unit tests: the bytes come from py-amqp's own frame writer
(amqp.method_framing.frame_writer, one write per publish) and its argument serializer, the body
from oslo.messaging's envelope and kombu's JSON; nothing here encodes AMQP by hand. Prints one
JSON object per message: {"name", "hex": the bytes written, "msg_id", "unique_id", "reply_q"}.
Run with Debian's python3 (python3-amqp, python3-oslo.messaging, python3-kombu).
"""
import json
import sys
import uuid

from amqp import spec
from amqp.basic_message import Message
from amqp.method_framing import frame_writer
from amqp.serialization import dumps
from kombu.utils.json import dumps as kombu_dumps
from oslo_messaging._drivers import common as rpc_common


class Conn:
    frame_max = 131072
    bytes_sent = 0


def frames(exchange, routing_key, raw, method=spec.Basic.Publish, deliver=False):
    out = []

    class T:
        def write(self, b):
            out.append(bytes(b))

    w = frame_writer(Conn(), T())
    body = kombu_dumps(rpc_common.serialize_msg(raw))
    msg = Message(body, content_type='application/json', content_encoding='utf-8', delivery_mode=2, priority=0, headers={})
    if deliver:
        args = dumps('sLbss', ('ctag-' + uuid.uuid4().hex[:8], 7, False, exchange, routing_key))
        w(1, 1, spec.Basic.Deliver, args, msg)
    else:
        args = dumps('Bssbb', (0, exchange, routing_key, False, False))
        w(1, 1, method, args, msg)
    return b''.join(out)


def context(n):
    return {'_context_user': 'u' * 32, '_context_roles': ['admin', 'reader'], '_context_service_catalog': [{'type': 'x', 'endpoints': ['y' * n]}]}


def main():
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    msg_id = uuid.uuid4().hex
    reply_q = 'reply_' + uuid.uuid4().hex
    uid = uuid.uuid4().hex
    call = {'method': 'select_destinations', 'args': {'spec_obj': {'x': 'a' * size}}, 'version': '4.5',
            '_msg_id': msg_id, '_reply_q': reply_q, '_timeout': None, '_unique_id': uid}
    call.update(context(size))
    cast_uid = uuid.uuid4().hex
    cast = {'method': 'schedule_and_build_instances', 'args': {'build_requests': 'b' * size}, 'version': '1.17', '_unique_id': cast_uid}
    cast.update(context(size))
    reply_uid = uuid.uuid4().hex
    reply = {'result': ['r' * size], 'failure': None, 'ending': True, '_msg_id': msg_id, '_unique_id': reply_uid}
    failure = {'result': None, 'failure': json.dumps({'class': 'NoValidHost', 'message': 'no'}), 'ending': True, '_msg_id': msg_id, '_unique_id': reply_uid}
    for name, ex, rk, raw, deliver in [
        ('call', 'nova', 'scheduler', call, False),
        ('call-delivered', 'nova', 'scheduler', call, True),
        ('cast', 'nova', 'conductor', cast, False),
        ('cast-delivered', 'nova', 'conductor', cast, True),
        ('reply', '', reply_q, reply, False),
        ('reply-delivered', '', reply_q, reply, True),
        ('failure', '', reply_q, failure, False),
    ]:
        print(json.dumps({'name': name, 'hex': frames(ex, rk, raw, deliver=deliver).hex(), 'msg_id': msg_id, 'reply_q': reply_q,
                          'unique_id': {'call': uid, 'call-delivered': uid, 'cast': cast_uid, 'cast-delivered': cast_uid}.get(name, reply_uid)}))


main()
