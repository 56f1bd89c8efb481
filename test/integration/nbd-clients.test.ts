// The agent's NBD exports against the real clients operators use: nbdinfo,
// qemu-io, qemu-img, nbdcopy. The agent runs as `rebound agent serve`.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { type RunningAgent, runCli, startAgent } from '../support/agent-process.js';
import { type NbdRequestError, TestNbdClient } from '../support/nbd-client.js';
import { scratchDir, sparseImage } from '../support/tmp.js';

const exec = promisify(execFile);
const MiB = 1024 * 1024;

/** A 32 MiB source image with data in some places and holes elsewhere. */
function makeSource(path: string): Buffer {
  const img = Buffer.alloc(32 * MiB);
  for (const at of [0, 3 * MiB, 17 * MiB + 4096, 31 * MiB]) randomBytes(512 * 1024).copy(img, at);
  writeFileSync(path, img);
  return img;
}

describe('real NBD clients against the agent', { timeout: 180_000 }, () => {
  const { dir, cleanup } = scratchDir('clients');
  const disk = sparseImage(join(dir, 'disk.img'), 64 * MiB);
  const roDisk = join(dir, 'ro.img');
  let agent: RunningAgent;
  const socket = join(dir, 'nbd.sock');

  before(async () => {
    writeFileSync(roDisk, Buffer.alloc(MiB, 0x77));
    agent = await startAgent([
      '--data-dir',
      join(dir, 'agent'),
      '--disk',
      `disk0=${disk}`,
      '--disk-ro',
      `golden=${roDisk}`,
      '--socket',
      socket,
    ]);
  });
  after(async () => {
    assert.equal(await agent.stop(), 0, 'the agent stops cleanly on SIGTERM');
    cleanup();
  });

  test('nbdinfo shows the size, the flags and the exports', async () => {
    const { stdout } = await exec('nbdinfo', ['--json', `${agent.url}/disk0`]);
    const info = JSON.parse(stdout);
    const e = info.exports[0];
    assert.equal(e['export-size'], 64 * MiB);
    assert.equal(info.protocol, 'newstyle-fixed');
    assert.equal(e['is_read_only'], false);
    for (const f of [
      'can_flush',
      'can_fua',
      'can_trim',
      'can_zero',
      'can_fast_zero',
      'can_multi_conn',
      'can_df',
    ]) {
      assert.equal(e[f], true, f);
    }
    assert.ok(e.contexts.includes('base:allocation'));
    assert.equal(e['block_size_preferred'], 4096);

    const list = await exec('nbdinfo', ['--list', '--json', agent.url]);
    const names = JSON.parse(list.stdout).exports.map((x: { 'export-name': string }) => x['export-name']);
    assert.deepEqual(names.sort(), ['disk0', 'golden']);
  });

  test('nbdinfo --map sees holes and data', async () => {
    const c = await TestNbdClient.connect({ port: agent.port }, 'disk0');
    await c.write(8 * MiB, Buffer.alloc(MiB, 1));
    await c.flush();
    await c.disconnect();
    const { stdout } = await exec('nbdinfo', ['--map', '--json', `${agent.url}/disk0`]);
    const map: { offset: number; length: number; type: number }[] = JSON.parse(stdout);
    const data = map.filter((m) => (m.type & 1) === 0);
    assert.ok(
      data.some((m) => m.offset <= 8 * MiB && m.offset + m.length >= 9 * MiB),
      `data extent at 8 MiB: ${stdout}`,
    );
    const holes = map.filter((m) => m.type & 1).reduce((n, m) => n + m.length, 0);
    assert.ok(holes >= 60 * MiB, `most of the disk is a hole: ${stdout}`);
  });

  test('qemu-io write, read, flush, zero and discard patterns', async () => {
    const { stdout } = await exec('qemu-io', [
      '-f',
      'raw',
      `${agent.url}/disk0`,
      ...['-c', 'write -P 0xab 0 1M'],
      ...['-c', 'write -P 0xcd 1M 64k'],
      ...['-c', 'write -f -P 0x11 2M 4k'], // FUA
      ...['-c', 'flush'],
      ...['-c', 'read -P 0xab 0 1M'],
      ...['-c', 'read -P 0xcd 1M 64k'],
      ...['-c', 'read -P 0x11 2M 4k'],
      ...['-c', 'write -z 512k 128k'],
      ...['-c', 'read -P 0 512k 128k'],
      ...['-c', 'read -P 0xab 0 512k'],
      ...['-c', 'discard 1M 64k'],
      ...['-c', 'read -P 0 1M 64k'],
      ...['-c', 'aio_write -P 0x42 4M 256k'],
      ...['-c', 'aio_write -P 0x43 5M 256k'],
      ...['-c', 'aio_flush'],
      ...['-c', 'read -P 0x42 4M 256k'],
      ...['-c', 'read -P 0x43 5M 256k'],
      ...['-c', 'write -P 0x66 8M 32M'], // the largest payload, far above the per-connection buffer
      ...['-c', 'read -P 0x66 8M 32M'],
    ]);
    assert.doesNotMatch(stdout, /Pattern verification failed|error|failed/i);
  });

  test('qemu-img convert into the export and back out', async () => {
    const src = join(dir, 'src.raw');
    const img = makeSource(src);
    await exec('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, `${agent.url}/disk0`]);
    const back = join(dir, 'back.raw');
    await exec('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', `${agent.url}/disk0`, back]);
    const out = readFileSync(back);
    assert.equal(out.length, 64 * MiB);
    assert.ok(out.subarray(0, img.length).equals(img), 'the first 32 MiB equal the source');
    await exec('cmp', ['-n', String(32 * MiB), src, back]);
  });

  test('nbdcopy into the export and back out, compared with cmp', async () => {
    const src = join(dir, 'src64.raw');
    const img = Buffer.alloc(64 * MiB);
    for (let at = 0; at < img.length; at += 4 * MiB) randomBytes(MiB).copy(img, at + (at % (3 * MiB)));
    writeFileSync(src, img);
    await exec('nbdcopy', [src, `${agent.url}/disk0`]);
    const back = join(dir, 'copy.raw');
    await exec('nbdcopy', [`${agent.url}/disk0`, back]);
    await exec('cmp', [src, back]);
    // The same over the Unix socket.
    const back2 = join(dir, 'copy2.raw');
    await exec('nbdcopy', [`nbd+unix:///disk0?socket=${socket}`, back2]);
    await exec('cmp', [src, back2]);
  });

  test('a read-only export serves reads and refuses writes with EPERM', async () => {
    const { stdout } = await exec('nbdinfo', ['--json', `${agent.url}/golden`]);
    assert.equal(JSON.parse(stdout).exports[0]['is_read_only'], true);
    const c = await TestNbdClient.connect({ port: agent.port }, 'golden');
    assert.ok((await c.read(0, 4096)).equals(Buffer.alloc(4096, 0x77)));
    await assert.rejects(c.write(0, Buffer.alloc(4096)), (e: NbdRequestError) => e.errno === 1); // EPERM
    await assert.rejects(c.trim(0, 4096), (e: NbdRequestError) => e.errno === 1);
    assert.ok((await c.read(0, 4096)).equals(Buffer.alloc(4096, 0x77)), 'still unchanged');
    await c.disconnect();
  });

  test('out-of-range requests get ENOSPC for writes past the end and EINVAL otherwise', async () => {
    const c = await TestNbdClient.connect({ port: agent.port }, 'disk0');
    const end = 64 * MiB;
    await assert.rejects(c.write(end - 2048, Buffer.alloc(4096)), (e: NbdRequestError) => e.errno === 28);
    await assert.rejects(c.writeZeroes(end, 4096), (e: NbdRequestError) => e.errno === 28);
    await assert.rejects(c.read(end - 2048, 4096), (e: NbdRequestError) => e.errno === 22);
    await assert.rejects(c.trim(end, 4096), (e: NbdRequestError) => e.errno === 22);
    // The connection survives errors and keeps working.
    await c.write(end - 4096, Buffer.alloc(4096, 9));
    assert.ok((await c.read(end - 4096, 4096)).equals(Buffer.alloc(4096, 9)));
    await c.disconnect();
  });

  test('an unknown export name is refused with a clear reason', async () => {
    await assert.rejects(exec('nbdinfo', [`${agent.url}/nope`]), (e: Error & { stderr: string }) =>
      /nope/.test(e.stderr),
    );
  });

  test('the change log records what the clients wrote', async () => {
    const r = await runCli(['agent', 'log', '--json', '--data-dir', join(dir, 'agent')]);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.equal(s.disks.length, 1, 'read-only exports are not captured');
    assert.equal(s.disks[0].name, 'disk0');
    assert.ok(s.disks[0].writes > 10);
    assert.ok(s.disks[0].zeroes >= 1);
    assert.ok(s.disks[0].trims >= 1);
    assert.ok(s.log.flushMarkers >= 3);
  });
});
