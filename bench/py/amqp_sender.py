"""The sender of the amqp-scan benchmark: writes N messages of SIZE bytes to a TCP sink, one
send per message as py-amqp sends a publish, and prints the nanoseconds the sends took.

MODE framed: the connection opens with AMQP's protocol header, so the tracer's kernel side
frames it (a message per syscall) and scans each message past its capture for oslo.messaging's
ids; the message carries "_unique_id" in its last 100 bytes (the scan reads nearly all of it).
MODE framed-nokey: the same without the key (the scan reads all of it and finds nothing).
MODE plain: the same bytes after a non-AMQP greeting: one run in one direction, captured once.
Each message is one Basic.Publish (method, content header and body frames, encoded here with
struct) whose body is an oslo.messaging envelope. Run as a file named after an OpenStack
service, so the agent captures its sockets.
"""
import socket
import struct
import sys
import time


def shortstr(s):
    return bytes([len(s)]) + s


def publish(body):
    """Basic.Publish to exchange nova, routing key conductor, then the content header and body."""
    method = struct.pack('>HHH', 60, 40, 0) + shortstr(b'nova') + shortstr(b'conductor') + b'\x00'
    header = struct.pack('>HHQH', 60, 0, len(body), 0x8000) + shortstr(b'application/json')
    frame = lambda t, p: struct.pack('>BHI', t, 1, len(p)) + p + b'\xce'
    return frame(1, method) + frame(2, header) + frame(3, body)


def main():
    mode, n, size, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    tail = b'\\"_msg_id\\": \\"' + b'a' * 32 + b'\\", \\"_unique_id\\": \\"' + b'b' * 32 + b'\\"}"}'
    body = b'{"oslo.version": "2.0", "oslo.message": "{\\"method\\": \\"m\\", \\"args\\": \\"'
    pad = size - len(body) - len(tail)
    msg = publish(body + b'x' * pad + (tail if mode == 'framed' else b'y' * len(tail)))
    # the agent adds a new process of a service to its monitored set when it sees the exec:
    # connect after that, so the connection is tracked from its first byte
    time.sleep(0.5)
    s = socket.create_connection(('127.0.0.1', port))
    s.sendall(b'AMQP\x00\x00\x09\x01' if mode.startswith('framed') else b'HELLO!!!')
    time.sleep(0.2)
    t0 = time.perf_counter_ns()
    for _ in range(n):
        s.sendall(msg)
    t1 = time.perf_counter_ns()
    s.close()
    print((t1 - t0) / n)


main()
