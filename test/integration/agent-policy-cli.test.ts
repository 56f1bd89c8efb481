// The agent's policy options refused with a clear error before anything is opened:
// acknowledgement mode, its timeout, app-consistent frequency and hooks.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { runCli } from '../support/agent-process.js';
import { scratchDir, sparseImage } from '../support/tmp.js';

describe('agent policy options', { timeout: 60_000 }, () => {
  const { dir, cleanup } = scratchDir('policy-cli');
  after(cleanup);
  const disk = sparseImage(join(dir, 'd.img'), 1024 * 1024);
  const serve = (...extra: string[]) => [
    'agent',
    'serve',
    '--data-dir',
    join(dir, 'agent'),
    '--disk',
    `d=${disk}`,
    '--listen',
    '127.0.0.1:0',
    ...extra,
  ];
  const ps = ['--process-server', '127.0.0.1:1', '--tls-dir', dir, '--name', 'a1'];

  const cases: [string, string[], string][] = [
    [
      'an unknown mode',
      serve('--ack-mode', 'fast'),
      "--ack-mode 'fast' is not one of async, process-server, sync",
    ],
    [
      'sync without a process server',
      serve('--ack-mode', 'sync'),
      '--ack-mode sync needs --process-server: acknowledgements come from there',
    ],
    [
      'a zero ack timeout',
      serve(...ps, '--ack-mode', 'process-server', '--ack-timeout', '0'),
      "--ack-timeout '0' is not a number of seconds between 0 and 86400",
    ],
    [
      'an unknown congestion policy',
      serve('--on-congestion', 'drop'),
      "--on-congestion 'drop' is not one of pull-ahead, block",
    ],
    [
      'app points too rare',
      serve('--app-consistent-minutes', '721'),
      "--app-consistent-minutes '721' is not a number of minutes from 0 (off) to 720",
    ],
    [
      'a freeze without a thaw',
      serve('--freeze-script', 'fsfreeze -f /mnt'),
      '--freeze-script and --thaw-script go together: a freeze must always be undone',
    ],
    [
      'a bad hook timeout',
      serve('--freeze-script', 'true', '--thaw-script', 'true', '--hook-timeout', 'soon'),
      "--hook-timeout 'soon' is not a number of seconds between 0 and 86400",
    ],
  ];
  for (const [what, args, message] of cases) {
    test(what, async () => {
      const r = await runCli(args);
      assert.equal(r.code, 1);
      assert.equal(r.stderr, `rebound: error: ${message}\n`);
      assert.ok(!existsSync(join(dir, 'agent')), 'nothing is written to the data dir');
    });
  }

  test('app-point without a running agent', async () => {
    const r = await runCli(['agent', 'app-point', '--data-dir', join(dir, 'none')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^rebound: error: no running agent answers at .*agent\.sock/);
  });
});
