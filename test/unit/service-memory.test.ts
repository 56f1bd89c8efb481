// The services' memory settings: the binary's shebang carries the same Node flags as the
// spawns of process.execPath, glibc takes the allocator settings, and a trim gives freed
// heap pages back to the kernel.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { SERVICE_NODE_FLAGS } from '../../src/cli/service-memory.js';
import { tuneAllocator } from '../../src/storage/native-fileops.js';

describe('service memory settings', () => {
  test('the binary runs with SERVICE_NODE_FLAGS', () => {
    // dist/test/unit -> the project's src/cli/main.ts
    const main = readFileSync(new URL('../../../src/cli/main.ts', import.meta.url), 'utf8');
    assert.equal(main.split('\n')[0], `#!/usr/bin/env -S node ${SERVICE_NODE_FLAGS.join(' ')}`);
  });

  test('glibc accepts the allocator settings', () => {
    assert.equal(tuneAllocator(64 * 1024, 2), true);
  });

  test('a trim returns the free pages between live heap chunks to the kernel', () => {
    // In a child of its own (a heap nobody else uses, and gc() exposed): 125 MiB of 16 KiB
    // buffers, one in 16 kept alive, the rest collected. Without the trim glibc keeps it all.
    const fileops = new URL('../../src/storage/native-fileops.js', import.meta.url).href;
    const script = `
      const { trimAllocator, tuneAllocator } = await import(${JSON.stringify(fileops)});
      tuneAllocator(64 * 1024, 2);
      let bufs = [];
      for (let i = 0; i < 8000; i++) bufs.push(Buffer.allocUnsafe(16 * 1024).fill(1));
      bufs = bufs.filter((_, i) => i % 16 === 0);
      gc(); gc();
      await new Promise((r) => setTimeout(r, 100));
      const before = process.memoryUsage.rss();
      const released = trimAllocator();
      console.log(JSON.stringify({ released, freedMiB: (before - process.memoryUsage.rss()) / 2 ** 20, kept: bufs.length }));`;
    const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], {
      encoding: 'utf8',
    });
    const r = JSON.parse(out) as { released: boolean; freedMiB: number; kept: number };
    assert.equal(r.released, true);
    assert.ok(r.freedMiB >= 64, `a trim gave back ${r.freedMiB.toFixed(1)} MiB, expected at least 64`);
    assert.equal(r.kept, 500);
  });
});
