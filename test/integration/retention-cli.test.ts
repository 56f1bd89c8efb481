// `rebound master-target start --retention-hours`: a bad value is refused by name before
// anything starts.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { runCli } from '../support/agent-process.js';
import { scratchDir } from '../support/tmp.js';

describe('master-target --retention-hours', { timeout: 60_000 }, () => {
  const { dir, cleanup } = scratchDir('retention-cli');
  after(cleanup);

  for (const bad of ['0', '-2', 'a day', '87601']) {
    test(`refuses '${bad}'`, async () => {
      const r = await runCli([
        ...['master-target', 'start', '--data-dir', join(dir, 'mt'), '--retention-dir', join(dir, 'r')],
        ...['--tls-dir', join(dir, 'tls'), '--name', 'mt1', '--listen', '127.0.0.1:0'],
        `--retention-hours=${bad}`,
      ]);
      assert.equal(r.code, 1);
      assert.equal(
        r.stderr.trim(),
        `rebound: error: --retention-hours '${bad}' is not a number of hours above 0 and at most 87600`,
      );
    });
  }
});
