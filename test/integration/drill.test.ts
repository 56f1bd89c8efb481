// The README's first command: `rebound drill`, the whole job on one machine.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { runCli } from '../support/agent-process.js';
import { scratchDir } from '../support/tmp.js';

describe('rebound drill', { timeout: 480_000 }, () => {
  test('ext4 on a protected disk reaches the master target; the failover image is clean and whole; the VM cycle keeps every file', async () => {
    const { dir, cleanup } = scratchDir('drill');
    try {
      const r = await runCli(['drill', '--work-dir', dir, '--disk-size', '64M', '--files', '60']);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /the master target holds the bookmark \(seq \d+\) \d+ ms after it was taken/);
      assert.match(
        r.stdout,
        /failover image of the bookmark from the master target: e2fsck clean, 60\/60 files match their sha256/,
      );
      assert.match(r.stdout, /^drill passed$/m);
      // The recovery cycle with VMs: every generation verifies after failover and after failback.
      assert.match(r.stdout, /^site b: web-recovered REBOUND gen 1 ok 8 files$/m);
      assert.match(r.stdout, /^site a: web REBOUND gen 2 ok 8 files$/m);
      assert.match(r.stdout, /^ {2}only the differences moved: \d+ bytes sent$/m);
      assert.match(r.stdout, /^replication group tier: common point at seq \d+ /m);
      assert.match(r.stdout, /^site b: web-test REBOUND gen 3 ok 8 files$/m);
      assert.match(r.stdout, /^plan dr waits for 'plan group tier: manual action 1': confirming it$/m);
      assert.match(r.stdout, /^plan scripts ran: pre test-failover web; post test-failover web$/m);
      assert.match(r.stdout, /^drill OK: /m);
    } finally {
      cleanup();
    }
  });
});
