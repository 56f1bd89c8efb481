// Bad input to the CLI: a clear error that names the problem, a non-zero exit,
// and nothing half-written.
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { runCli, startAgent } from '../support/agent-process.js';
import { scratchDir, sparseImage } from '../support/tmp.js';

describe('CLI errors', { timeout: 60_000 }, () => {
  const { dir, cleanup } = scratchDir('cli');
  after(cleanup);

  const cases: [string, string[], RegExp][] = [
    [
      'a disk spec without =',
      ['agent', 'serve', '--data-dir', 'X', '--disk', 'bad'],
      /--disk 'bad' is not NAME=PATH/,
    ],
    [
      'a missing disk file',
      ['agent', 'serve', '--data-dir', 'X', '--disk', 'd0=/nonexistent.img'],
      /disk 'd0': cannot open \/nonexistent.img: no such file or device/,
    ],
    ['no disk at all', ['agent', 'serve', '--data-dir', 'X'], /give at least one --disk NAME=PATH/],
    [
      'a bad listen address',
      ['agent', 'serve', '--data-dir', 'X', '--disk', 'd0=/etc/hostname', '--listen', 'nohost'],
      /'nohost' is not HOST:PORT/,
    ],
    [
      'a bad size',
      ['agent', 'serve', '--data-dir', 'X', '--disk', 'd0=/etc/hostname', '--log-limit', '12Q'],
      /'12Q' is not a size/,
    ],
    [
      'a dir that is not an agent data dir',
      ['agent', 'log', '--data-dir', 'NONE'],
      /is not an agent data dir \(no agent.json\)/,
    ],
    [
      'bookmark without a running agent',
      ['agent', 'bookmark', '--data-dir', 'NONE', '--tag', 't'],
      /no running agent answers at/,
    ],
  ];
  for (const [what, args, message] of cases) {
    test(what, async () => {
      const dataDir = join(dir, `data-${what.replace(/\W+/g, '-')}`);
      const r = await runCli(args.map((a) => (a === 'X' ? dataDir : a === 'NONE' ? join(dir, 'none') : a)));
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^rebound: error: /);
      assert.match(r.stderr, message);
      assert.equal(existsSync(dataDir), false, 'nothing half-written');
    });
  }

  test('log apply names the unknown disk and the bad sequence number', async () => {
    const dataDir = join(dir, 'agent');
    const disk = sparseImage(join(dir, 'disk.img'), 1024 * 1024);
    const agent = await startAgent(['--data-dir', dataDir, '--disk', `disk0=${disk}`]);
    assert.equal(await agent.stop(), 0);
    writeFileSync(join(dir, 'base.img'), Buffer.alloc(1024 * 1024));
    const base = ['log', 'apply', '--data-dir', dataDir, '--base', join(dir, 'base.img')];
    let r = await runCli([...base, '--disk', 'zz', '--to', '5']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no disk named 'zz' in .* \(disks: disk0\)/);
    r = await runCli([...base, '--disk', 'disk0', '--to', 'five']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--to 'five' is not a sequence number/);
  });

  test('a second agent on the same data dir is refused, naming the first', async () => {
    const dataDir = join(dir, 'locked');
    const disk = sparseImage(join(dir, 'locked.img'), 1024 * 1024);
    const first = await startAgent(['--data-dir', dataDir, '--disk', `disk0=${disk}`]);
    try {
      const r = await runCli([
        'agent',
        'serve',
        '--data-dir',
        dataDir,
        '--disk',
        `disk0=${disk}`,
        '--listen',
        '127.0.0.1:0',
      ]);
      assert.equal(r.code, 1);
      assert.match(
        r.stderr,
        new RegExp(`data dir .* is in use by another agent \\(pid ${first.child.pid}\\)`),
      );
    } finally {
      assert.equal(await first.stop(), 0);
    }
  });
});
