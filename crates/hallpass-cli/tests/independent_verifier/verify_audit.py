#!/usr/bin/env python3
"""Independent verifier of Hallpass audit exports (JSON Lines).

Written from docs/audit.md ("Specification") alone, without the Rust code,
to show that the format can be reimplemented from its documentation. Needs
Python 3.8+ and the `cryptography` package (for Ed25519).

Usage: verify_audit.py EXPORT.jsonl [--public-key KEY]

KEY is the server's audit public key: a PEM `PUBLIC KEY` file, a JWK file,
or the saved answer of GET /v1/audit/public-key. Exit status: 0 the file
verifies, 1 it does not (the first bad seq and why are printed), 2 usage
error or unreadable key or export file.
"""

import argparse
import base64
import hashlib
import json
import math
import re
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

GENESIS_HASH = "0" * 64
CHECKPOINT_KIND = "audit.checkpoint"
MEMBERS = ("seq", "time", "actor", "kind", "request_id", "data", "prev_hash", "hash")
CHECKPOINT_DATA = ("covers_seq", "covers_hash", "key_id", "signature")
MAX_DEPTH = 127
LARGEST_U64 = 2**64 - 1  # the largest seq, and the top of the previous release's integers
SEQ_FORM = re.compile(r"[1-9][0-9]*")
HASH_FORM = re.compile(r"[0-9a-f]{64}")
BLANK = re.compile(rb"[ \t]*")
BOM = "\ufeff"
SPKI_ED25519_PREFIX = bytes.fromhex("302a300506032b6570032100")
PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----(.*?)-----END PUBLIC KEY-----", re.DOTALL)
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493  # L of RFC 8032
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class Failure(Exception):
    """The verdict on a file that does not verify: the first bad seq (or None) and why."""

    def __init__(self, seq, reason):
        super().__init__(reason)
        self.seq, self.reason = seq, reason

    def __str__(self):
        where = "" if self.seq is None else f" at seq {self.seq}"
        return f"FAILED{where}: {self.reason}"


class KeyProblem(Exception):
    """The --public-key file cannot be read or is not an Ed25519 public key."""


class Num:
    """A JSON number as written in the line. The current form hashes its
    double; the previous release's form also needs how it was written."""

    __slots__ = ("text", "value")

    def __init__(self, text):
        self.text, self.value = text, float(text)
        if not math.isfinite(self.value):
            raise ValueError(f"the number {text} is too large for a double")

    def is_integer_literal(self):
        return not any(c in self.text for c in ".eE")


# ----------------------------------------------------------------- reading


def _object_without_duplicates(pairs):
    obj = {}
    for name, value in pairs:
        if name in obj:
            raise ValueError(f"an object names the member {name!r} twice")
        obj[name] = value
    return obj


def _not_json(constant):
    raise ValueError(f"{constant} is not a JSON value")


def _check_tree(value, depth=1):
    """Nesting at most MAX_DEPTH (this value at `depth`), no unpaired surrogate."""
    if isinstance(value, str):
        if LONE_SURROGATE.search(value):
            raise ValueError("a string holds an unpaired surrogate escape")
        return
    if not isinstance(value, (list, dict)):
        return
    if depth > MAX_DEPTH:
        raise ValueError(f"arrays and objects nest more than {MAX_DEPTH} levels deep")
    items = value if isinstance(value, list) else [item for member in value.items() for item in member]
    for item in items:
        _check_tree(item, depth + 1)


def parse_json(text):
    """JSON with numbers kept as written and no member named twice in an object."""
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_int=Num,
            parse_float=Num,
            parse_constant=_not_json,
        )
    except RecursionError:
        raise ValueError(f"arrays and objects nest more than {MAX_DEPTH} levels deep") from None
    return value


def parse_event(text):
    """One export line as an event (docs: "Export file"); ValueError if it is not one."""
    if text.startswith(BOM):
        raise ValueError("the line starts with a byte-order mark")
    event = parse_json(text)
    _check_tree(event)
    if not isinstance(event, dict):
        raise ValueError("a line must be a JSON object")
    missing = [m for m in MEMBERS if m not in event]
    extra = sorted(set(event) - set(MEMBERS))
    if missing or extra:
        raise ValueError(f"members missing: {missing or 'none'}, members not allowed: {extra or 'none'}")
    seq = event["seq"]
    if not (isinstance(seq, Num) and SEQ_FORM.fullmatch(seq.text) and int(seq.text) <= LARGEST_U64):
        raise ValueError(f"seq must be written as digits only, from 1 to {LARGEST_U64}")
    for member in ("time", "actor", "kind"):
        if not isinstance(event[member], str):
            raise ValueError(f"{member} must be a string")
    for member in ("prev_hash", "hash"):
        if not (isinstance(event[member], str) and HASH_FORM.fullmatch(event[member])):
            raise ValueError(f"{member} must be 64 lowercase hex digits")
    if event["request_id"] is not None and not isinstance(event["request_id"], str):
        raise ValueError("request_id must be a string or null")
    return event


def seq_of(event):
    return int(event["seq"].text)


def export_lines(raw):
    """(line number, bytes) of each non-blank line; \\r before \\n is dropped."""
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not BLANK.fullmatch(line):
            yield number, line


# ---------------------------------------------------- canonical JSON (RFC 8785)

_STRING_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def canonical_string(s):
    return '"' + "".join(_STRING_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if c < " " else c) for c in s) + '"'


def shortest_digits(x):
    """For a finite x > 0: the shortest digits d1..dk and n with x = 0.d1..dk * 10^n
    (repr picks the nearest such digits, and of two equally near the even one)."""
    mantissa, _, exponent = repr(x).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    significant = digits.lstrip("0")
    n = len(whole) + int(exponent or 0) - (len(digits) - len(significant))
    return significant.rstrip("0"), n


def exponent_form(digits, n):
    e = n - 1
    point = "." + digits[1:] if len(digits) > 1 else ""
    return f"{digits[0]}{point}e{'+' if e >= 0 else '-'}{abs(e)}"


def ecmascript_number(x):
    """Number.prototype.toString, as docs/audit.md rules 1-3 spell it out."""
    if x == 0:
        return "0"
    if x < 0:
        return "-" + ecmascript_number(-x)
    digits, n = shortest_digits(x)
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    return exponent_form(digits, n)


def legacy_double(x):
    """A double in the previous release's form (C')."""
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    if x < 0:
        return "-" + legacy_double(-x)
    digits, n = shortest_digits(x)
    k = len(digits)
    if not -4 <= n <= 16:
        return exponent_form(digits, n)
    if k <= n:
        return digits + "0" * (n - k) + ".0"
    if n > 0:
        return digits[:n] + "." + digits[n:]
    return "0." + "0" * -n + digits


def legacy_number(num):
    # `-0` is negative zero, not the integer 0. The length check comes first:
    # int() of a huge literal is slow or refused.
    if num.is_integer_literal() and num.text != "-0" and len(num.text.lstrip("-")) <= 20:
        value = int(num.text)
        if -(2**63) <= value <= LARGEST_U64:
            return str(value)
    return legacy_double(num.value)


def canonical(value, legacy=False):
    """RFC 8785 text of a parsed value; legacy=True gives the previous release's C'."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Num):
        return legacy_number(value) if legacy else ecmascript_number(value.value)
    if isinstance(value, str):
        return canonical_string(value)
    if isinstance(value, list):
        return "[" + ",".join(canonical(item, legacy) for item in value) + "]"
    order = "utf-8" if legacy else "utf-16-be"  # UTF-16BE bytes sort as code units
    members = sorted(value.items(), key=lambda member: member[0].encode(order))
    return "{" + ",".join(canonical_string(name) + ":" + canonical(item, legacy) for name, item in members) + "}"


def event_hash(event, legacy=False):
    hashed = {member: event[member] for member in MEMBERS if member != "hash"}
    text = canonical(hashed, legacy)
    return hashlib.sha256(event["prev_hash"].encode("ascii") + text.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------- keys


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text, length):
    """Strict base64url without padding, unused bits zero, of exactly `length` bytes; None if not."""
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None
    return raw if len(raw) == length and b64url(raw) == text else None


def key_from_json(text):
    """A JWK, or the answer of GET /v1/audit/public-key holding one as `jwk`."""
    try:
        jwk = json.loads(text)
    except ValueError as error:
        raise KeyProblem(f"the key file starts with '{{' but is not valid JSON: {error}") from None
    if isinstance(jwk, dict) and "kty" not in jwk and "jwk" in jwk:
        jwk = jwk["jwk"]
    if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise KeyProblem('not an Ed25519 JWK (needs "kty":"OKP" and "crv":"Ed25519")')
    if "d" in jwk:
        raise KeyProblem('the JWK holds a private key ("d"): give the public key only')
    if "alg" in jwk and jwk["alg"] != "EdDSA":
        raise KeyProblem(f'the JWK is for "alg" {jwk["alg"]!r}, not "EdDSA"')
    raw = b64url_decode(jwk.get("x"), 32)
    if raw is None:
        raise KeyProblem('the JWK\'s "x" is not 32 bytes in base64url without padding')
    return raw


def key_from_pem(text):
    block = PEM_BLOCK.search(text)
    if block is None:
        raise KeyProblem("neither JSON nor a -----BEGIN PUBLIC KEY----- ... -----END PUBLIC KEY----- block")
    try:
        body = re.sub(r"[ \t\n\f\r]", "", block.group(1))
        der = base64.b64decode(body, validate=True)
    except ValueError:
        raise KeyProblem("the PEM body is not valid base64") from None
    if base64.b64encode(der).decode("ascii") != body:
        raise KeyProblem("the PEM body is not strict base64 (unused bits must be zero)")
    if len(der) != 44 or not der.startswith(SPKI_ED25519_PREFIX):
        raise KeyProblem("the PEM key is not an Ed25519 public key")
    return der[len(SPKI_ED25519_PREFIX) :]


def load_public_key(path):
    """(key, key id) from a key file, JSON or PEM told apart by content."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise KeyProblem(f"cannot read it: {error}") from None
    raw = key_from_json(text) if text.lstrip(" \t\n\r").startswith("{") else key_from_pem(text)
    return Ed25519PublicKey.from_public_bytes(raw), key_id_of(raw)


def key_id_of(raw):
    """The RFC 7638 thumbprint of the 32-byte public key `raw`."""
    thumbprint_input = '{"crv":"Ed25519","kty":"OKP","x":"' + b64url(raw) + '"}'
    return b64url(hashlib.sha256(thumbprint_input.encode("ascii")).digest())


def checkpoint_message(covers_seq, covers_hash, key_id, time):
    return f"hallpass-audit-checkpoint/v1\n{covers_seq}\n{covers_hash}\n{key_id}\n{time}".encode("utf-8")


# ----------------------------------------------------------- verification


def check_link(previous_seq, previous_hash, event):
    """Step 4: `event` follows the line (seq, hash) right before it."""
    seq, expected = seq_of(event), previous_seq + 1
    if seq == expected and event["prev_hash"] != previous_hash:
        raise Failure(seq, f"event {seq} does not follow event {previous_seq}: its prev_hash is not that hash")
    if seq == previous_seq:
        raise Failure(seq, f"event {seq} appears twice")
    if seq > expected:
        raise Failure(expected, f"event {expected} is missing: event {previous_seq} is followed by event {seq}")
    if seq < expected:
        raise Failure(expected, f"events out of order: event {previous_seq} is followed by event {seq}")


def check_checkpoint(event, key, key_id, since_seq):
    """Step 6 for a checkpoint line; `since_seq` is the first seq it newly vouches for."""
    seq, data = seq_of(event), event["data"]

    def fail(reason):
        return Failure(seq, f"checkpoint {seq} {reason}")

    if not isinstance(data, dict) or sorted(data) != sorted(CHECKPOINT_DATA):
        raise fail(f"data must have exactly the members {', '.join(CHECKPOINT_DATA)}")
    covers_seq = data["covers_seq"]
    if not (isinstance(covers_seq, Num) and covers_seq.is_integer_literal()):
        raise fail("covers_seq must be an integer")
    if not all(isinstance(data[member], str) for member in CHECKPOINT_DATA[1:]):
        raise fail("covers_hash, key_id and signature must be strings")
    if int(covers_seq.text) != seq - 1:
        raise fail(f"covers seq {covers_seq.text}, not the line before it ({seq - 1})")
    if data["key_id"] != key_id:
        raise fail(
            f"is signed by key {data['key_id']}, not by the given key {key_id}: "
            "verify with the public key of the server that wrote this log"
        )
    if data["covers_hash"] != event["prev_hash"]:
        raise fail(
            f"vouches for another hash of event {seq - 1} than the chain holds: "
            f"a line from seq {since_seq} to {seq - 1} was changed and the chain rehashed"
        )
    if event["actor"] != "hallpass" or event["request_id"] is not None:
        raise fail('must have actor "hallpass" and request_id null')
    signature = b64url_decode(data["signature"], 64)
    if signature is None or int.from_bytes(signature[32:], "little") >= GROUP_ORDER:
        raise fail("has a signature that is not 86 characters of strict base64url of a valid Ed25519 signature")
    try:
        key.verify(signature, checkpoint_message(seq - 1, data["covers_hash"], key_id, event["time"]))
    except InvalidSignature:
        raise fail(f"has a signature that does not verify with key {key_id}") from None


def is_intact(event):
    """Step 5: the hash matches the current form C or, failing that, the previous release's C'."""
    return event["hash"] == event_hash(event) or event["hash"] == event_hash(event, legacy=True)


def verify(lines, key=None, key_id=None):
    """Steps 1-7 over (line number, bytes) pairs, line by line; returns the summary or raises Failure."""
    first = last = last_checkpoint = None
    count = 0
    for number, text in lines:
        try:
            event = parse_event(text.decode("utf-8"))
        except ValueError as error:  # UnicodeDecodeError included
            after_last_good = None if last is None else seq_of(last) + 1
            raise Failure(after_last_good, f"line {number} is not a valid audit event: {error}") from None
        seq, is_checkpoint = seq_of(event), event["kind"] == CHECKPOINT_KIND
        if last is not None:
            check_link(seq_of(last), last["hash"], event)
        elif seq == 1:
            check_link(0, GENESIS_HASH, event)
        elif key is not None and not is_checkpoint:
            raise Failure(seq, f"the file starts at seq {seq} with no checkpoint: events before it may have been cut")
        if not is_intact(event):
            raise Failure(seq, f"event {seq} was changed: its hash does not match its contents")
        first = event if first is None else first
        if key is not None and is_checkpoint:
            since = seq_of(first) if last_checkpoint is None else seq_of(last_checkpoint) + 1
            check_checkpoint(event, key, key_id, min(since, seq - 1))
            last_checkpoint = event
        last, count = event, count + 1
    if last is None:
        raise Failure(None, "the file holds no audit events")
    span, head = f"(seq {seq_of(first)}..{seq_of(last)})", last["hash"]
    if key is None:
        return f"OK: chain of {count} events intact {span}, head {head}; completeness NOT proven (no --public-key)"
    if last is not last_checkpoint:
        signed = "none is in the file" if last_checkpoint is None else f"the last is at seq {seq_of(last_checkpoint)}"
        raise Failure(
            seq_of(last) + 1,
            f"the file ends at seq {seq_of(last)} without a checkpoint: "
            f"events may have been cut (signed checkpoints: {signed})",
        )
    return f"OK: {count} events verified {span}, complete: signed checkpoint at {seq_of(last)} by key {key_id}; head {head}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("export", metavar="EXPORT.jsonl")
    parser.add_argument("--public-key", metavar="KEY", help="the server's audit public key (PEM, JWK or API answer)")
    args = parser.parse_args(argv)
    key = key_id = None
    if args.public_key is not None:
        try:
            key, key_id = load_public_key(args.public_key)
        except KeyProblem as problem:
            print(f"error: --public-key {args.public_key}: {problem}", file=sys.stderr)
            return 2
    try:
        with open(args.export, "rb") as file:
            raw = file.read()
    except OSError as error:
        print(f"error: cannot read {args.export}: {error}", file=sys.stderr)
        return 2
    try:
        print(verify(export_lines(raw), key, key_id))
    except Failure as failure:
        print(failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
