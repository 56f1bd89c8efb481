// The lazy command table names exactly the top-level commands each module registers, and
// every command is reachable.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Command } from 'commander';
import { COMMAND_MODULES, registrarsFor } from '../../src/cli/command-table.js';

test('each module registers exactly the commands the table gives it', async () => {
  const seen = new Set<string>();
  for (const m of COMMAND_MODULES) {
    const program = new Command();
    (await m.load())(program);
    assert.deepEqual(program.commands.map((c) => c.name()).sort(), [...m.names].sort());
    for (const n of m.names) {
      assert.ok(!seen.has(n), `${n} is in the table twice`);
      seen.add(n);
    }
  }
});

test('a known command loads its module only; help and unknown commands load every module', async () => {
  assert.equal((await registrarsFor(['sites', '--json'])).length, 1);
  assert.equal((await registrarsFor(['--cs-config', 'x'])).length, COMMAND_MODULES.length);
  assert.equal((await registrarsFor(['nonsense'])).length, COMMAND_MODULES.length);
  assert.equal((await registrarsFor([])).length, COMMAND_MODULES.length);
});
