#!/usr/bin/python3
"""Check a `stackbpf audit proof --json` document (stdin) with the public key
alone (argv[1], as `stackbpf audit key` prints it), following docs/audit.md
and RFC 9162 only: the checkpoint's signed-note signature (Ed25519, via
python3-cryptography), the leaf hash of the record's bytes, and the inclusion
proof against the signed root. Prints "ok leaf I of N" or exits 1 with why."""
import base64, hashlib, json, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

def fail(why):
    print("FAIL", why)
    sys.exit(1)

name, keyid, b64 = sys.argv[1].strip().split("+", 2)
raw = base64.b64decode(b64)
if raw[0] != 1 or len(raw) != 33:
    fail("not an Ed25519 verifier key")
if hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex() != keyid:
    fail("key id does not match")
pub = Ed25519PublicKey.from_public_bytes(raw[1:])

doc = json.load(sys.stdin)
note = doc["checkpoint"]
text, sigs = note.split("\n\n", 1)
text += "\n"
ok = False
for line in sigs.splitlines():
    if not line.startswith("\u2014 " + name + " "):
        continue
    blob = base64.b64decode(line.split(" ")[2])
    if blob[:4].hex() != keyid:
        continue
    pub.verify(blob[4:], text.encode())  # raises InvalidSignature
    ok = True
if not ok:
    fail("no signature by the key")
origin, size, root_b64, *_ = text.split("\n")
size = int(size)
root = base64.b64decode(root_b64)

def H(*parts):
    return hashlib.sha256(b"".join(parts)).digest()

leaf = base64.b64decode(doc["leaf"])
r = H(b"\x00", leaf)
if base64.b64encode(r).decode() != doc["leaf_hash"]:
    fail("leaf hash is not SHA-256(0x00 || leaf)")
index, n = doc["leaf_index"], doc["tree_size"]
if n != size:
    fail("tree size differs from the checkpoint's")
fn, sn = index, n - 1
for p in (base64.b64decode(x) for x in doc["proof"]):
    if sn == 0:
        fail("proof too long")
    if fn & 1 or fn == sn:
        r = H(b"\x01", p, r)
        if not fn & 1:
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
    else:
        r = H(b"\x01", r, p)
    fn >>= 1
    sn >>= 1
if sn != 0 or r != root:
    fail("the proof does not lead to the signed root")
rec = json.loads(leaf)
if rec["event"]["id"] != doc["record_id"]:
    fail("the leaf is another record")
print(f"ok leaf {index} of {n} ({origin})")
