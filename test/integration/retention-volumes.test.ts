// Datastores and retention volumes (S24) on real loop-mounted file systems, on both databases:
// ext4 is valid; vfat, a read-only mount, a held .rebound-lock, the cache/install volume, a
// datastore's volume, zero capacity and a missing path are each refused naming the rule, and
// kept as invalid. A remote master target reports its own probe through its mTLS endpoint.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ApiClient, type ApiRequestError } from '../../src/control-plane/client/api-client.js';
import type { OpenDatabase } from '../../src/control-plane/db/database.js';
import { issueCert, loadTlsMaterial } from '../../src/pki/ca.js';
import { run, waitFor } from '../../src/util/exec.js';
import { probeVolume } from '../../src/volumes/probe.js';
import { type RunningConfigServer, startConfigServer } from '../support/config-server.js';
import { openServerDatabase, seedMasterTarget } from '../support/inventory-db.js';
import { LoopVolumes } from '../support/loop-volumes.js';
import { DATABASES, databaseUrl } from '../support/postgres.js';
import { scratchDir } from '../support/tmp.js';

interface VolumeJson {
  master_target: string;
  path: string;
  fs_type: string | null;
  mount_point: string | null;
  capacity_bytes: number;
  valid: boolean;
  invalid_reason: string | null;
}

const volumes = new LoopVolumes();
let good: string;
let fat: string;
let readOnly: string;
let lockable: string;
let datastoreVol: string;

before(async () => {
  good = await volumes.make('good', 'ext4');
  fat = await volumes.make('fat', 'vfat');
  readOnly = await volumes.make('ro', 'ext4', { readOnly: true });
  lockable = await volumes.make('locked', 'ext4');
  datastoreVol = await volumes.make('ds', 'ext4');
  mkdirSync(join(datastoreVol, 'replicas'));
  mkdirSync(join(datastoreVol, 'retention'));
});
after(() => volumes.cleanup());

/** `flock FILE sleep`: another process holding the volume's lock until killed. */
async function holdLock(dir: string): Promise<ChildProcess> {
  const file = join(dir, '.rebound-lock');
  // Its own process group: flock and the sleep it runs share the lock, both must go.
  const holder = spawn('flock', [file, 'sleep', '600'], { stdio: 'ignore', detached: true });
  await waitFor(
    'the lock to be held',
    async () => (await run('flock', ['-n', file, 'true'], [0, 1])).code === 1,
  );
  return holder;
}

async function release(holder: ChildProcess): Promise<void> {
  if (holder.exitCode === null && holder.signalCode === null) {
    const exited = once(holder, 'exit');
    process.kill(-holder.pid!, 'SIGKILL');
    await exited;
  }
}

for (const kind of DATABASES) {
  describe(`retention volumes and datastores on ${kind}`, { timeout: 180_000 }, () => {
    const scratch = scratchDir(`inv-rv-${kind}`);
    let cs: RunningConfigServer;
    let db: OpenDatabase;
    const list = async () => {
      const r = await cs.cli(['retention-volumes', '--json']);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as VolumeJson[];
    };
    const add = (path: string) => cs.cli(['retention-volumes', 'add', path]);

    before(async () => {
      cs = await startConfigServer({
        dataDir: scratch.dir,
        db: await databaseUrl(kind, scratch.dir),
        env: { REBOUND_STORAGE_REFRESH_MS: '1000' },
      });
      db = await openServerDatabase(cs);
    });
    after(async () => {
      await db?.close();
      await cs?.stop();
      // Volumes are shared by both runs: what one run left must not change the other's.
      for (const p of [join(good, 'later'), join(good, 'remote')])
        rmSync(p, { recursive: true, force: true });
      scratch.cleanup();
    });

    test('an ext4 volume of its own is valid', async () => {
      const r = await add(good);
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout,
        new RegExp(`^retention volume ${good} added to builtin-mt: valid \\(ext4, [\\d.]+ MiB free\\)\\n$`),
      );
      const v = (await list()).find((x) => x.path === good)!;
      assert.deepEqual([v.valid, v.fs_type, v.mount_point, v.invalid_reason], [true, 'ext4', good, null]);
      assert.ok(v.capacity_bytes > 10 * 2 ** 20 && v.capacity_bytes <= 16 * 2 ** 20);
      const dup = await add(good);
      assert.equal(dup.code, 6);
      assert.equal(
        dup.stderr,
        `rebound: error: master target 'builtin-mt' already has the retention volume ${good}\n`,
      );
    });

    test('vfat is refused (not FAT/FAT32) and kept as invalid', async () => {
      const r = await add(fat);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        r.stdout,
        `retention volume ${fat} added to builtin-mt: NOT valid: not FAT/FAT32 (S24): the file system is vfat\n`,
      );
      const v = (await list()).find((x) => x.path === fat)!;
      assert.deepEqual([v.valid, v.fs_type], [false, 'vfat']);
    });

    test('a read-only mount and a held .rebound-lock are locked', async () => {
      assert.equal(
        (await add(readOnly)).stdout,
        `retention volume ${readOnly} added to builtin-mt: NOT valid: not locked (S24): ${readOnly} is mounted read-only\n`,
      );
      const holder = await holdLock(lockable);
      try {
        assert.equal(
          (await add(lockable)).stdout,
          `retention volume ${lockable} added to builtin-mt: NOT valid: not locked (S24): ${lockable}/.rebound-lock is held by another process\n`,
        );
      } finally {
        await release(holder);
      }
      // Once the lock is released, a refresh finds the volume usable.
      const r = await cs.cli(['retention-volumes', 'refresh', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const v = (JSON.parse(r.stdout) as VolumeJson[]).find((x) => x.path === lockable)!;
      assert.deepEqual([v.valid, v.invalid_reason], [true, null]);
    });

    test('the cache and install volume (the server data dir) is refused, naming each rule', async () => {
      const inData = join(scratch.dir, 'retention-here');
      mkdirSync(inData);
      const r = await add(inData);
      const mount = (await probeVolume(inData, { cache: [], install: [], replicas: [] })).mount_point;
      assert.equal(
        r.stdout,
        `retention volume ${inData} added to builtin-mt: NOT valid: ` +
          `not the cache volume (S24): ${mount} holds a process server's cache; ` +
          `not the install volume (S24): ${mount} holds the Rebound installation or its data; ` +
          `not a replication target (S24): ${mount} holds replica disks\n`,
      );
      // The built-in master target's own retention dir (by default in the data dir) is listed the same way.
      const builtin = (await list()).find((x) => x.path === join(scratch.dir, 'master-target', 'retention'))!;
      assert.equal(builtin.valid, false);
      assert.match(builtin.invalid_reason!, /^not the cache volume \(S24\)/);
    });

    test('a datastore makes its volume a replication target', async () => {
      const ds = await cs.cli(['datastores', 'add', 'fast', join(datastoreVol, 'replicas')]);
      assert.equal(ds.code, 0, ds.stderr);
      assert.match(
        ds.stdout,
        /^datastore fast added to builtin-mt: \S+\/replicas \(ext4, [\d.]+ MiB free\)\n$/,
      );
      assert.equal(
        (await add(join(datastoreVol, 'retention'))).stdout,
        `retention volume ${datastoreVol}/retention added to builtin-mt: NOT valid: ` +
          `not a replication target (S24): ${datastoreVol} holds replica disks\n`,
      );
      const r = await cs.cli(['datastores', '--json']);
      const rows = JSON.parse(r.stdout) as {
        name: string;
        path: string;
        fs_type: string;
        problem: string | null;
      }[];
      assert.deepEqual(
        rows.map((d) => [d.name, d.path, d.fs_type, d.problem]),
        [
          ['default', join(scratch.dir, 'master-target', 'replicas'), 'ext4', null],
          ['fast', join(datastoreVol, 'replicas'), 'ext4', null],
        ],
      );
      const table = await cs.cli(['datastores']);
      assert.match(
        table.stdout,
        /^MASTER TARGET +NAME +PATH +FS +FREE +CAPACITY +PROBLEM\nbuiltin-mt +default +/,
      );
      const missing = await cs.cli(['datastores', 'add', 'gone', '/nonexistent-rebound-ds']);
      assert.equal(
        missing.stdout,
        'datastore gone added to builtin-mt: /nonexistent-rebound-ds (NOT usable: cannot be probed: /nonexistent-rebound-ds does not exist)\n',
      );
      assert.equal((await cs.cli(['datastores', 'remove', 'builtin-mt', 'gone'])).code, 0);
    });

    test('zero capacity, a missing path, the default path; a path that appears is valid within the refresh period', async () => {
      assert.equal(
        (await add('/proc/sys')).stdout,
        'retention volume /proc/sys added to builtin-mt: NOT valid: capacity above 0 (S24): the capacity is 0 bytes\n',
      );
      const later = join(good, 'later');
      assert.equal(
        (await add(later)).stdout,
        `retention volume ${later} added to builtin-mt: NOT valid: probed (S24): ${later} does not exist\n`,
      );
      const dflt = await cs.cli(['retention-volumes', 'add', '--json']);
      assert.equal(dflt.code, 0, dflt.stderr);
      assert.equal((JSON.parse(dflt.stdout) as VolumeJson).path, '/mnt/retention');

      mkdirSync(later);
      // No refresh asked: the background refresh (every 15 minutes; 1 s here) picks it up.
      await waitFor(
        `${later} to become valid`,
        async () => (await list()).find((x) => x.path === later)?.valid === true,
        15_000,
      );
    });

    test('listing as a table', async () => {
      const r = await cs.cli(['retention-volumes']);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trimEnd().split('\n');
      assert.match(lines[0], /^MASTER TARGET +PATH +FS +MOUNT POINT +FREE +CAPACITY +VALID +REASON$/);
      assert.ok(
        lines.some((l) =>
          new RegExp(`^builtin-mt +${good} +ext4 +${good} +[\\d.]+ MiB +[\\d.]+ MiB +yes +-$`).test(l),
        ),
      );
      assert.ok(lines.some((l) => l.includes(fat) && / no +not FAT\/FAT32 \(S24\)/.test(l)));
    });

    test('a remote master target reports its own probe over mTLS; it may act only for itself', async () => {
      await seedMasterTarget(db, 'mt-remote');
      const path = join(good, 'remote');
      const added = await cs.cli(['retention-volumes', 'add', path, '--master-target', 'mt-remote']);
      assert.equal(
        added.stdout,
        `retention volume ${path} added to mt-remote: NOT valid: probed (S24): not reported yet by master target 'mt-remote' (it probes its own volumes)\n`,
      );
      const refresh = await cs.cli(['retention-volumes', 'refresh']);
      assert.equal(refresh.stderr, 'master targets that probe and report their own volumes: mt-remote\n');

      const certs = join(scratch.dir, 'remote-certs');
      const caDir = join(scratch.dir, 'ca');
      await issueCert(caDir, { role: 'master-target', name: 'mt-remote', outDir: certs });
      await issueCert(caDir, { role: 'master-target', name: 'mt-other', outDir: certs });
      const as = async (name: string) => {
        const m = await loadTlsMaterial(certs, { role: 'master-target', name });
        return new ApiClient({ url: cs.url, ca: m.ca, key: m.key, cert: m.cert });
      };
      const mt = await as('mt-remote');
      // What the master target's host does: ask what to probe, probe it there, report.
      const paths = await mt.get<{ retention_volumes: { path: string }[] }>(
        '/api/v1/master-targets/mt-remote/storage-paths',
      );
      assert.deepEqual(paths.retention_volumes, [{ path }]);
      mkdirSync(path);
      const facts = await probeVolume(path, { cache: [], install: [], replicas: [] });
      const answer = await mt.post<{ retention_volumes: VolumeJson[] }>(
        '/api/v1/master-targets/mt-remote/storage-report',
        {
          retention_volumes: [{ facts }, { facts: { ...facts, path: '/srv/fat', fs_type: 'vfat' } }],
        },
      );
      assert.deepEqual(
        answer.retention_volumes.map((v) => [v.path, v.valid, v.invalid_reason]),
        [
          ['/srv/fat', false, 'not FAT/FAT32 (S24): the file system is vfat'],
          [path, true, null],
        ],
      );
      assert.equal(
        (await list()).find((x) => x.path === path && x.master_target === 'mt-remote')?.valid,
        true,
      );

      const other = await as('mt-other');
      await assert.rejects(
        other.post('/api/v1/master-targets/mt-remote/storage-report', {}),
        (e: ApiRequestError) => {
          assert.equal(e.status, 403);
          assert.equal(e.message, "master target 'mt-other' may not act for master target 'mt-remote'");
          return true;
        },
      );
      const admin = await cs.admin();
      await assert.rejects(
        admin.post('/api/v1/master-targets/mt-remote/storage-report', {}),
        (e: ApiRequestError) => {
          assert.equal(e.status, 403);
          assert.equal(e.message, 'admin may not call POST /api/v1/master-targets/:name/storage-report');
          return true;
        },
      );
    });

    test('a retention volume is removed; removing it again is not found', async () => {
      const r = await cs.cli(['retention-volumes', 'remove', 'builtin-mt', fat]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `retention volume ${fat} of builtin-mt removed\n`);
      const again = await cs.cli(['retention-volumes', 'remove', 'builtin-mt', fat]);
      assert.equal(again.code, 5);
      assert.equal(
        again.stderr,
        `rebound: error: retention volume ${fat} of master target 'builtin-mt' not found\n`,
      );
    });
  });
}
