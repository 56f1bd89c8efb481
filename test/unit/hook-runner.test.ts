// Freeze/thaw hooks: exit codes, output and timeouts become named reasons; a timed-out
// hook is killed with its children.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { runHook } from '../../src/agent/hook-runner.js';

describe('runHook', () => {
  test('exit 0 is success; the environment reaches the script', async () => {
    const r = await runHook('freeze', 'test "$REBOUND_TAG" = t1', 5000, { REBOUND_TAG: 't1' });
    assert.equal(r.ok, true);
  });

  test('a failure names the hook, the exit code and what it said', async () => {
    const r = await runHook('freeze', 'echo cannot freeze /mnt >&2; exit 3', 5000);
    assert.deepEqual(r.ok ? undefined : r.reason, 'freeze script exited with code 3: cannot freeze /mnt');
  });

  test('a hook that outlives its timeout is killed with its process group', async () => {
    const t0 = Date.now();
    const r = await runHook('thaw', 'sleep 30 & sleep 30; wait', 300);
    assert.ok(Date.now() - t0 < 5000);
    assert.deepEqual(r.ok ? undefined : r.reason, 'thaw script timed out after 0.3 s (killed)');
  });
});
