// The registration passphrase: made on the server's first start, shown to the operator, rotated
// on request. The database keeps only its scrypt-derived key (the verifier the handshake needs,
// see protocol.ts); the plaintext lives in DATA/passphrase (0600) for `rebound server passphrase`,
// like the original's connection.passphrase file.
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fsyncDir } from '../../util/fsync-dir.js';
import type { ServerContext } from '../context.js';
import { DEFAULT_KDF, deriveKey, type KdfParams, sameMac } from './protocol.js';

export const PASSPHRASE_FILE = 'passphrase';
const META_KEY = 'registration-passphrase';

/** What the database holds: the derived key, never the passphrase. */
export interface PassphraseVerifier {
  kdf: KdfParams;
  /** base64 */
  salt: string;
  /** base64 scrypt(passphrase, salt) */
  key: string;
  createdAt: string;
}

// Crockford-style base32 without look-alikes: easy to read aloud and to type.
const ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789';

/** 6 groups of 5 characters from a 31-letter alphabet: about 148 bits. */
export function generatePassphrase(): string {
  const groups: string[] = [];
  for (let g = 0; g < 6; g++) {
    let s = '';
    while (s.length < 5) {
      const b = randomBytes(1)[0];
      if (b < 248) s += ALPHABET[b % 31]; // 248 = 8 * 31: no bias
    }
    groups.push(s);
  }
  return groups.join('-');
}

/** The passphrase as read from a file or typed: surrounding whitespace is not part of it. */
export function normalizePassphrase(text: string): string {
  return text.trim();
}

export function passphrasePath(ctx: Pick<ServerContext, 'dataDir'>): string {
  return join(ctx.dataDir, PASSPHRASE_FILE);
}

async function makeVerifier(passphrase: string, createdAt: string): Promise<PassphraseVerifier> {
  const salt = randomBytes(16).toString('base64');
  const key = await deriveKey(passphrase, salt, DEFAULT_KDF);
  return { kdf: DEFAULT_KDF, salt, key: key.toString('base64'), createdAt };
}

export async function loadVerifier(ctx: ServerContext): Promise<PassphraseVerifier | undefined> {
  const row = await ctx.db.selectFrom('meta').select('value').where('key', '=', META_KEY).executeTakeFirst();
  return row ? (JSON.parse(row.value) as PassphraseVerifier) : undefined;
}

async function storeVerifier(ctx: ServerContext, v: PassphraseVerifier): Promise<void> {
  const value = JSON.stringify(v);
  await ctx.db
    .insertInto('meta')
    .values({ key: META_KEY, value })
    .onConflict((oc) => oc.column('key').doUpdateSet({ value }))
    .execute();
}

async function readPassphraseFile(path: string): Promise<string | undefined> {
  try {
    const text = normalizePassphrase(await readFile(path, 'utf8'));
    return text === '' ? undefined : text;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** Writes the file whole (temporary file, fsync, rename); `commit` runs before the rename. */
async function writePassphraseFile(path: string, passphrase: string, commit: () => Promise<void>) {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.chmod(0o600);
    await fh.writeFile(`${passphrase}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await commit();
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await rename(tmp, path);
  await fsyncDir(dirname(path));
}

/**
 * On every start: a database without a verifier gets one, from DATA/passphrase when that file
 * exists (the operator already knows it), otherwise from a new passphrase written there.
 */
export async function ensurePassphrase(ctx: ServerContext): Promise<void> {
  if (await loadVerifier(ctx)) return;
  const path = passphrasePath(ctx);
  const existing = await readPassphraseFile(path);
  if (existing) {
    await storeVerifier(ctx, await makeVerifier(existing, ctx.now()));
    return;
  }
  const passphrase = generatePassphrase();
  const v = await makeVerifier(passphrase, ctx.now());
  await writePassphraseFile(path, passphrase, () => storeVerifier(ctx, v));
  ctx.logger.info({ file: path }, 'registration passphrase created');
}

export interface ShownPassphrase {
  passphrase: string;
  createdAt: string;
  file: string;
}

/** Does this passphrase match the verifier? */
export async function matchesVerifier(passphrase: string, v: PassphraseVerifier): Promise<boolean> {
  const key = await deriveKey(passphrase, v.salt, v.kdf);
  return sameMac(key.toString('hex'), Buffer.from(v.key, 'base64').toString('hex'));
}

export class PassphraseUnavailableError extends Error {}

/** The current passphrase, from DATA/passphrase, checked against the database's verifier. */
export async function showPassphrase(ctx: ServerContext): Promise<ShownPassphrase> {
  const v = await loadVerifier(ctx);
  const file = passphrasePath(ctx);
  const text = await readPassphraseFile(file);
  if (!v || !text) {
    throw new PassphraseUnavailableError(
      `the registration passphrase is not in ${file}: make a new one with 'rebound server passphrase --rotate'`,
    );
  }
  if (!(await matchesVerifier(text, v))) {
    throw new PassphraseUnavailableError(
      `${file} does not hold the passphrase the database expects (restored from another server?): ` +
        "make a new one with 'rebound server passphrase --rotate'",
    );
  }
  return { passphrase: text, createdAt: v.createdAt, file };
}

/** A new passphrase: the old one stops working; registered components keep their certificates. */
export async function rotatePassphrase(ctx: ServerContext): Promise<ShownPassphrase> {
  const passphrase = generatePassphrase();
  const v = await makeVerifier(passphrase, ctx.now());
  const file = passphrasePath(ctx);
  await writePassphraseFile(file, passphrase, () => storeVerifier(ctx, v));
  ctx.logger.info({ file }, 'registration passphrase rotated');
  return { passphrase, createdAt: v.createdAt, file };
}
