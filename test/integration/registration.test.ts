// Registration end to end, on SQLite and PostgreSQL: the passphrase (shown, rotated, only its
// derived key in the database), `rebound agent|process-server register` writing a working
// identity, every failure path with its exact message and exit code and nothing written, the
// configurator log, machines and disks (ids unique across the deployment), an agent confined to
// its own machine, heartbeats and the heartbeat-missing alert, and the wrong-passphrase limit.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { cpSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import { ApiClient, type ApiRequestError } from '../../src/control-plane/client/api-client.js';
import { loadTlsMaterial } from '../../src/pki/ca.js';
import { CLI, startAgent } from '../support/agent-process.js';
import { type RunningConfigServer, startConfigServer } from '../support/config-server.js';
import { DATABASES, type DatabaseKind, databaseUrl } from '../support/postgres.js';
import { scratchDir, sparseImage } from '../support/tmp.js';

const CONFIGURATOR_LOG = '/var/log/rebound/configurator.log';
const WRONG =
  "rebound: error: the registration passphrase is wrong: ask the configuration server's operator for the " +
  "current one ('rebound server passphrase' on the server)\n";

interface MachineJson {
  id: string;
  name: string;
  os_type: string;
  agent_name: string | null;
  site: string | null;
  registered_at: string | null;
  last_heartbeat_at: string | null;
  address: string | null;
  disks: { id: string; name: string; size_bytes: number }[];
}

interface AlertJson {
  kind: string;
  severity: string;
  subject_id: string;
  message: string;
  cleared_at: string | null;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Lines of the configurator log about one component name. */
function logLinesOf(name: string): string[] {
  if (!existsSync(CONFIGURATOR_LOG)) return [];
  return readFileSync(CONFIGURATOR_LOG, 'utf8')
    .split('\n')
    .filter((l) => l.includes(`'${name}'`));
}

/** Every value of the meta table, read straight from the database. */
async function metaValues(kind: DatabaseKind, url: string): Promise<string[]> {
  if (kind === 'sqlite') {
    const db = new SQLite(url.slice('sqlite:'.length), { readonly: true });
    try {
      return (db.prepare('select value from meta').all() as { value: string }[]).map((r) => r.value);
    } finally {
      db.close();
    }
  }
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<{ value: string }>('select value from meta')).rows.map((r) => r.value);
  } finally {
    await c.end();
  }
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

for (const kind of DATABASES) {
  describe(`registration on ${kind}`, { timeout: 240_000 }, () => {
    const scratch = scratchDir(`reg-${kind}`);
    const tag = `${kind === 'sqlite' ? 's' : 'p'}${Date.now().toString(36)}`;
    const nameA = `web-a-${tag}`;
    const nameB = `web-b-${tag}`;
    let cs: RunningConfigServer;
    let dbUrl: string;
    let hp: string;
    let pp: string;
    const dirA = join(scratch.dir, 'agent-a');
    const dirB = join(scratch.dir, 'agent-b');

    const register = (args: string[]) =>
      cs.cli(['agent', 'register', '-i', hp, '-P', pp, '--os-type', 'linux', ...args]);

    const agentClient = async (dir: string, name: string) => {
      const m = await loadTlsMaterial(join(dir, 'tls'), { role: 'agent', name });
      return new ApiClient({ url: cs.url, ca: m.ca, key: m.key, cert: m.cert });
    };

    const machines = async () => {
      const r = await cs.cli(['machines', '--json']);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as MachineJson[];
    };

    const alerts = async (all = false) => {
      const r = await cs.cli(['alerts', '--json', ...(all ? ['--all'] : [])]);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as AlertJson[];
    };

    before(async () => {
      dbUrl = await databaseUrl(kind, scratch.dir);
      cs = await startConfigServer({
        dataDir: scratch.dir,
        db: dbUrl,
        args: ['--heartbeat-alert-minutes', '0.05'],
      });
      hp = cs.url.slice('https://'.length);
      pp = join(scratch.dir, 'pp.txt');
    });
    after(async () => {
      await cs?.stop();
      scratch.cleanup();
    });

    test('the server made a passphrase: shown to the admin, only its derived key in the database', async () => {
      const r = await cs.cli(['server', 'passphrase']);
      assert.equal(r.code, 0, r.stderr);
      const passphrase = r.stdout.trim();
      assert.match(passphrase, /^[a-z0-9]{5}(-[a-z0-9]{5}){5}$/);
      assert.equal(r.stdout, `${passphrase}\n`);
      const file = join(scratch.dir, 'passphrase');
      assert.equal(readFileSync(file, 'utf8'), `${passphrase}\n`);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      const meta = await metaValues(kind, dbUrl);
      assert.ok(meta.length > 0);
      for (const v of meta) assert.ok(!v.includes(passphrase), 'the plaintext is not in the database');
      assert.ok(
        meta.some((v) => v.includes('"scrypt"')),
        'the derived key is',
      );
      writeFileSync(pp, r.stdout);
      // The admin API only: a caller without the token is refused.
      const anon = new ApiClient({ url: cs.url, ca: readFileSync(join(scratch.dir, 'ca', 'ca.crt')) });
      await assert.rejects(anon.get('/api/v1/server/passphrase'), (e: ApiRequestError) => e.status === 401);
    });

    test('agent register: identity files, machine listed, the certificate works, log written', async () => {
      const r = await register(['--data-dir', dirA, '--name', nameA]);
      assert.equal(r.code, 0, r.stderr);
      const reg = JSON.parse(readFileSync(join(dirA, 'registration.json'), 'utf8'));
      const agentState = JSON.parse(readFileSync(join(dirA, 'agent.json'), 'utf8'));
      assert.equal(reg.machineId, agentState.machineId);
      assert.equal(
        r.stdout,
        `agent ${nameA} registered with ${hp} (machine id ${reg.machineId}); certificate ` +
          `${join(dirA, 'tls', `agent-${nameA}.crt`)} valid until ${reg.certNotAfter}\n`,
      );
      assert.equal(reg.role, 'agent');
      assert.equal(reg.name, nameA);
      assert.equal(reg.server.url, cs.url);
      assert.equal(reg.certFile, `tls/agent-${nameA}.crt`);
      assert.equal(statSync(join(dirA, 'tls', `agent-${nameA}.key`)).mode & 0o777, 0o600);
      assert.equal(
        readFileSync(join(dirA, 'tls', 'ca.crt'), 'utf8'),
        readFileSync(join(scratch.dir, 'ca', 'ca.crt'), 'utf8'),
      );

      const listed = (await machines()).find((m) => m.name === nameA);
      assert.ok(listed, 'machine listed');
      assert.equal(listed.id, reg.machineId);
      assert.equal(listed.os_type, 'linux');
      assert.equal(listed.agent_name, nameA);
      assert.equal(listed.site, null);

      // The certificate is an agent's: it reads its own machine and heartbeats.
      const a = await agentClient(dirA, nameA);
      const own = await a.get<MachineJson>(`/api/v1/machines/${nameA}`);
      assert.equal(own.id, reg.machineId);
      const hb = await a.post<{ now: string; nextHeartbeatSeconds: number }>('/api/v1/heartbeats', {});
      assert.equal(hb.nextHeartbeatSeconds, 15);

      const lines = logLinesOf(nameA);
      assert.ok(lines.length >= 6, lines.join('\n'));
      for (const l of lines) {
        assert.match(l, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[\d+\] INFO register agent '/);
      }
      assert.match(lines[0], /: start \(data dir /);
      assert.match(lines.at(-1)!, new RegExp(`: registered as agent '${nameA}'$`));
      assert.ok(lines.some((l) => l.includes('server proof verified')));
    });

    test('a wrong passphrase: exit 4, the exact message, nothing written, the failure logged', async () => {
      const bad = join(scratch.dir, 'bad.txt');
      writeFileSync(bad, 'aaaaa-bbbbb-ccccc-ddddd-eeeee-fffff\n');
      const name = `wrong-${tag}`;
      const dir = join(scratch.dir, 'agent-wrong');
      const r = await cs.cli(['agent', 'register', '-i', hp, '-P', bad, '--data-dir', dir, '--name', name]);
      assert.equal(r.code, 4);
      assert.equal(r.stderr, WRONG);
      assert.equal(r.stdout, '');
      assert.equal(existsSync(dir), false, 'no data dir');
      assert.equal(
        (await machines()).some((m) => m.name === name),
        false,
        'no machine row',
      );
      assert.match(
        logLinesOf(name).at(-1)!,
        /ERROR register agent .*: failed: the registration passphrase is wrong/,
      );
    });

    test('an invalid address, an unreachable server, a missing passphrase file: exact errors, nothing written', async () => {
      const dir = join(scratch.dir, 'agent-never');
      const invalid = await cs.cli(['agent', 'register', '-i', 'nonsense::', '-P', pp, '--data-dir', dir]);
      assert.equal(invalid.code, 2);
      assert.equal(
        invalid.stderr,
        "rebound: error: configuration server address 'nonsense::' is not valid: too many colons (an IPv6 " +
          'address goes in brackets: [ADDRESS]:PORT); use HOST:PORT, e.g. 10.0.0.5:9443\n',
      );
      const port = await freePort();
      const name = `unreach-${tag}`;
      const down = await cs.cli([
        'agent',
        'register',
        '-i',
        `127.0.0.1:${port}`,
        '-P',
        pp,
        '--data-dir',
        dir,
        '--name',
        name,
      ]);
      assert.equal(down.code, 7);
      assert.equal(
        down.stderr,
        `rebound: error: cannot reach the configuration server at 127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}\n`,
      );
      assert.match(logLinesOf(name).at(-1)!, /failed: cannot reach the configuration server/);
      const missing = join(scratch.dir, 'no-such-file');
      const nofile = await cs.cli(['agent', 'register', '-i', hp, '-P', missing, '--data-dir', dir]);
      assert.equal(nofile.code, 2);
      assert.equal(
        nofile.stderr,
        `rebound: error: cannot read the passphrase file ${missing}: no such file\n`,
      );
      const noOs = await cs.cli([
        'agent',
        'register',
        '-i',
        hp,
        '-P',
        pp,
        '--data-dir',
        dir,
        '--os-type',
        'beos',
      ]);
      assert.equal(noOs.code, 2);
      assert.equal(noOs.stderr, "rebound: error: --os-type 'beos' is not known: use one of linux, windows\n");
      assert.equal(existsSync(dir), false);
    });

    test('registering the same machine again: a new certificate, the same machine row', async () => {
      const before = (await machines()).find((m) => m.name === nameA)!;
      const oldCert = readFileSync(join(dirA, 'tls', `agent-${nameA}.crt`), 'utf8');
      const r = await register(['--data-dir', dirA, '--name', nameA]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout,
        new RegExp(`^agent ${nameA} re-registered with ${hp} \\(machine id ${before.id}\\)`),
      );
      assert.notEqual(readFileSync(join(dirA, 'tls', `agent-${nameA}.crt`), 'utf8'), oldCert);
      const rows = (await machines()).filter((m) => m.name === nameA);
      assert.equal(rows.length, 1);
      assert.equal(rows[0].id, before.id);
      assert.ok(rows[0].registered_at! > before.registered_at!);
      await (await agentClient(dirA, nameA)).get(`/api/v1/machines/${nameA}`);
    });

    test('another machine with a registered name, or a clone of a registered agent, is refused', async () => {
      const other = join(scratch.dir, 'agent-other');
      const taken = await register(['--data-dir', other, '--name', nameA]);
      assert.equal(taken.code, 6);
      const idA = (await machines()).find((m) => m.name === nameA)!.id;
      assert.match(
        taken.stderr,
        new RegExp(
          `^rebound: error: machine '${nameA}' is already registered with another machine id \\(${idA}, not [0-9a-f-]{36}\\): ` +
            `choose another --name, or remove it first with 'rebound machines remove ${nameA}'\\n$`,
        ),
      );
      assert.equal(existsSync(other), false);

      const clone = join(scratch.dir, 'agent-clone');
      cpSync(dirA, clone, { recursive: true });
      const cloneName = `clone-${tag}`;
      const r = await register(['--data-dir', clone, '--name', cloneName]);
      assert.equal(r.code, 6);
      assert.equal(
        r.stderr,
        `rebound: error: machine id ${idA} is already registered as machine '${nameA}': '${cloneName}' looks ` +
          `like a clone of it (same agent data dir); give '${cloneName}' a fresh agent data dir\n`,
      );
      assert.equal(existsSync(join(clone, 'tls', `agent-${cloneName}.crt`)), false);
    });

    test('disk ids are unique across the deployment: a second machine with the same id is refused, naming both', async () => {
      const a = await agentClient(dirA, nameA);
      const diskId = randomUUID();
      const m = await a.put<MachineJson>(`/api/v1/machines/${nameA}/disks`, {
        disks: [{ id: diskId, name: 'root', sizeBytes: 1 << 20, path: '/dev/vda' }],
      });
      assert.deepEqual(
        m.disks.map((d) => [d.id, d.name, d.size_bytes]),
        [[diskId, 'root', 1 << 20]],
      );

      // B's data dir holds a disk with A's disk id (a machine cloned from the same template).
      writeFileSync(
        join(scratch.dir, 'agent-b.json'),
        JSON.stringify({
          machineId: randomUUID(),
          disks: [{ id: 1, uuid: diskId, name: 'system', path: '/dev/vdb', size: 1 << 20 }],
          clean: true,
          bootId: 'x',
          appliedThrough: 0,
        }),
      );
      cpSync(join(scratch.dir, 'agent-b.json'), join(dirB, 'agent.json'));
      const r = await register(['--data-dir', dirB, '--name', nameB]);
      const collision =
        `disk id ${diskId} of disk 'system' of machine '${nameB}' already belongs to disk 'root' of machine ` +
        `'${nameA}': disk ids must be unique across the deployment (machines cloned from one template share ` +
        'them: give the clone a fresh agent data dir)';
      assert.equal(r.code, 6);
      assert.equal(r.stderr, `rebound: error: ${collision}\n`);
      assert.equal(existsSync(join(dirB, 'registration.json')), false);
      assert.equal(existsSync(join(dirB, 'tls')), false);
      assert.equal(
        (await machines()).some((x) => x.name === nameB),
        false,
        'no half registration',
      );

      // B registered without that disk, then reporting it in a heartbeat: refused, and an alert.
      writeFileSync(
        join(dirB, 'agent.json'),
        JSON.stringify({ ...JSON.parse(readFileSync(join(dirB, 'agent.json'), 'utf8')), disks: [] }),
      );
      const ok = await register(['--data-dir', dirB, '--name', nameB]);
      assert.equal(ok.code, 0, ok.stderr);
      const b = await agentClient(dirB, nameB);
      await assert.rejects(
        b.post('/api/v1/heartbeats', { disks: [{ id: diskId, name: 'system', sizeBytes: 1 << 20 }] }),
        (e: ApiRequestError) => e.status === 409 && e.message === collision,
      );
      const idB = (await machines()).find((x) => x.name === nameB)!.id;
      const open = (await alerts()).find((x) => x.kind === 'disk-id-collision' && x.subject_id === idB);
      assert.equal(open?.message, collision);
      assert.equal(open?.severity, 'critical');
      // Its disk list stays as it was; a good report clears the alert.
      await b.post('/api/v1/heartbeats', {
        disks: [{ id: randomUUID(), name: 'system', sizeBytes: 1 << 20 }],
      });
      assert.equal(
        (await alerts()).some((x) => x.kind === 'disk-id-collision' && x.subject_id === idB),
        false,
      );
    });

    test('an agent reads and changes only its own machine', async () => {
      const a = await agentClient(dirA, nameA);
      const refusal = `agent '${nameA}' may read and change only its own machine '${nameA}', not machine '${nameB}'`;
      for (const call of [
        () => a.get(`/api/v1/machines/${nameB}`),
        () => a.patch(`/api/v1/machines/${nameB}`, { osType: 'windows' }),
        () => a.put(`/api/v1/machines/${nameB}/disks`, { disks: [] }),
      ]) {
        await assert.rejects(call(), (e: ApiRequestError) => e.status === 403 && e.message === refusal);
      }
      await assert.rejects(
        a.get('/api/v1/machines'),
        (e: ApiRequestError) =>
          e.status === 403 && e.message === `agent:${nameA} may not call GET /api/v1/machines`,
      );
      await assert.rejects(a.delete(`/api/v1/machines/${nameB}`), (e: ApiRequestError) => e.status === 403);
      const b = (await machines()).find((m) => m.name === nameB)!;
      assert.equal(b.os_type, 'linux', 'B unchanged');
      assert.equal(b.disks.length, 1, 'B unchanged');
      // Its own machine it may change.
      const own = await a.patch<MachineJson>(`/api/v1/machines/${nameA}`, { address: '127.0.0.1:10809' });
      assert.equal(own.address, '127.0.0.1:10809');
      const show = await cs.cli(['machines', 'show', nameB]);
      assert.equal(show.code, 0, show.stderr);
      assert.match(show.stdout, new RegExp(`^machine ${nameB} \\(id ${b.id}\\)\\n  os: linux `));
      assert.match(show.stdout, /\n {2}DISK\s+SIZE\s+PATH\s+ID\n {2}system\s+1048576\s+-\s+[0-9a-f-]{36}\n$/);
      const missing = await cs.cli(['machines', 'show', `nope-${tag}`]);
      assert.equal(missing.code, 5);
      assert.equal(missing.stderr, `rebound: error: machine 'nope-${tag}' not found\n`);
    });

    test('the machine list comes in pages by name; the CLI reads them all', async () => {
      const admin = await cs.admin();
      const all = (await admin.get<MachineJson[]>('/api/v1/machines')).map((m) => m.name);
      assert.ok(all.length >= 2, `${all}`);
      assert.deepEqual(all, [...all].sort());
      const first = await admin.get<MachineJson[]>('/api/v1/machines?limit=1');
      assert.deepEqual(
        first.map((m) => m.name),
        all.slice(0, 1),
      );
      const second = await admin.get<MachineJson[]>(
        `/api/v1/machines?limit=1&after=${encodeURIComponent(first[0]!.name)}`,
      );
      assert.deepEqual(
        second.map((m) => m.name),
        all.slice(1, 2),
      );
      const past = await admin.get<MachineJson[]>(
        `/api/v1/machines?after=${encodeURIComponent(all.at(-1)!)}`,
      );
      assert.deepEqual(past, []);
      await assert.rejects(
        admin.get('/api/v1/machines?limit=0'),
        (e: ApiRequestError) => e.status === 400 && /limit/.test(e.message) && />= 1/.test(e.message),
      );
      assert.deepEqual(
        (await machines()).map((m) => m.name),
        all,
      );
    });

    test('process servers and master targets register into their --tls-dir; built-in names are refused', async () => {
      const dir = join(scratch.dir, 'ps-tls');
      const name = `ps-${tag}`;
      const r = await cs.cli([
        'process-server',
        'register',
        '-i',
        hp,
        '-P',
        pp,
        '--tls-dir',
        dir,
        '--name',
        name,
        '--address',
        '127.0.0.1:9850',
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^process-server ${name} registered with ${hp}; certificate `));
      const m = await loadTlsMaterial(dir, { role: 'process-server', name });
      const ps = new ApiClient({ url: cs.url, ca: m.ca, key: m.key, cert: m.cert });
      await ps.post('/api/v1/heartbeats', { address: '127.0.0.1:9851', status: { cachedBytes: 0 } });
      await assert.rejects(ps.get(`/api/v1/machines/${nameA}`), (e: ApiRequestError) => e.status === 403);

      // Silent, it gets an alert; `process-server start` on that --tls-dir heartbeats and clears it.
      const silent = (a: AlertJson) =>
        a.kind === 'heartbeat-missing' && a.message.startsWith(`process server '${name}' `);
      await until('the process server alert', async () => (await alerts()).find(silent));
      const child = spawn(
        process.execPath,
        [
          CLI,
          'process-server',
          'start',
          '--data-dir',
          join(scratch.dir, 'ps-data'),
          '--tls-dir',
          dir,
          '--name',
          name,
          '--listen',
          '127.0.0.1:0',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, REBOUND_HEARTBEAT_SECONDS: '1' } },
      );
      try {
        await until('the process server alert cleared', async () =>
          (await alerts()).some(silent) ? undefined : true,
        );
      } finally {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }

      const builtin = await cs.cli([
        'master-target',
        'register',
        '-i',
        hp,
        '-P',
        pp,
        '--tls-dir',
        join(scratch.dir, 'mt-tls'),
        '--name',
        'builtin-mt',
      ]);
      assert.equal(builtin.code, 6);
      assert.equal(
        builtin.stderr,
        "rebound: error: 'builtin-mt' is the configuration server's built-in master-target: choose another --name\n",
      );
      assert.equal(existsSync(join(scratch.dir, 'mt-tls')), false);
    });

    test('heartbeat-missing: raised for a silent component, cleared when its agent serves and heartbeats', async () => {
      const idA = (await machines()).find((m) => m.name === nameA)!.id;
      const raised = await until('the heartbeat-missing alert of A', async () =>
        (await alerts()).find((a) => a.kind === 'heartbeat-missing' && a.subject_id === idA),
      );
      assert.equal(raised.severity, 'critical');
      assert.match(
        raised.message,
        new RegExp(
          `^agent '${nameA}' of machine '${nameA}' has sent no heartbeat for more than 3 s \\(last at `,
        ),
      );

      // `agent serve` on the registered data dir heartbeats by itself, reporting its disks.
      const disk = sparseImage(join(scratch.dir, 'a-root.img'), 16 << 20);
      process.env.REBOUND_HEARTBEAT_SECONDS = '1';
      const agent = await startAgent(['--data-dir', dirA, '--disk', `data=${disk}`]);
      try {
        const m = await until('A reporting its disk', async () => {
          const x = (await machines()).find((y) => y.name === nameA)!;
          return x.disks.some((d) => d.name === 'data') ? x : undefined;
        });
        const state = JSON.parse(readFileSync(join(dirA, 'agent.json'), 'utf8'));
        assert.deepEqual(
          m.disks.map((d) => [d.id, d.name, d.size_bytes]),
          [[state.disks[0].uuid, 'data', 16 << 20]],
        );
        assert.equal(m.address, `127.0.0.1:${agent.port}`);
        const all = await alerts(true);
        const cleared = all.find((a) => a.kind === 'heartbeat-missing' && a.subject_id === idA);
        assert.ok(cleared?.cleared_at, 'cleared');
        assert.equal(
          (await alerts()).some((a) => a.subject_id === idA),
          false,
        );
      } finally {
        delete process.env.REBOUND_HEARTBEAT_SECONDS;
        await agent.stop();
      }
      // Silent again: raised again.
      await until('a new heartbeat-missing alert of A', async () =>
        (await alerts()).find((a) => a.kind === 'heartbeat-missing' && a.subject_id === idA),
      );
    });

    test('rotating the passphrase: the old one stops working, registered agents keep working', async () => {
      const old = readFileSync(pp, 'utf8');
      const r = await cs.cli(['server', 'passphrase', '--rotate']);
      assert.equal(r.code, 0, r.stderr);
      assert.notEqual(r.stdout, old);
      assert.equal(
        r.stderr,
        'passphrase rotated: the old one no longer registers anything; components registered before keep working\n',
      );
      assert.equal((await cs.cli(['server', 'passphrase'])).stdout, r.stdout);
      const dir = join(scratch.dir, 'agent-c');
      const name = `web-c-${tag}`;
      const refused = await register(['--data-dir', dir, '--name', name]);
      assert.equal(refused.code, 4);
      assert.equal(refused.stderr, WRONG);
      writeFileSync(pp, r.stdout);
      const ok = await register(['--data-dir', dir, '--name', name]);
      assert.equal(ok.code, 0, ok.stderr);
      await (await agentClient(dirA, nameA)).get(`/api/v1/machines/${nameA}`);
    });
  });

  describe(`wrong-passphrase rate limit on ${kind}`, { timeout: 120_000 }, () => {
    const scratch = scratchDir(`reg-limit-${kind}`);
    let cs: RunningConfigServer;
    after(async () => {
      await cs?.stop();
      scratch.cleanup();
    });

    test('5 wrong attempts a minute, then 429 with a clear message, even for the right passphrase', async () => {
      cs = await startConfigServer({ dataDir: scratch.dir, db: await databaseUrl(kind, scratch.dir) });
      const hp = cs.url.slice('https://'.length);
      const bad = join(scratch.dir, 'bad.txt');
      writeFileSync(bad, 'nope\n');
      const dir = join(scratch.dir, 'agent');
      for (let i = 0; i < 5; i++) {
        const r = await cs.cli(['agent', 'register', '-i', hp, '-P', bad, '--data-dir', dir, '--name', 'x']);
        assert.equal(r.code, 4, `attempt ${i + 1}: ${r.stderr}`);
      }
      const good = join(scratch.dir, 'good.txt');
      writeFileSync(good, readFileSync(join(scratch.dir, 'passphrase')));
      for (const file of [bad, good]) {
        const r = await cs.cli(['agent', 'register', '-i', hp, '-P', file, '--data-dir', dir, '--name', 'x']);
        assert.equal(r.code, 8);
        assert.match(
          r.stderr,
          /^rebound: error: too many wrong passphrase attempts from 127\.0\.0\.1: try again in \d+ s\n$/,
        );
      }
      assert.equal(existsSync(dir), false);
    });
  });
}
