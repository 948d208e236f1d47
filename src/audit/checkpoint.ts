// Signed checkpoints of the audit log, in the format transparency logs share
// (C2SP tlog-checkpoint inside a C2SP signed note, as Go's sumdb, Sigstore's
// Rekor v2 and the transparency-dev witnesses read it):
//
//   <origin>\n                      stackbpf.audit/<node>
//   <tree size>\n                   decimal
//   <root hash>\n                   base64 (standard, padded) of the RFC 9162 root
//   time <ms since the epoch>\n      extension lines
//   prev <base64 SHA-256 of the previous checkpoint's whole note>\n
//   \n
//   — <key name> <base64(key id (4 bytes) || Ed25519 signature (64 bytes))>\n
//
// The signature covers the text up to and including the line before the blank
// one. The key id is the first four bytes of SHA-256(name || "\n" || 0x01 ||
// the 32-byte public key), 0x01 naming Ed25519. `prev` chains each checkpoint
// to the one before (as CloudTrail's digest files carry the previous digest's
// signature), so a checkpoint removed from the middle is seen.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface Checkpoint {
  origin: string;
  size: number;
  root: Buffer;
  /** ms since the epoch */
  time: number;
  /** base64 SHA-256 of the previous checkpoint's note ('' for the first) */
  prev: string;
}

export class CheckpointError extends Error {}

const ED25519 = 0x01;

export interface SigningKey {
  name: string;
  private: KeyObject;
  public: KeyObject;
  /** the 32-byte raw public key */
  raw: Buffer;
  id: Buffer;
}

export function keyId(name: string, raw: Buffer): Buffer {
  return createHash('sha256')
    .update(`${name}\n`)
    .update(Buffer.from([ED25519]))
    .update(raw)
    .digest()
    .subarray(0, 4);
}

const rawPublic = (k: KeyObject): Buffer => k.export({ format: 'der', type: 'spki' }).subarray(-32);

/** The public key as a verifier key string: `<name>+<key id hex>+<base64(0x01 || raw key)>` (signed-note's vkey form). */
export function verifierKey(k: { name: string; raw: Buffer; id: Buffer }): string {
  return `${k.name}+${k.id.toString('hex')}+${Buffer.concat([Buffer.from([ED25519]), k.raw]).toString('base64')}`;
}

export function parseVerifierKey(text: string): { name: string; raw: Buffer; id: Buffer } {
  const m = /^([^\s+]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)$/.exec(text.trim());
  if (!m) throw new CheckpointError('public key: expected NAME+KEYID+BASE64 (what `stackbpf audit key` prints)');
  const body = Buffer.from(m[3] as string, 'base64');
  if (body.length !== 33 || body[0] !== ED25519) throw new CheckpointError('public key: not an Ed25519 key (0x01 and 32 bytes)');
  const raw = body.subarray(1);
  const id = keyId(m[1] as string, raw);
  if (id.toString('hex') !== m[2]) throw new CheckpointError(`public key: the key id ${m[2]} does not match the key (${id.toString('hex')})`);
  return { name: m[1] as string, raw, id };
}

const publicFromRaw = (raw: Buffer): KeyObject =>
  createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw]), format: 'der', type: 'spki' });

/** The node's signing key: read from `file` (PKCS#8 PEM, root-only), or made there on first start. */
export function loadOrCreateKey(file: string, name: string): { key: SigningKey; created: boolean } {
  let created = false;
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('ed25519');
    writeFileSync(file, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600, flag: 'wx' });
    created = true;
  }
  chmodSync(file, 0o600);
  let priv: KeyObject;
  try {
    priv = createPrivateKey(readFileSync(file));
  } catch (err) {
    throw new CheckpointError(`audit key ${file}: ${(err as Error).message}`);
  }
  if (priv.asymmetricKeyType !== 'ed25519') throw new CheckpointError(`audit key ${file}: an ${priv.asymmetricKeyType} key, expected Ed25519`);
  const pub = createPublicKey(priv);
  const raw = rawPublic(pub);
  return { key: { name, private: priv, public: pub, raw, id: keyId(name, raw) }, created };
}

export function body(c: Checkpoint): string {
  return `${c.origin}\n${c.size}\n${c.root.toString('base64')}\ntime ${c.time}\nprev ${c.prev || '-'}\n`;
}

/** The signed note of a checkpoint. */
export function signCheckpoint(c: Checkpoint, key: SigningKey): string {
  const text = body(c);
  const sig = sign(null, Buffer.from(text), key.private);
  return `${text}\n\u2014 ${key.name} ${Buffer.concat([key.id, sig]).toString('base64')}\n`;
}

/** SHA-256 of a whole note, base64: what the next checkpoint's `prev` names. */
export function noteHash(note: string): string {
  return createHash('sha256').update(note).digest('base64');
}

/** Parse a note and check its signature with the public key; throws a CheckpointError naming what is wrong. */
export function openCheckpoint(note: string, key: { name: string; raw: Buffer; id: Buffer }): Checkpoint {
  const cut = note.indexOf('\n\n');
  if (cut < 0) throw new CheckpointError('not a signed note: no blank line before the signatures');
  const text = note.slice(0, cut + 1);
  const sigs = note
    .slice(cut + 2)
    .split('\n')
    .filter(Boolean);
  let ok = false;
  for (const line of sigs) {
    const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
    if (!m) throw new CheckpointError(`signature line not understood: "${line.slice(0, 80)}"`);
    if (m[1] !== key.name) continue;
    const blob = Buffer.from(m[2] as string, 'base64');
    if (blob.length !== 68 || !blob.subarray(0, 4).equals(key.id)) continue;
    if (!verify(null, Buffer.from(text), publicFromRaw(key.raw), blob.subarray(4)))
      throw new CheckpointError('the signature does not verify with the public key');
    ok = true;
  }
  if (!ok) throw new CheckpointError(`no signature by the key ${key.name}+${key.id.toString('hex')}`);
  const lines = text.split('\n');
  const [origin, size, root, time, prev] = lines;
  if (lines.length !== 6 || !origin || !/^\d+$/.test(size ?? '') || !/^time \d+$/.test(time ?? '') || !/^prev \S+$/.test(prev ?? ''))
    throw new CheckpointError('checkpoint body: expected origin, size, root, "time MS" and "prev HASH" lines');
  const r = Buffer.from(root as string, 'base64');
  if (r.length !== 32) throw new CheckpointError('checkpoint body: the root is not a base64 SHA-256');
  const p = (prev as string).slice(5);
  return { origin, size: Number(size), root: r, time: Number((time as string).slice(5)), prev: p === '-' ? '' : p };
}
