#!/usr/bin/env python3
"""The kernel's own forwarding as an oracle: send each frame of IN on the
ingress veth end (TX), follow it with a marker frame the kernel forwards
to the capture end (RX), and record every frame that reaches RX before the
marker. Frames the kernel itself originates on the capture link (MLD, RS,
NS from the router's own address) are counted, not recorded.

Run inside the test's namespace: kfwd.py IN OUT TX RX MARKER_HEX SEQ_OFFSET MAGIC_HEX
IN: [u32 length][frame]...; OUT: per input frame [u32 sent (0/1)][u32 n] n x [u32 length][frame].
The last line on stdout is a JSON summary."""
import json
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
PACKET_OUTGOING = 4


def frames(path):
    with open(path, 'rb') as f:
        data = f.read()
    off = 0
    while off < len(data):
        (n,) = struct.unpack_from('<I', data, off)
        off += 4
        yield data[off:off + n]
        off += n


def kernel_own(frame):
    """ICMPv6 the router sends by itself: MLD (130-132, 143), RS/RA/NS/NA (133-136).

    MLD messages carry a hop-by-hop header (the Router Alert option) before the ICMPv6 one."""
    if len(frame) < 55 or frame[12:14] != b'\x86\xdd':
        return False
    nxt, off = frame[20], 54
    if nxt == 0 and len(frame) >= off + 8:
        nxt, off = frame[off], off + (frame[off + 1] + 1) * 8
    return nxt == 58 and len(frame) > off and frame[off] in (130, 131, 132, 133, 134, 135, 136, 143)


def main():
    src, dst, tx_if, rx_if, marker_hex, seq_off, magic_hex = sys.argv[1:8]
    marker = bytearray(bytes.fromhex(marker_hex))
    seq_off = int(seq_off)
    magic = bytes.fromhex(magic_hex)
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    tx.bind((tx_if, 0))
    rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    rx.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rx.bind((rx_if, 0))
    rx.settimeout(3.0)
    aux_len = socket.CMSG_LEN(struct.calcsize('IIIHHHH'))
    own = 0
    unsent = 0
    started = time.time()

    def receive():
        data, anc, _flags, addr = rx.recvmsg(65536, aux_len)
        if addr[2] == PACKET_OUTGOING:
            return None
        for level, kind, cdata in anc:
            if level == SOL_PACKET and kind == PACKET_AUXDATA:
                status, _l, _s, _m, _n, tci, tpid = struct.unpack('IIIHHHH', cdata[:struct.calcsize('IIIHHHH')])
                if status & TP_STATUS_VLAN_VALID:
                    if not status & TP_STATUS_VLAN_TPID_VALID:
                        tpid = 0x8100
                    data = data[:12] + struct.pack('!HH', tpid, tci) + data[12:]
        return data

    def is_marker(data):
        return len(data) >= seq_off + 4 and data[seq_off - len(magic):seq_off] == magic

    # what the kernel sent by itself when the links came up, before the first frame
    rx.settimeout(0.2)
    try:
        while True:
            d = receive()
            if d is not None:
                own += 1
    except socket.timeout:
        pass
    rx.settimeout(3.0)

    count = 0
    with open(dst, 'wb') as out:
        for i, frame in enumerate(frames(src)):
            sent = 1
            try:
                tx.send(frame)
            except OSError:
                sent = 0  # shorter than a link-layer header or longer than the link takes
                unsent += 1
            struct.pack_into('<I', marker, seq_off, i)
            tx.send(marker)
            got = []
            while True:
                try:
                    d = receive()
                except socket.timeout:
                    print(json.dumps({'error': f'marker {i} never arrived: the namespace does not forward'}))
                    sys.exit(2)
                if d is None:
                    continue
                if is_marker(d):
                    (seq,) = struct.unpack_from('<I', d, seq_off)
                    if seq == i:
                        break
                    continue
                if kernel_own(d) and (d[22:24] == b'\xfe\x80' or d[22:38] == bytes(16)):
                    own += 1
                    continue
                got.append(d)
            out.write(struct.pack('<II', sent, len(got)))
            for d in got:
                out.write(struct.pack('<I', len(d)))
                out.write(d)
            count += 1
    print(json.dumps({'frames': count, 'unsent': unsent, 'kernel_own': own, 'seconds': round(time.time() - started, 3)}))


if __name__ == '__main__':
    main()
