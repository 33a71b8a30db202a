#!/usr/bin/env python3
"""A slow link where `tc netem` is missing: holds every packet of an NFQUEUE queue for a fixed delay, then accepts it.

Run it inside a network namespace whose outgoing packets an iptables rule sends to the queue
(`iptables -A OUTPUT -o DEV -j NFQUEUE --queue-num N`); loss is the kernel's (`-m statistic --mode random
--probability 0.01 -j DROP` before that rule). Packets keep their order: each is released DELAY after it arrived.
It speaks the nfnetlink_queue protocol on a raw netlink socket (linux/netfilter/nfnetlink_queue.h), with no library.

usage: badlink.py QUEUE DELAY_MS        (runs until killed; prints "ready" once the queue is bound)
"""
import heapq
import os
import select
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
NF_ACCEPT = 1


def attribute(kind, payload):
    """One netlink attribute, padded to 4 bytes."""
    header = struct.pack("=HH", 4 + len(payload), kind)
    return header + payload + b"\0" * (-len(payload) % 4)


def message(kind, queue, attributes, flags=NLM_F_REQUEST, seq=0):
    """A nfnetlink message: netlink header, nfgenmsg (AF_UNSPEC, version 0, the queue big-endian), attributes."""
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attributes)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, seq, 0) + body


def configure(sock, queue, attributes, seq):
    """Sends a config message and waits for its acknowledgement; exits with the kernel's error if refused."""
    sock.send(message(NFQNL_MSG_CONFIG, queue, attributes, NLM_F_REQUEST | NLM_F_ACK, seq))
    while True:
        data = sock.recv(65536)
        length, kind, _, got_seq, _ = struct.unpack_from("=IHHII", data)
        if kind == NLMSG_ERROR and got_seq == seq:
            (error,) = struct.unpack_from("=i", data, 16)
            if error != 0:
                sys.exit(f"badlink: the kernel refused the queue configuration: {os.strerror(-error)}")
            return


def packet_ids(data):
    """The ids of the queued packets in one datagram (several netlink messages may share it)."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _, _, _ = struct.unpack_from("=IHHII", data, offset)
        if length < 16:
            return
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            at = offset + 20  # past the netlink header and nfgenmsg
            while at + 4 <= offset + length:
                size, attr = struct.unpack_from("=HH", data, at)
                if size < 4:
                    break
                if attr & 0x7FFF == NFQA_PACKET_HDR:
                    yield struct.unpack_from("!I", data, at + 4)[0]
                at += (size + 3) & ~3
        offset += (length + 3) & ~3


def main():
    queue, delay = int(sys.argv[1]), float(sys.argv[2]) / 1000
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((0, 0))
    configure(sock, queue, [attribute(NFQA_CFG_CMD, struct.pack("=BBH", NFQNL_CFG_CMD_BIND, 0, 0))], 1)
    configure(sock, queue, [attribute(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META) + b"\0" * 3)], 2)
    configure(sock, queue, [attribute(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", 65536))], 3)
    print("ready", flush=True)
    held = []  # (release time, arrival order, packet id)
    order = 0
    while True:
        wait = max(0.0, held[0][0] - time.monotonic()) if held else None
        if select.select([sock], [], [], wait)[0]:
            now = time.monotonic()
            for packet in packet_ids(sock.recv(1 << 20)):
                heapq.heappush(held, (now + delay, order, packet))
                order += 1
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, _, packet = heapq.heappop(held)
            verdict = attribute(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet))
            sock.send(message(NFQNL_MSG_VERDICT, queue, [verdict]))


if __name__ == "__main__":
    main()
