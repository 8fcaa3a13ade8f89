#!/usr/bin/env python3
"""A second verifier of kmsd audit exports, written from docs/audit.md
("Canonical form and the chain", "Checkpoints", "Verifying") with python3
and python3-cryptography only, so that the tests do not check kmsctl's
verifier against itself. It shares no code with kmsctl.

    audit_verify.py FILE [--pubkey PEM]...

Prints what `kmsctl audit verify` prints (the same sentences) and exits 0
(intact), 1 (broken) or 2 (usage). Imported as a module, it also gives the
tests canonical(), body(), signed_message() and record_hash() to build
tampered exports with.
"""

import hashlib
import json
import re
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

ZERO_HASH = "0" * 64
RECORD_FIELDS = ("seq", "time", "kind", "uid", "pid", "exe", "operation", "key", "version", "result", "details",
                 "prev")
STUB_FIELDS = ("seq", "redacted", "prev", "body")
TEXT_FIELDS = ("kind", "exe", "operation", "key", "result", "details")
U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z\Z", re.ASCII)
HEX64_RE = re.compile(r"[0-9a-f]{64}\Z", re.ASCII)
HEX_RE = re.compile(r"(?:[0-9a-f]{2})+\Z", re.ASCII)


class NotARecord(Exception):
    pass


class _BadNumber:
    """A JSON number that is not a plain non-negative integer."""


def _int(s):
    return _BadNumber() if s.startswith("-") else int(s)


def _pairs(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise NotARecord('duplicate key "%s"' % k)
        d[k] = v
    return d


def _reject_constant(name):
    raise NotARecord("%s is not JSON" % name)


def parse_line(raw):
    """One line (bytes, without its newline) as a dict, strictly."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NotARecord("invalid UTF-8")
    try:
        obj = json.loads(text, object_pairs_hook=_pairs, parse_int=_int, parse_float=lambda s: _BadNumber(),
                         parse_constant=_reject_constant)
    except ValueError as e:
        raise NotARecord("not JSON: %s" % e)
    if not isinstance(obj, dict):
        raise NotARecord("not a JSON object")
    for k, v in obj.items():
        if isinstance(v, str):
            if "\0" in v:
                raise NotARecord('a NUL in "%s"' % k)
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise NotARecord('a lone surrogate in "%s"' % k)
        elif v is None or isinstance(v, (dict, list)):
            raise NotARecord('"%s" is not a string, number or boolean' % k)
    return obj


def _uint(obj, key, maximum):
    if key not in obj:
        raise NotARecord('no "%s"' % key)
    v = obj[key]
    if type(v) is not int or v < 0 or v > maximum:
        raise NotARecord('"%s" is not a whole number from 0 to %d' % (key, maximum))
    return v


def _str(obj, key):
    if key not in obj:
        raise NotARecord('no "%s"' % key)
    if not isinstance(obj[key], str):
        raise NotARecord('"%s" is not a string' % key)
    return obj[key]


def check_record(obj):
    """Check obj against "What a record holds"; returns it."""
    seq = _uint(obj, "seq", U64_MAX)
    if seq == 0:
        raise NotARecord('"seq" is 0')
    if "redacted" in obj:
        extra = set(obj) - set(STUB_FIELDS)
        if extra:
            raise NotARecord('a stub with the field "%s"' % sorted(extra)[0])
        if obj["redacted"] is not True:
            raise NotARecord('"redacted" is not true')
        for k in ("prev", "body"):
            if not HEX64_RE.match(_str(obj, k)):
                raise NotARecord('"%s" is not 64 lower-case hex digits' % k)
        return obj
    extra = set(obj) - set(RECORD_FIELDS) - {"signature"}
    if extra:
        raise NotARecord('unknown field "%s"' % sorted(extra)[0])
    for k in RECORD_FIELDS:
        if k in ("seq", "uid", "pid", "version"):
            _uint(obj, k, U64_MAX if k == "seq" else U32_MAX)
        else:
            _str(obj, k)
    if not TIME_RE.match(obj["time"]):
        raise NotARecord('"time" is not like 2026-11-26T01:02:03.456Z')
    if not HEX64_RE.match(obj["prev"]):
        raise NotARecord('"prev" is not 64 lower-case hex digits')
    if "signature" in obj:
        sig = _str(obj, "signature")
        if obj["kind"] != "checkpoint":
            raise NotARecord('a "signature" on a record of kind "%s"' % obj["kind"])
        if not HEX_RE.match(sig):
            raise NotARecord('"signature" is not lower-case hex')
    return obj


def _escape(text):
    out = bytearray()
    for b in text.encode("utf-8"):
        if b == 0x5C:
            out += b"\\\\"
        elif b == 0x09:
            out += b"\\t"
        elif b == 0x0A:
            out += b"\\n"
        elif b == 0x0D:
            out += b"\\r"
        elif b < 0x20 or b == 0x7F:
            out += b"\\x%02x" % b
        else:
            out.append(b)
    return bytes(out)


def canonical(rec):
    """The canonical form (bytes) of a record dict: 12 fields, no prev."""
    fields = [b"kmsd-audit-v1", str(rec["seq"]).encode(), rec["time"].encode("utf-8")]
    fields.append(_escape(rec["kind"]))
    fields += [str(rec["uid"]).encode(), str(rec["pid"]).encode()]
    fields += [_escape(rec["exe"]), _escape(rec["operation"]), _escape(rec["key"])]
    fields.append(str(rec["version"]).encode())
    fields += [_escape(rec["result"]), _escape(rec["details"])]
    return b"\t".join(fields)


def body(rec):
    """A line's body (hex): SHA-256 of a record's canonical form, or a stub's given body."""
    if rec.get("redacted") is True:
        return rec["body"]
    return hashlib.sha256(canonical(rec)).hexdigest()


def signed_message(rec):
    """The 64 bytes prev || body of a line: its hash is their SHA-256, and a
    checkpoint's signature is ECDSA P-256 with SHA-256 over them."""
    return bytes.fromhex(rec["prev"]) + bytes.fromhex(body(rec))


def record_hash(rec):
    """The hash of a line (hex): SHA-256(prev || body), for records and stubs alike."""
    return hashlib.sha256(signed_message(rec)).hexdigest()


def load_keys(path):
    """Every public key in a file: PEM blocks, or one DER SPKI. {fingerprint: key}."""
    with open(path, "rb") as f:
        data = f.read()
    keys = []
    if b"-----BEGIN " in data:
        for m in re.finditer(rb"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", data, re.S):
            keys.append(serialization.load_pem_public_key(m.group(0)))
    else:
        keys.append(serialization.load_der_public_key(data))
    if not keys:
        raise ValueError("no public key")
    out = {}
    for k in keys:
        if not isinstance(k, ec.EllipticCurvePublicKey) or k.curve.name != "secp256r1":
            raise ValueError("a public key that is not EC P-256")
        der = k.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        out[hashlib.sha256(der).hexdigest()] = k
    return out


def _verifies(key, sig, msg):
    try:
        key.verify(sig, msg, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError):
        return False


class Broken(Exception):
    pass


def _seq_or_none(raw):
    try:
        obj = parse_line(raw)
    except NotARecord:
        return None
    v = obj.get("seq")
    return v if type(v) is int and v >= 0 else None


def verify(lines, keys):
    """Check the lines (bytes each); returns (records, stubs, checkpoints)
    or raises Broken with the message."""
    first_seq = prev = prev_hash = prev_line = None
    prev_signed_checkpoint = False
    n_stubs = n_checkpoints = 0
    for i, raw in enumerate(lines):
        line_no = i + 1
        try:
            rec = check_record(parse_line(raw))
        except NotARecord as e:
            raise Broken("line %d: %s: not an audit record" % (line_no, e))
        seq = rec["seq"]
        stub = rec.get("redacted") is True
        if prev is None:
            if seq == 1 and rec["prev"] != ZERO_HASH:
                raise Broken("record seq 1 (line %d): altered — its prev is not 64 zeros" % line_no)
        elif seq > prev + 1:
            # Deleted, or the first sign of a reordering: does a missing seq
            # come later, after a step back?
            last = seq
            for j in range(i + 1, len(lines)):
                nxt = _seq_or_none(lines[j])
                if nxt is None:
                    break
                if nxt <= last:
                    if prev + 1 <= nxt <= seq - 1:
                        raise Broken("line %d: seq %d after seq %d: reordered" % (j + 1, nxt, last))
                    break
                last = nxt
            if seq - 1 == prev + 1:
                raise Broken("record seq %d missing after line %d: deleted" % (prev + 1, line_no - 1))
            raise Broken("records seq %d..%d missing after line %d: deleted" % (prev + 1, seq - 1, line_no - 1))
        elif seq == prev or first_seq <= seq < prev:
            raise Broken("line %d: seq %d again: inserted" % (line_no, seq))
        elif seq < prev:
            raise Broken("line %d: seq %d after seq %d: reordered" % (line_no, seq, prev))
        elif rec["prev"] != prev_hash:  # a stub's prev is checked like a record's
            if i + 1 < len(lines) and _seq_or_none(lines[i + 1]) == seq:
                raise Broken("line %d: seq %d again: inserted" % (line_no + 1, seq))
            raise Broken("record seq %d (line %d): altered — its hash does not match the prev of seq %d" %
                         (prev, prev_line, seq))

        if stub:
            n_stubs += 1
        elif rec["kind"] == "checkpoint":
            where = "checkpoint seq %d (line %d)" % (seq, line_no)
            if "signature" not in rec:
                raise Broken("%s: no signature: forged" % where)
            m = re.fullmatch(r"records=([0-9]+) key=([0-9a-f]{64})", rec["details"], re.ASCII)
            if not m or m.group(1) != str(seq):
                raise Broken("%s: its details are not 'records=%d key=FINGERPRINT': forged" % (where, seq))
            n_checkpoints += 1
            if keys:
                fp = m.group(2)
                sig = bytes.fromhex(rec["signature"])
                msg = signed_message(rec)
                if fp not in keys:
                    for other_fp, k in keys.items():
                        if _verifies(k, sig, msg):
                            raise Broken("%s: signed with key %s but its details name key %s: forged" %
                                         (where, other_fp, fp))
                    raise Broken("%s: signed by key %s, which is none of the given public keys: forged" % (where, fp))
                if not _verifies(keys[fp], sig, msg):
                    raise Broken("%s: signature does not verify: forged" % where)

        if first_seq is None:
            first_seq = seq
        prev, prev_hash, prev_line = seq, record_hash(rec), line_no
        prev_signed_checkpoint = not stub and rec["kind"] == "checkpoint" and "signature" in rec
    if prev is None:
        raise Broken("the export holds no records")
    if not prev_signed_checkpoint:
        raise Broken("the export does not end with a signed checkpoint: truncated, or its last checkpoint removed")
    return len(lines), n_stubs, n_checkpoints


def read_lines(path):
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line
    return lines


def main(argv):
    args, pubkeys = [], []
    it = iter(argv)
    for a in it:
        if a == "--pubkey":
            p = next(it, None)
            if p is None:
                print("audit_verify: --pubkey needs a value", file=sys.stderr)
                return 2
            pubkeys.append(p)
        elif a.startswith("--pubkey="):
            pubkeys.append(a[len("--pubkey="):])
        else:
            args.append(a)
    if len(args) != 1:
        print("usage: audit_verify.py FILE [--pubkey PEM]...", file=sys.stderr)
        return 2
    keys = {}
    for p in pubkeys:
        try:
            keys.update(load_keys(p))
        except (OSError, ValueError) as e:
            print("audit_verify: %s: %s" % (p, e), file=sys.stderr)
            return 2
    try:
        lines = read_lines(args[0])
    except OSError as e:
        print("audit_verify: %s" % e, file=sys.stderr)
        return 2
    try:
        n, stubs, checkpoints = verify(lines, keys)
    except Broken as e:
        print(e)
        return 1
    head = "%d records (%d stubs)" % (n, stubs) if stubs else "%d records" % n
    if keys:
        print("%s, chain intact, %d checkpoints verified" % (head, checkpoints))
    else:
        print("%s, chain intact, %d checkpoints not checked (no --pubkey)" % (head, checkpoints))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
