#!/usr/bin/env python3
"""The audit log against the key store: every state change has its record,
and every record of a state change matches a state that exists.

usage: audit_state.py BEFORE.json EXPORT.jsonl AFTER.json [SEEN]

BEFORE.json and AFTER.json are dumps of every key with its versions
(kms_dump.py), taken before and after EXPORT.jsonl (kmsctl audit export).
State only moves forward (a version, once there, stays; revoked and
destroyed stay so), so the store before the export must find its records
in the export, and the records in the export must find their state in the
store after it; a change between the two (a scheduled rotation) then
cannot make a false alarm.

The records (docs/audit.md; result "ok"):
  CreateKey (key, version 1)                   version 1 of a key
  RotateKey, ScheduledRotate, UsageRotate,     version N > 1 of a key
    ReplaceVersion (key, version N)
  RevokeVersion, kind revocation (version V)   a revoked version V
  TrimVersion (version V)                      a version destroyed in a key
                                               that is not destroyed
  DestroyKey, ScheduledDestroy (key)           a destroyed key
Conversely, an ok record of one of these must match: the key exists and
has version 1 (CreateKey), the version exists (rotations, version > 0),
the version is revoked or its key destroyed (RevokeVersion), the version
is destroyed (TrimVersion), the key is destroyed (DestroyKey,
ScheduledDestroy; a ScheduledDestroy whose details say "not destroyed" is
a no-op, and a DestroyKey with the option `after` (details "scheduled in
N s") only schedules: both are left out).

Prints one line per kind of disagreement,
"ERROR<TAB>WHAT<TAB>COUNT<TAB>NEW<TAB>EXAMPLES", then "STATS ..."; exits
0. With SEEN (a file, created if missing), NEW counts the disagreements
not in SEEN, the examples show those first, and they are added to SEEN:
a test that checks after every crash can tell what each crash added.
"""
import json
import sys

ROTATIONS = ("RotateKey", "ScheduledRotate", "UsageRotate", "ReplaceVersion")
DESTROYS = ("DestroyKey", "ScheduledDestroy")


def load_state(path):
    keys = {}
    for k in json.load(open(path)):
        keys[k["name"]] = {
            "state": k.get("state"),
            "versions": {v["version"]: v["state"] for v in k.get("versions", [])},
            "error": k.get("error"),
        }
    return keys


def main(argv):
    if len(argv) not in (4, 5):
        sys.stderr.write(__doc__)
        return 2
    before, after = load_state(argv[1]), load_state(argv[3])
    created, rotated, revoked, trimmed, destroyed = set(), set(), set(), set(), set()
    records = []
    n = 0
    for line in open(argv[2], encoding="utf-8"):
        r = json.loads(line)
        n += 1
        if r.get("redacted") or r.get("result") != "ok":
            continue
        op, key, version = r.get("operation"), r.get("key"), r.get("version", 0)
        if op == "CreateKey":
            created.add((key, version))
        elif op in ROTATIONS:
            rotated.add((key, version))
        elif op == "RevokeVersion" and r.get("kind") == "revocation":
            revoked.add((key, version))
        elif op == "TrimVersion":
            trimmed.add((key, version))
        elif op in DESTROYS:
            # A no-op ScheduledDestroy, and a DestroyKey with `after`
            # (details "scheduled in N s"), destroy nothing.
            if op == "ScheduledDestroy" and r.get("details", "").startswith("not destroyed"):
                continue
            if op == "DestroyKey" and r.get("details", "").startswith("scheduled"):
                continue
            destroyed.add(key)
        else:
            continue
        records.append(r)

    problems = {}

    def problem(what, example):
        problems.setdefault(what, []).append(example)

    for name, k in sorted(before.items()):
        if k["error"]:
            problem("a key kms_dump.py could not describe", "%s: %s" % (name, k["error"]))
            continue
        for v, state in sorted(k["versions"].items()):
            where = "%s v%d (%s, key %s)" % (name, v, state, k["state"])
            if v == 1 and (name, 1) not in created:
                problem("version 1 without its CreateKey record", where)
            if v > 1 and (name, v) not in rotated:
                problem("version N>1 without its RotateKey/ScheduledRotate/UsageRotate/ReplaceVersion record", where)
            if state == "revoked" and (name, v) not in revoked:
                problem("revoked version without its RevokeVersion record (kind revocation)", where)
            if state == "destroyed" and k["state"] != "destroyed" and (name, v) not in trimmed:
                problem("trimmed version (destroyed, key not destroyed) without its TrimVersion record", where)
        if k["state"] == "destroyed" and name not in destroyed:
            problem("destroyed key without its DestroyKey/ScheduledDestroy record", name)

    for r in records:
        op, name, v = r["operation"], r.get("key", ""), r.get("version", 0)
        k = after.get(name)
        where = "seq %s %s key '%s' version %s" % (r.get("seq"), op, name, v)
        if k is None:
            problem("ok record of a state change of a key that does not exist", where)
            continue
        have = k["versions"]
        if op == "CreateKey" and 1 not in have:
            problem("CreateKey record of a key without version 1", where)
        elif op in ROTATIONS and v > 0 and v not in have:
            problem("rotation record of a version that does not exist", where)
        elif op == "RevokeVersion" and have.get(v) != "revoked" and k["state"] != "destroyed":
            problem("RevokeVersion record of a version that is not revoked (key not destroyed)",
                    "%s: it is %s" % (where, have.get(v, "missing")))
        elif op == "TrimVersion" and have.get(v) != "destroyed":
            problem("TrimVersion record of a version that is not destroyed",
                    "%s: it is %s" % (where, have.get(v, "missing")))
        elif op in DESTROYS and k["state"] != "destroyed":
            problem("%s record of a key that is not destroyed" % op, "%s: it is %s" % (where, k["state"]))

    seen = set()
    if len(argv) == 5:
        try:
            seen = set(l.rstrip("\n") for l in open(argv[4], encoding="utf-8"))
        except FileNotFoundError:
            pass
    added = []
    for what, examples in sorted(problems.items()):
        new = [e for e in examples if "%s\t%s" % (what, e) not in seen]
        old = [e for e in examples if "%s\t%s" % (what, e) in seen]
        added += ["%s\t%s" % (what, e) for e in new]
        print("ERROR\t%s\t%d\t%d\t%s" % (what, len(examples), len(new), "; ".join((new + old)[:4])))
    if len(argv) == 5 and added:
        with open(argv[4], "a", encoding="utf-8") as f:
            f.write("".join(a + "\n" for a in added))
    n_versions = sum(len(k["versions"]) for k in before.values())
    print("STATS records=%d keys=%d versions=%d created=%d rotated=%d revoked=%d trimmed=%d destroyed=%d"
          % (n, len(before), n_versions, len(created), len(rotated), len(revoked), len(trimmed), len(destroyed)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
