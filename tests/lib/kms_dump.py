#!/usr/bin/env python3
"""Every key kmsd has, with its versions, in one JSON file.

usage: kms_dump.py [--address ADDR] OUT.json

ListKeys with all = true (tombstones too), then DescribeKey of each key,
on one bus connection: what `kmsctl key list --all --json` and `kmsctl key
show NAME --json` of every key give, with the same field names (name,
state, primary_version, versions: version, state, backend_id, ...), but
fast enough for hundreds of keys. Times stay Unix seconds. OUT.json gets a
list of key dictionaries, each with its "versions"; a key whose
DescribeKey fails gets "error" instead (and the script exits 1).
dbus-python only, independent of kmsd's code (see kmsbus.py).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbus  # noqa: E402

import kmsbus  # noqa: E402


def main(argv):
    address = os.environ.get("KMSD_BUS_ADDRESS")
    if len(argv) > 2 and argv[1] == "--address":
        address = argv[2]
        argv = [argv[0]] + argv[3:]
    if len(argv) != 2 or not address:
        sys.stderr.write(__doc__)
        return 2
    conn = dbus.bus.BusConnection(address)

    def call(method, sig, args):
        return conn.call_blocking(kmsbus.BUS_NAME, kmsbus.PATH, kmsbus.IFACE, method, sig, args,
                                  timeout=120, byte_arrays=True)

    keys = kmsbus.to_json(call("ListKeys", "a{sv}", [dbus.Dictionary({"all": dbus.Boolean(True)}, signature="sv")]))
    out, rc = [], 0
    for k in keys:
        try:
            d = kmsbus.to_json(call("DescribeKey", "s", [k["name"]]))
        except dbus.exceptions.DBusException as e:
            d = dict(k, error="%s: %s" % (e.get_dbus_name(), e.get_dbus_message()))
            rc = 1
        out.append(d)
    tmp = argv[1] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, argv[1])
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
