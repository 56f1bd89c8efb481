// A client with the admin token that opens a second connection resumes its TLS 1.3 session.
// Node marks such a socket `authorized` although it carries no client certificate (a resumed
// TLS 1.3 session looks like PSK to it): the server must still take the bearer token, not
// refuse the caller as a component without a certificate. The principal does not depend on
// the database, so this runs on the default one only.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { checkServerIdentity } from '../../src/control-plane/client/api-client.js';
import { issueCert } from '../../src/pki/ca.js';
import { type RunningConfigServer, startConfigServer } from '../support/config-server.js';
import { scratchDir } from '../support/tmp.js';

function get(
  url: string,
  agent: Agent,
  token: string,
): Promise<{ status: number; body: string; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/api/v1/sites`,
      { agent, headers: { authorization: `Bearer ${token}` } },
      (res) => {
        let body = '';
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body,
            reused: (res.socket as import('node:tls').TLSSocket).isSessionReused(),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('admin token over a resumed TLS session', { timeout: 60_000 }, () => {
  const scratch = scratchDir('tls-resume');
  let cs: RunningConfigServer;
  after(async () => {
    await cs?.stop();
    scratch.cleanup();
  });

  test('every connection of an admin client is accepted, resumed or not', async () => {
    cs = await startConfigServer({ dataDir: scratch.dir });
    const token = readFileSync(join(scratch.dir, 'admin.token'), 'utf8').trim();
    const ca = readFileSync(join(scratch.dir, 'ca', 'ca.crt'));
    // No keep-alive: every request is a new connection, each after the first resumes the session.
    const agent = new Agent({ keepAlive: false, ca, minVersion: 'TLSv1.3', checkServerIdentity });
    const first = await get(cs.url, agent, token);
    assert.equal(first.status, 200, first.body);
    const again = [];
    for (let i = 0; i < 3; i++) again.push(await get(cs.url, agent, token));
    assert.ok(
      again.some((r) => r.reused),
      'the client resumed its session (otherwise this test proves nothing)',
    );
    for (const r of again) assert.equal(r.status, 200, r.body);
    agent.destroy();
  });

  test('a component resuming its session is still known by its certificate', async () => {
    const issued = await issueCert(join(scratch.dir, 'ca'), {
      role: 'agent',
      name: 'resumer',
      outDir: join(scratch.dir, 'agent'),
    });
    const agent = new Agent({
      keepAlive: false,
      ca: readFileSync(issued.caPath),
      key: readFileSync(issued.keyPath),
      cert: readFileSync(issued.certPath),
      minVersion: 'TLSv1.3',
      checkServerIdentity,
    });
    const all = [];
    for (let i = 0; i < 4; i++) all.push(await get(cs.url, agent, 'not-a-token'));
    assert.ok(
      all.some((r) => r.reused),
      'the component resumed its session',
    );
    for (const r of all) assert.equal(r.status, 200, r.body);
    agent.destroy();
  });
});
