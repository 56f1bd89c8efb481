// The pure parts of registration: the server address as typed, the wrong-passphrase rate limit,
// the handshake's proofs (any changed field breaks them) and the passphrase's shape.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { parseServerAddress } from '../../src/control-plane/registration/address.js';
import { generatePassphrase } from '../../src/control-plane/registration/passphrase.js';
import {
  checkKdf,
  clientTranscript,
  deriveKey,
  mac,
  type RegistrationRequest,
  sameMac,
  serverTranscript,
} from '../../src/control-plane/registration/protocol.js';
import { FailureLimiter } from '../../src/control-plane/registration/rate-limit.js';

describe('configuration server address', () => {
  const ok: [string, string, string][] = [
    ['10.0.0.5:9443', '10.0.0.5:9443', 'https://10.0.0.5:9443'],
    ['10.0.0.5', '10.0.0.5:9443', 'https://10.0.0.5:9443'],
    ['cs.example.org:443', 'cs.example.org:443', 'https://cs.example.org:443'],
    ['https://cs:8443/', 'cs:8443', 'https://cs:8443'],
    ['[::1]:9443', '[::1]:9443', 'https://[::1]:9443'],
    ['[fe80::1]', '[fe80::1]:9443', 'https://[fe80::1]:9443'],
  ];
  for (const [text, display, url] of ok) {
    test(`accepts ${text}`, () => {
      const a = parseServerAddress(text);
      assert.equal(a.display, display);
      assert.equal(a.url, url);
    });
  }
  const bad: [string, string][] = [
    ['nonsense::', 'too many colons (an IPv6 address goes in brackets: [ADDRESS]:PORT)'],
    ['', 'it is empty'],
    [':9443', 'the host is missing'],
    ['cs:0', "port '0' is not a number from 1 to 65535"],
    ['cs:70000', "port '70000' is not a number from 1 to 65535"],
    ['cs:http', "port 'http' is not a number from 1 to 65535"],
    ['bad_host:9443', "'bad_host' is not a host name or IP address"],
    ['[nope]:9443', "'nope' is not an IPv6 address"],
    ['http://cs:80', 'only https:// is spoken'],
  ];
  for (const [text, why] of bad) {
    test(`refuses '${text}'`, () => {
      assert.throws(
        () => parseServerAddress(text),
        new Error(
          `configuration server address '${text}' is not valid: ${why}; use HOST:PORT, e.g. 10.0.0.5:9443`,
        ),
      );
    });
  }
});

describe('wrong-passphrase rate limit', () => {
  test('5 failures in a minute block the address until the oldest leaves the window', () => {
    const l = new FailureLimiter(5, 60_000);
    for (let i = 0; i < 5; i++) {
      assert.equal(l.blockedFor('10.0.0.1', 1000 + i * 1000), 0);
      l.recordFailure('10.0.0.1', 1000 + i * 1000);
    }
    assert.equal(l.blockedFor('10.0.0.1', 6000), 55_000, 'until the first failure (t=1 s) is a minute old');
    assert.equal(l.blockedFor('10.0.0.2', 6000), 0, 'other addresses are not affected');
    assert.equal(l.blockedFor('10.0.0.1', 61_000), 0, 'the first failure left the window');
    l.recordFailure('10.0.0.1', 61_000);
    assert.equal(l.blockedFor('10.0.0.1', 61_000), 1000, 'five again in the window (t=2..5 s and 61 s)');
  });

  test('memory stays bounded: the address whose latest failure is oldest is forgotten', () => {
    const l = new FailureLimiter(1, 60_000, 2);
    l.recordFailure('a', 1);
    l.recordFailure('b', 2);
    l.recordFailure('c', 3);
    assert.equal(l.blockedFor('a', 4), 0);
    assert.ok(l.blockedFor('b', 4) > 0 && l.blockedFor('c', 4) > 0);
  });
});

describe('handshake proofs', () => {
  const challenge = { challengeId: 'c1', nonce: 'bm9uY2U=', salt: 'c2FsdA==' };
  const request: Omit<RegistrationRequest, 'proof'> = {
    challengeId: 'c1',
    role: 'agent',
    name: 'web1',
    osType: 'linux',
    machineId: '827e7bff-655d-44b5-8d64-d38cb303fd14',
    disks: [{ id: '756b3d53-f103-4cb0-99f7-1d185925eca6', name: 'root', sizeBytes: 1024, path: '/d' }],
    publicKey: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n',
    clientNonce: 'Y2xpZW50',
  };
  const key = randomBytes(32);
  const proof = mac(key, clientTranscript(challenge, 'AB:CD', request));

  test('the same inputs give the same proof; any change of a field breaks it', () => {
    assert.ok(sameMac(proof, mac(key, clientTranscript(challenge, 'ab:cd', request))));
    const changed: Omit<RegistrationRequest, 'proof'>[] = [
      { ...request, name: 'web2' },
      { ...request, role: 'process-server' },
      { ...request, osType: 'windows' },
      { ...request, machineId: '827e7bff-655d-44b5-8d64-d38cb303fd15' },
      { ...request, site: 'a' },
      { ...request, address: '10.0.0.1:1' },
      { ...request, disks: [{ ...request.disks![0], id: '756b3d53-f103-4cb0-99f7-1d185925eca7' }] },
      { ...request, disks: [] },
      { ...request, publicKey: request.publicKey.replace('AAAA', 'AAAB') },
      { ...request, clientNonce: 'other' },
    ];
    for (const r of changed) assert.ok(!sameMac(proof, mac(key, clientTranscript(challenge, 'AB:CD', r))));
    assert.ok(!sameMac(proof, mac(key, clientTranscript(challenge, 'AB:CE', request))), 'another TLS cert');
    assert.ok(!sameMac(proof, mac(key, clientTranscript({ ...challenge, nonce: 'x' }, 'AB:CD', request))));
    assert.ok(!sameMac(proof, mac(randomBytes(32), clientTranscript(challenge, 'AB:CD', request))));
  });

  test("the server's proof covers the certificate, the CA and the client's proof", () => {
    const answer = { role: 'agent' as const, name: 'web1', certificate: 'C', ca: 'A', reregistered: false };
    const sp = mac(key, serverTranscript(proof, answer));
    assert.ok(sameMac(sp, mac(key, serverTranscript(proof, { ...answer }))));
    for (const a of [
      { ...answer, certificate: 'D' },
      { ...answer, ca: 'B' },
      { ...answer, reregistered: true },
      { ...answer, name: 'web2' },
    ]) {
      assert.ok(!sameMac(sp, mac(key, serverTranscript(proof, a))));
    }
    assert.ok(!sameMac(sp, mac(key, serverTranscript('0'.repeat(64), answer))));
  });

  test('sameMac refuses anything that is not a 64-digit hex MAC', () => {
    assert.equal(sameMac('', ''), false);
    assert.equal(sameMac('zz'.repeat(32), 'zz'.repeat(32)), false);
  });

  test('scrypt derives the same key from the same passphrase and salt', async () => {
    const kdf = { name: 'scrypt' as const, N: 1024, r: 8, p: 1, keyLength: 32 };
    const a = await deriveKey('pass', 'c2FsdA==', kdf);
    assert.ok(a.equals(await deriveKey('pass', 'c2FsdA==', kdf)));
    assert.ok(!a.equals(await deriveKey('pass', 'b3RoZXI=', kdf)));
  });

  test('a client refuses key-derivation parameters that would cost it too much', () => {
    assert.throws(() => checkKdf({ name: 'scrypt', N: 1 << 24, r: 8, p: 1, keyLength: 32 }), /refuses/);
    assert.throws(() => checkKdf({ name: 'scrypt', N: 1000, r: 8, p: 1, keyLength: 32 }), /refuses/);
    assert.doesNotThrow(() => checkKdf({ name: 'scrypt', N: 32768, r: 8, p: 1, keyLength: 32 }));
  });
});

test('a generated passphrase is 6 groups of 5 unambiguous characters, never twice the same', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const p = generatePassphrase();
    assert.match(p, /^[a-hjkmnp-z2-9]{5}(-[a-hjkmnp-z2-9]{5}){5}$/);
    seen.add(p);
  }
  assert.equal(seen.size, 200);
});
