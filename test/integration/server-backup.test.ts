// S2: the configuration server backed up while it runs and restored after a disaster into a new
// data dir and database is the same server: a registered agent is still accepted, reads its
// machine and heartbeats, the passphrase still registers new agents,
// its admin token still works, its certificate is the same and every row is there. A damaged
// backup and a restore over existing data are refused by name, and write nothing.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { connect } from 'node:tls';
import { allTableNames } from '../../src/control-plane/backup/introspect.js';
import { ApiClient } from '../../src/control-plane/client/api-client.js';
import { openDatabase } from '../../src/control-plane/db/database.js';
import type { Site } from '../../src/control-plane/db/schema.js';
import { loadTlsMaterial } from '../../src/pki/ca.js';
import { runCli } from '../support/agent-process.js';
import { type RunningConfigServer, startConfigServer } from '../support/config-server.js';
import { DATABASES, type DatabaseKind, databaseUrl } from '../support/postgres.js';
import { scratchDir } from '../support/tmp.js';

/** The SHA-256 fingerprint of the certificate the server at url presents. */
function serverFingerprint(url: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect({ host: u.hostname, port: Number(u.port), rejectUnauthorized: false }, () => {
      resolve(s.getPeerCertificate().fingerprint256);
      s.end();
    });
    s.once('error', reject);
  });
}

/** Registers an agent with the server the way an operator does; returns a client factory using its certificate. */
async function registeredAgent(cs: RunningConfigServer, root: string, name: string) {
  const pass = await cs.cli(['server', 'passphrase']);
  assert.equal(pass.code, 0, pass.stderr);
  const passFile = join(root, 'passphrase.txt');
  writeFileSync(passFile, pass.stdout);
  const agentDir = join(root, `agent-${name}`);
  const hp = cs.url.slice('https://'.length);
  const r = await cs.cli([
    'agent',
    'register',
    '-i',
    hp,
    '-P',
    passFile,
    '--data-dir',
    agentDir,
    '--name',
    name,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const m = await loadTlsMaterial(join(agentDir, 'tls'), { role: 'agent', name });
  return {
    passphrase: pass.stdout,
    passFile,
    client: (url: string) => new ApiClient({ url, ca: m.ca, key: m.key, cert: m.cert, timeoutMs: 10_000 }),
  };
}

const siteNames = (sites: Site[]) => sites.map((s) => [s.name, s.adapter, s.id]);

async function tablesIn(url: string): Promise<string[]> {
  const db = await openDatabase(url, { migrate: false });
  try {
    return await allTableNames(db.db);
  } finally {
    await db.close();
  }
}

function restore(file: string, dataDir: string, db: string, extra: string[] = []) {
  return runCli(['server', 'restore', file, '--data-dir', dataDir, '--db', db, ...extra]);
}

/** A server on `kind` with two sites; returns it, its agent client and its identity. */
async function populatedServer(kind: DatabaseKind, root: string) {
  const dataDir = join(root, 'original');
  const db = await databaseUrl(kind, dataDir);
  const cs = await startConfigServer({ dataDir, db });
  for (const [name, adapter] of [
    ['primary', 'qemu'],
    ['recovery', 'physical'],
  ]) {
    const r = await cs.cli(['sites', 'add', name, '--adapter', adapter]);
    assert.equal(r.code, 0, r.stderr);
  }
  const agent = await registeredAgent(cs, root, 'web-1');
  const sites = await agent.client(cs.url).get<Site[]>('/api/v1/sites');
  assert.equal(sites.length, 2);
  const machine = await agent.client(cs.url).get<{ id: string }>('/api/v1/machines/web-1');
  return {
    cs,
    dataDir,
    db,
    agent,
    root,
    machineId: machine.id,
    sites,
    token: readFileSync(join(dataDir, 'admin.token'), 'utf8'),
    fingerprint: await serverFingerprint(cs.url),
  };
}

/** Starts the restored server and checks it is the same server to the agent and to the admin. */
async function checkSameServer(
  original: Awaited<ReturnType<typeof populatedServer>>,
  dataDir: string,
  db: string,
): Promise<RunningConfigServer> {
  const cs = await startConfigServer({ dataDir, db });
  assert.equal(await serverFingerprint(cs.url), original.fingerprint, 'the same server certificate');
  // The registered agent carries on: its certificate is accepted, its machine is there, it heartbeats.
  const agent = original.agent.client(cs.url);
  const seen = await agent.get<Site[]>('/api/v1/sites');
  assert.deepEqual(siteNames(seen), siteNames(original.sites), 'the agent is accepted and sees every site');
  assert.equal((await agent.get<{ id: string }>('/api/v1/machines/web-1')).id, original.machineId);
  const hb = await agent.post<{ nextHeartbeatSeconds: number }>('/api/v1/heartbeats', {});
  assert.equal(hb.nextHeartbeatSeconds, 15);
  // The same registration passphrase: shown to the admin, and it still registers a new agent.
  const pass = await cs.cli(['server', 'passphrase']);
  assert.equal(pass.stdout, original.agent.passphrase);
  const hp = cs.url.slice('https://'.length);
  const newDir = join(original.root, `agent-new-${Date.now()}`);
  const reg = await cs.cli([
    'agent',
    'register',
    '-i',
    hp,
    '-P',
    original.agent.passFile,
    '--data-dir',
    newDir,
    '--name',
    'web-2',
  ]);
  assert.equal(reg.code, 0, reg.stderr);
  assert.equal(readFileSync(join(dataDir, 'admin.token'), 'utf8'), original.token);
  const list = await cs.cli(['sites', '--json']);
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual(siteNames(JSON.parse(list.stdout) as Site[]), siteNames(original.sites));
  return cs;
}

for (const kind of DATABASES) {
  describe(`server backup and restore on ${kind}`, { timeout: 180_000 }, () => {
    const scratch = scratchDir(`backup-${kind}`);
    const servers: RunningConfigServer[] = [];
    after(async () => {
      for (const s of servers) await s.stop();
      scratch.cleanup();
    });
    const backup = join(scratch.dir, 'server.rbk');
    let original: Awaited<ReturnType<typeof populatedServer>>;
    const restoredDir = join(scratch.dir, 'restored');
    let restoredDb: string;

    test('backup of a running server, disaster, restore: the same server to its agent and admin', async () => {
      original = await populatedServer(kind, scratch.dir);
      servers.push(original.cs);
      const viaApi = await original.cs.cli(['server', 'backup', '--out', backup, '--api']);
      assert.equal(viaApi.code, 0, viaApi.stderr);
      assert.match(
        viaApi.stdout,
        new RegExp(
          `^backup written to ${backup}: \\d+ tables, \\d+ rows, \\d+ identity files, \\d+ bytes, sha256 [0-9a-f]{64}\n$`,
        ),
      );
      // Read directly from the data dir and database while the server runs, too.
      const direct = join(scratch.dir, 'direct.rbk');
      const d = await runCli([
        'server',
        'backup',
        '--out',
        direct,
        '--data-dir',
        original.dataDir,
        '--db',
        original.db,
      ]);
      assert.equal(d.code, 0, d.stderr);
      const v = await runCli(['server', 'verify-backup', direct]);
      assert.match(
        v.stdout,
        new RegExp(`^backup ${direct} is intact: \\d+ tables, \\d+ rows, \\d+ identity files`),
      );

      await original.cs.stop();
      rmSync(original.dataDir, { recursive: true });
      restoredDb = await databaseUrl(kind, restoredDir);
      const r = await restore(backup, restoredDir, restoredDb);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^restored ${backup} into ${restoredDir} \\(database `));
      servers.push(await checkSameServer(original, restoredDir, restoredDb));
    });

    test('a restore over a non-empty data dir or database is refused and changes nothing', async () => {
      await servers[servers.length - 1].stop();
      const before = readFileSync(join(restoredDir, 'admin.token'), 'utf8');
      const r = await restore(backup, restoredDir, restoredDb);
      assert.equal(r.code, 1);
      assert.match(
        r.stderr,
        new RegExp(
          `^rebound: error: data dir ${restoredDir} is not empty \\(it holds admin\\.token, ca, cli\\.json, .*\\): restore into an empty data dir, or give --force to replace the server identity in it\n$`,
        ),
      );
      assert.equal(readFileSync(join(restoredDir, 'admin.token'), 'utf8'), before);

      const elsewhere = join(scratch.dir, 'elsewhere');
      const db = kind === 'sqlite' ? `sqlite:${join(restoredDir, 'rebound.db')}` : restoredDb;
      const r2 = await restore(backup, elsewhere, db);
      assert.equal(r2.code, 1);
      assert.match(
        r2.stderr,
        /^rebound: error: database \S+ is not empty \(it holds tables .*\): restore into an empty database, or give --force to replace its contents\n$/,
      );
      assert.equal(existsSync(elsewhere), false, 'no data dir made');

      // --force replaces the identity and the database's contents.
      writeFileSync(join(restoredDir, 'admin.token'), 'not the token\n');
      const forced = await restore(backup, restoredDir, restoredDb, ['--force']);
      assert.equal(forced.code, 0, forced.stderr);
      servers.push(await checkSameServer(original, restoredDir, restoredDb));
    });

    test('a backup with one flipped byte, or cut short, is refused by name and nothing is written', async () => {
      const bytes = readFileSync(backup);
      const lines = bytes.toString('utf8').split('\n');
      const n = lines.findIndex((l) => l.includes('"primary"'));
      const offset = bytes.indexOf('"primary"') + 1;
      const flipped = Buffer.from(bytes);
      flipped[offset] ^= 0x01; // 'p' -> 'q'
      const bad = join(scratch.dir, 'flipped.rbk');
      writeFileSync(bad, flipped);
      const target = join(scratch.dir, 'never');
      const db = await databaseUrl(kind, target);
      const r = await restore(bad, target, db);
      assert.equal(r.code, 1);
      const m =
        /^rebound: error: backup (\S+) is corrupt: line (\d+) \(after table 'sites'( row 1)?\) fails its checksum\n$/.exec(
          r.stderr,
        );
      assert.ok(m, r.stderr);
      assert.equal(m[1], bad);
      assert.equal(Number(m[2]), n + 1);
      assert.equal(existsSync(target), false, 'no data dir made');
      if (kind === 'postgres') assert.deepEqual(await tablesIn(db), [], 'the database is untouched');

      const cut = join(scratch.dir, 'cut.rbk');
      writeFileSync(cut, bytes.subarray(0, bytes.indexOf('"primary"')));
      const c = await restore(cut, target, db);
      assert.equal(c.code, 1);
      assert.match(
        c.stderr,
        new RegExp(`^rebound: error: backup ${cut} is truncated: line ${n + 1} \\(after table 'sites'`),
      );
      assert.equal(existsSync(target), false);

      const v = await runCli(['server', 'verify-backup', bad]);
      assert.equal(v.code, 1);
      assert.equal(v.stderr, r.stderr);
    });
  });
}

describe('a SQLite backup restores into PostgreSQL', { timeout: 180_000 }, () => {
  const scratch = scratchDir('backup-cross');
  const servers: RunningConfigServer[] = [];
  after(async () => {
    for (const s of servers) await s.stop();
    scratch.cleanup();
  });

  test('backup taken offline from the data dir, restored into PostgreSQL, the agent still accepted', async () => {
    const original = await populatedServer('sqlite', scratch.dir);
    servers.push(original.cs);
    await original.cs.stop();
    const backup = join(scratch.dir, 'server.rbk');
    const b = await runCli(['server', 'backup', '--out', backup, '--data-dir', original.dataDir]);
    assert.equal(b.code, 0, b.stderr);
    rmSync(original.dataDir, { recursive: true });
    const dataDir = join(scratch.dir, 'restored');
    const db = await databaseUrl('postgres', dataDir);
    const r = await restore(backup, dataDir, db);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /taken \S+ from sqlite/);
    servers.push(await checkSameServer(original, dataDir, db));
  });
});
