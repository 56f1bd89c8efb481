// The services' memory settings: the binary's shebang carries the same Node flags as the
// spawns of process.execPath, and glibc takes the allocator settings.
import assert from 'node:assert/strict';
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
});
