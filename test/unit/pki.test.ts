// The deployment CA: certificates it issues chain to it, carry the role and name, and files
// are written whole, with private keys readable by their owner only.
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { PeerCertificate } from 'node:tls';
import { initCa, issueCert, loadTlsMaterial } from '../../src/pki/ca.js';
import { writeFilesAtomically } from '../../src/pki/files.js';
import { parseRole, parseSubjectAltName, peerIdentity } from '../../src/pki/roles.js';
import { scratchDir } from '../support/tmp.js';

/** What tls.TLSSocket.getPeerCertificate() reports for a certificate, from its PEM. */
function asPeerCertificate(pem: string): PeerCertificate {
  const x = new X509Certificate(pem);
  const subject: Record<string, string> = {};
  for (const line of x.subject.split('\n')) {
    const eq = line.indexOf('=');
    subject[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return { raw: x.raw, subject, subjectaltname: x.subjectAltName } as unknown as PeerCertificate;
}

const mode = (p: string) => statSync(p).mode & 0o777;

describe('deployment CA', () => {
  const { dir, cleanup } = scratchDir('pki');
  after(cleanup);
  const caDir = join(dir, 'ca');

  test('ca init writes a self-signed CA certificate and a private key (0600)', async () => {
    const info = await initCa(caDir, { commonName: 'Test CA' });
    assert.equal(info.subject, 'CN=Test CA, O=Rebound');
    assert.equal(mode(join(caDir, 'ca.key')), 0o600);
    const ca = new X509Certificate(readFileSync(join(caDir, 'ca.crt')));
    assert.equal(ca.ca, true);
    assert.equal(ca.subject, 'CN=Test CA\nO=Rebound');
    assert.ok(ca.checkIssued(ca), 'self-signed');
    assert.ok(ca.verify(ca.publicKey));
    assert.equal(ca.publicKey.asymmetricKeyType, 'ec');
    assert.equal(ca.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(info.fingerprint, ca.fingerprint256);
    assert.match(readFileSync(join(caDir, 'ca.key'), 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
    assert.deepEqual(readdirSync(caDir).sort(), ['ca.crt', 'ca.key'], 'no temporary files left');
  });

  test('ca init refuses to overwrite an existing CA', async () => {
    const before = readFileSync(join(caDir, 'ca.key'));
    await assert.rejects(initCa(caDir), /already holds a CA \(.*ca\.key exists\); refusing to overwrite it/);
    assert.ok(readFileSync(join(caDir, 'ca.key')).equals(before));
    // Half a CA (a lone certificate) is refused too.
    const half = join(dir, 'half');
    mkdirSync(half);
    writeFileSync(join(half, 'ca.crt'), 'x');
    await assert.rejects(initCa(half), /ca\.crt exists\); refusing to overwrite it/);
  });

  test('ca issue: a leaf for each role chains to the CA and carries its role and name', async () => {
    const ca = new X509Certificate(readFileSync(join(caDir, 'ca.crt')));
    for (const role of ['agent', 'process-server', 'master-target'] as const) {
      const r = await issueCert(caDir, { role, name: `${role}-1.example` });
      assert.equal(r.keyPath, join(caDir, `${role}-${role}-1.example.key`));
      assert.equal(mode(r.keyPath), 0o600);
      const leaf = new X509Certificate(readFileSync(r.certPath));
      assert.ok(leaf.checkIssued(ca), 'issued by the CA');
      assert.ok(leaf.verify(ca.publicKey), 'signed by the CA key');
      assert.equal(leaf.ca, false);
      assert.equal(leaf.subject, `CN=${role}-1.example\nOU=${role}\nO=Rebound`);
      assert.equal(
        leaf.subjectAltName,
        `DNS:${role}-1.example, DNS:localhost, IP Address:127.0.0.1, URI:rebound://${role}/${role}-1.example`,
      );
      assert.deepEqual(leaf.keyUsage?.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
      assert.ok(leaf.checkHost(`${role}-1.example`));
      assert.ok(leaf.checkIP('127.0.0.1'));
      assert.equal(leaf.serialNumber, r.serialNumber.toUpperCase());
      assert.deepEqual(peerIdentity(asPeerCertificate(leaf.toString())), { role, name: `${role}-1.example` });
      // The key belongs to the certificate.
      const m = await loadTlsMaterial(caDir, { role, name: `${role}-1.example` });
      assert.ok(leaf.checkPrivateKey(createPrivateKey(m.key)));
    }
  });

  test('ca issue --out writes the key, the certificate and a copy of ca.crt', async () => {
    const out = join(dir, 'agent-host');
    const r = await issueCert(caDir, { role: 'agent', name: 'a1', outDir: out });
    assert.deepEqual(readdirSync(out).sort(), ['agent-a1.crt', 'agent-a1.key', 'ca.crt']);
    assert.ok(readFileSync(r.caPath).equals(readFileSync(join(caDir, 'ca.crt'))));
    assert.equal(mode(r.keyPath), 0o600);
    // A second component in the same dir keeps the (identical) ca.crt.
    await issueCert(caDir, { role: 'agent', name: 'a2', outDir: out });
    assert.equal(readdirSync(out).length, 5);
  });

  test('ca issue refuses to replace a certificate unless forced, and never mixes CAs', async () => {
    const out = join(dir, 'agent-host');
    const key = readFileSync(join(out, 'agent-a1.key'));
    await assert.rejects(
      issueCert(caDir, { role: 'agent', name: 'a1', outDir: out }),
      /agent-a1\.key already exists; give --force to replace it/,
    );
    assert.ok(readFileSync(join(out, 'agent-a1.key')).equals(key));
    await issueCert(caDir, { role: 'agent', name: 'a1', outDir: out, force: true });
    assert.ok(!readFileSync(join(out, 'agent-a1.key')).equals(key), 'replaced');

    const other = join(dir, 'other-ca');
    await initCa(other);
    await assert.rejects(
      issueCert(other, { role: 'agent', name: 'b1', outDir: out }),
      /ca\.crt is not this CA's certificate; use another --out dir/,
    );
    assert.equal(existsSync(join(out, 'agent-b1.key')), false, 'nothing written');
  });

  test('bad input is named', async () => {
    await assert.rejects(
      issueCert(caDir, { role: 'boss', name: 'x' }),
      /role 'boss' is not valid: use one of agent, process-server, master-target, configuration-server/,
    );
    for (const name of ['', '-x', 'a/b', '../up', 'x'.repeat(65), 'a b']) {
      await assert.rejects(issueCert(caDir, { role: 'agent', name }), /name '.*' is not valid/, name);
    }
    await assert.rejects(
      issueCert(join(dir, 'nothing'), { role: 'agent', name: 'x' }),
      /is not a CA dir \(no .*ca\.crt\)/,
    );
    await assert.rejects(issueCert(caDir, { role: 'agent', name: 'x', days: 0 }), /validity of 0 days/);
    await assert.rejects(
      loadTlsMaterial(caDir, { role: 'agent', name: 'nobody' }),
      /no certificate for agent 'nobody' in .* \(missing agent-nobody\.key\)/,
    );
    assert.equal(parseRole('master-target'), 'master-target');
  });

  test('a leaf never outlives its CA', async () => {
    const shortDir = join(dir, 'short-ca');
    const info = await initCa(shortDir, { days: 10 });
    const r = await issueCert(shortDir, { role: 'agent', name: 'x', days: 100 });
    assert.equal(r.notAfter.getTime(), info.notAfter.getTime());
  });
});

describe('peer identity', () => {
  const base = {
    raw: Buffer.from([1]),
    subject: { CN: 'a1', OU: 'agent', O: 'Rebound' },
    subjectaltname: 'DNS:a1, IP Address:127.0.0.1, URI:rebound://agent/a1',
  };
  const peer = (o: object) => ({ ...base, ...o }) as unknown as PeerCertificate;

  test('role and name come from the rebound:// URI and must agree with OU and CN', () => {
    assert.deepEqual(peerIdentity(peer({})), { role: 'agent', name: 'a1' });
    assert.throws(() => peerIdentity({}), { message: 'peer sent no certificate' });
    assert.throws(() => peerIdentity(undefined), { message: 'peer sent no certificate' });
    assert.throws(() => peerIdentity(peer({ subjectaltname: 'DNS:a1' })), {
      message: "peer certificate 'a1' carries no rebound:// role URI",
    });
    assert.throws(() => peerIdentity(peer({ subjectaltname: 'URI:rebound://boss/a1' })), {
      message: "peer certificate has unknown role 'boss'",
    });
    assert.throws(() => peerIdentity(peer({ subjectaltname: 'URI:rebound://agent' })), {
      message: "peer certificate role URI 'rebound://agent' is not rebound://ROLE/NAME",
    });
    assert.throws(() => peerIdentity(peer({ subject: { CN: 'a1', OU: 'master-target' } })), {
      message: "peer certificate role URI says 'agent' but its OU says 'master-target'",
    });
    assert.throws(() => peerIdentity(peer({ subject: { CN: 'a2', OU: 'agent' } })), {
      message: "peer certificate role URI names 'a1' but its CN is 'a2'",
    });
    assert.throws(
      () => peerIdentity(peer({ subjectaltname: 'URI:rebound://agent/a1, URI:rebound://master-target/a1' })),
      { message: "peer certificate 'a1' carries 2 role URIs" },
    );
  });

  test('parseSubjectAltName splits Node’s string form', () => {
    assert.deepEqual(parseSubjectAltName('DNS:x, IP Address:127.0.0.1, URI:rebound://agent/x'), [
      { type: 'DNS', value: 'x' },
      { type: 'IP Address', value: '127.0.0.1' },
      { type: 'URI', value: 'rebound://agent/x' },
    ]);
    assert.deepEqual(parseSubjectAltName(undefined), []);
  });
});

describe('atomic file output', () => {
  const { dir, cleanup } = scratchDir('atomic');
  after(cleanup);

  test('a failure part-way leaves none of the files and no temporary file', async () => {
    await assert.rejects(
      writeFilesAtomically([
        { path: join(dir, 'one'), data: '1', mode: 0o600 },
        { path: join(dir, 'missing-dir', 'two'), data: '2', mode: 0o600 },
      ]),
      /ENOENT/,
    );
    assert.deepEqual(readdirSync(dir), []);
  });

  test('an existing file is never replaced without overwrite, and the set is undone', async () => {
    writeFileSync(join(dir, 'b'), 'old');
    await assert.rejects(
      writeFilesAtomically([
        { path: join(dir, 'a'), data: 'new a', mode: 0o644 },
        { path: join(dir, 'b'), data: 'new b', mode: 0o644 },
      ]),
      /b already exists/,
    );
    assert.deepEqual(readdirSync(dir), ['b']);
    assert.equal(readFileSync(join(dir, 'b'), 'utf8'), 'old');
    await writeFilesAtomically([{ path: join(dir, 'b'), data: 'new b', mode: 0o640 }], true);
    assert.equal(readFileSync(join(dir, 'b'), 'utf8'), 'new b');
    assert.equal(mode(join(dir, 'b')), 0o640);
  });
});
