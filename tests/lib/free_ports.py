"""Prints an even TCP port P such that P and P+1 are free on 127.0.0.1.

P is taken from outside the kernel's ephemeral range
(net.ipv4.ip_local_port_range): a client connecting to a port in that
range while nothing listens there may be given the same port as its own
source port and connect to itself (TCP simultaneous open). The port then
stays taken and swtpm cannot listen on it again: a test that restarts
swtpm on its port, while kmsd keeps reconnecting, fails at random.

Exits 1 and prints nothing if no free pair is found.
"""
import random
import socket
import sys


def ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def candidates():
    lo, hi = ephemeral_range()
    # Below the range; above it only where the range starts too low.
    for a, b in ((10000, lo - 2), (hi + 1, 65533)):
        a += a & 1
        if b - a >= 64:
            break
    else:
        sys.exit("free_ports.py: the ephemeral range %d-%d leaves no room" % (lo, hi))
    for _ in range(400):
        yield random.randrange(a, b, 2)


def free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


for p in candidates():
    if free(p) and free(p + 1):
        print(p)
        sys.exit(0)
sys.exit(1)
