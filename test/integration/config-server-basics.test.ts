// The configuration server's first contact: it starts on each database, serves its OpenAPI
// document, refuses callers without credentials, and the sites resource works end to end
// through the CLI with the exit codes scripts rely on.
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { after, describe, test } from 'node:test';
import { type RunningConfigServer, startConfigServer } from '../support/config-server.js';
import { DATABASES, databaseUrl } from '../support/postgres.js';
import { scratchDir } from '../support/tmp.js';

function getInsecure(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    request(url, { rejectUnauthorized: false }, (res) => {
      let body = '';
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    })
      .on('error', reject)
      .end();
  });
}

for (const kind of DATABASES) {
  describe(`configuration server basics on ${kind}`, () => {
    const scratch = scratchDir(`cs-${kind}`);
    let cs: RunningConfigServer;
    after(async () => {
      await cs?.stop();
      scratch.cleanup();
    });

    test('starts with built-in components and serves /openapi.json to anyone', async () => {
      cs = await startConfigServer({ dataDir: scratch.dir, db: await databaseUrl(kind, scratch.dir) });
      assert.ok(cs.processServerPort && cs.masterTargetPort);
      const doc = await getInsecure(`${cs.url}/openapi.json`);
      assert.equal(doc.status, 200);
      const openapi = JSON.parse(doc.body) as { openapi: string; paths: Record<string, unknown> };
      assert.equal(openapi.openapi, '3.0.3');
      assert.ok(openapi.paths['/api/v1/sites'], 'sites are documented');
    });

    test('a caller with no certificate and no token is refused, naming why', async () => {
      const r = await getInsecure(`${cs.url}/api/v1/sites`);
      assert.equal(r.status, 401);
      assert.deepEqual(JSON.parse(r.body), {
        error: {
          code: 'unauthorized',
          message: 'not authenticated: no client certificate and no bearer token',
        },
      });
    });

    test('sites: add, refuse a duplicate and an unknown adapter, list, remove', async () => {
      const added = await cs.cli(['sites', 'add', 'recovery', '--adapter', 'qemu']);
      assert.equal(added.code, 0, added.stderr);
      assert.match(added.stdout, /^site recovery added \(qemu, id [0-9a-f-]{36}\)\n$/);

      const dup = await cs.cli(['sites', 'add', 'recovery', '--adapter', 'physical']);
      assert.equal(dup.code, 6);
      assert.equal(dup.stderr, "rebound: error: site 'recovery' already exists\n");

      const bad = await cs.cli(['sites', 'add', 'other', '--adapter', 'vmware']);
      assert.equal(bad.code, 3);
      assert.equal(
        bad.stderr,
        "rebound: error: site adapter 'vmware' is not known: use one of qemu, physical\n",
      );

      const list = await cs.cli(['sites', '--json']);
      assert.equal(list.code, 0);
      const sites = JSON.parse(list.stdout) as { name: string; adapter: string }[];
      assert.deepEqual(
        sites.map((s) => [s.name, s.adapter]),
        [['recovery', 'qemu']],
      );
      const table = await cs.cli(['sites']);
      assert.match(table.stdout, /^NAME\s+ADAPTER\s+ID\nrecovery\s+qemu\s+[0-9a-f-]{36}\n$/);

      assert.equal((await cs.cli(['sites', 'remove', 'recovery'])).code, 0);
      const gone = await cs.cli(['sites', 'remove', 'recovery']);
      assert.equal(gone.code, 5);
      assert.equal(gone.stderr, "rebound: error: site 'recovery' not found\n");
    });

    test('a server restarted on the same data dir keeps its data and its admin token', async () => {
      assert.equal((await cs.cli(['sites', 'add', 'kept', '--adapter', 'physical'])).code, 0);
      await cs.stop();
      cs = await startConfigServer({
        dataDir: scratch.dir,
        db:
          kind === 'sqlite'
            ? undefined
            : (cs.child.spawnargs[cs.child.spawnargs.indexOf('--db') + 1] as string),
      });
      const list = await cs.cli(['sites', '--json']);
      assert.equal(list.code, 0, list.stderr);
      assert.deepEqual(
        (JSON.parse(list.stdout) as { name: string }[]).map((s) => s.name),
        ['kept'],
      );
    });
  });
}
