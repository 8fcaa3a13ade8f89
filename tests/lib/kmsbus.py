#!/usr/bin/env python3
"""Raw D-Bus calls for kmsd's integration tests.

busctl prints only an error's message, and some tests must assert the
error's *name* (org.kmsd.KeyManager1.Error.InvalidArgument, ...) and send
exactly the signature they choose, including wrong ones. This helper uses
dbus-python (libdbus), independent of kmsd's own code.

usage: kmsbus.py [--address ADDR] METHOD SIGNATURE [JSON_ARG ...]

Each JSON_ARG is converted by the matching complete type of SIGNATURE:
  s, o, g      JSON string
  y,n,q,i,u,x,t  JSON number;  b  JSON true/false;  d  number
  ay           a hex string ("68656c6c6f") or a list of numbers
  a{sv}        an object {"key": ["TYPE", value], ...}
  aX / a{KV}   a JSON list / object
  v            ["TYPE", value]
On success prints the reply as one JSON list (byte arrays as hex strings) and
exits 0; on a D-Bus error prints "ERROR <name>: <message>" to stderr, exits 1.
"""
import json
import os
import sys

import dbus

BUS_NAME = "org.kmsd.KeyManager1"
PATH = "/org/kmsd/KeyManager1"
IFACE = "org.kmsd.KeyManager1"


def split_types(sig):
    """Split a signature into its complete types."""
    out, i = [], 0
    while i < len(sig):
        j = end_of_type(sig, i)
        out.append(sig[i:j])
        i = j
    return out


def end_of_type(sig, i):
    c = sig[i]
    if c == "a":
        return end_of_type(sig, i + 1)
    if c in "({":
        close = ")" if c == "(" else "}"
        j = i + 1
        while sig[j] != close:
            j = end_of_type(sig, j)
        return j + 1
    return i + 1


def convert(t, v):
    basic = {
        "s": dbus.String, "o": dbus.ObjectPath, "g": dbus.Signature,
        "y": dbus.Byte, "n": dbus.Int16, "q": dbus.UInt16, "i": dbus.Int32,
        "u": dbus.UInt32, "x": dbus.Int64, "t": dbus.UInt64,
        "b": dbus.Boolean, "d": dbus.Double,
    }
    if t in basic:
        return basic[t](v)
    if t == "v":
        inner, value = v
        return convert(inner, value)  # dbus-python wraps it in a variant
    if t == "ay":
        if isinstance(v, str):
            return dbus.ByteArray(bytes.fromhex(v))
        return dbus.Array([dbus.Byte(b) for b in v], signature="y")
    if t.startswith("a{"):
        kt, vt = split_types(t[2:-1])
        d = {}
        for k, val in v.items():
            if kt in ("y", "n", "q", "i", "u", "x", "t"):
                k = int(k)
            d[convert(kt, k)] = convert(vt, val)
        return dbus.Dictionary(d, signature=kt + vt)
    if t.startswith("a"):
        et = t[1:]
        return dbus.Array([convert(et, e) for e in v], signature=et)
    if t.startswith("("):
        return dbus.Struct([convert(et, e) for et, e in zip(split_types(t[1:-1]), v)])
    raise SystemExit("kmsbus.py: type %r not supported" % t)


def to_json(v):
    if isinstance(v, (dbus.ByteArray, bytes)):
        return bytes(v).hex()
    if isinstance(v, dbus.Array):
        if v.signature == "y":
            return bytes(int(b) for b in v).hex()
        return [to_json(e) for e in v]
    if isinstance(v, dbus.Dictionary):
        return {str(k): to_json(val) for k, val in v.items()}
    if isinstance(v, dbus.Struct):
        return [to_json(e) for e in v]
    if isinstance(v, dbus.Boolean):
        return bool(v)
    if isinstance(v, (dbus.Byte, dbus.Int16, dbus.UInt16, dbus.Int32, dbus.UInt32,
                      dbus.Int64, dbus.UInt64)):
        return int(v)
    if isinstance(v, dbus.Double):
        return float(v)
    if isinstance(v, str):
        return str(v)
    return v


def main(argv):
    address = os.environ.get("KMSD_BUS_ADDRESS")
    if len(argv) > 2 and argv[1] == "--address":
        address = argv[2]
        argv = [argv[0]] + argv[3:]
    if len(argv) < 3 or not address:
        sys.stderr.write(__doc__)
        return 2
    method, sig = argv[1], argv[2]
    types = split_types(sig)
    raw = [json.loads(a) for a in argv[3:]]
    if len(raw) != len(types):
        sys.stderr.write("kmsbus.py: %d arguments for signature %r\n" % (len(raw), sig))
        return 2
    args = [convert(t, a) for t, a in zip(types, raw)]
    iface = IFACE
    if "." in method:
        iface, method = method.rsplit(".", 1)
    conn = dbus.bus.BusConnection(address)
    try:
        reply = conn.call_blocking(BUS_NAME, PATH, iface, method, sig, args,
                                   timeout=120, byte_arrays=True)
    except dbus.exceptions.DBusException as e:
        sys.stderr.write("ERROR %s: %s\n" % (e.get_dbus_name(), e.get_dbus_message()))
        return 1
    if reply is None:
        reply = []
    elif not isinstance(reply, tuple):
        reply = [reply]
    print(json.dumps([to_json(r) for r in reply]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
