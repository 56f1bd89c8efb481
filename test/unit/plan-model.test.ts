// The rules a recovery plan must follow (plan-model.ts), each with its exact message.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  checkPlan,
  type PlanFacts,
  type PlanGroupInput,
} from '../../src/control-plane/recovery/plan-model.js';

const ITEMS: Record<string, { id: string; group: string | undefined }> = {
  db1: { id: 'i-db1', group: 'tier' },
  db2: { id: 'i-db2', group: 'tier' },
  web: { id: 'i-web', group: undefined },
  mail: { id: 'i-mail', group: undefined },
};
const facts: PlanFacts = {
  itemOf: (m) => ITEMS[m],
  groupMachines: (g) => (g === 'tier' ? ['db1', 'db2'] : []),
};

const refusals: [string, string, PlanGroupInput[], string][] = [
  [
    'bad plan name',
    'has space',
    [{ name: 'g', machines: ['web'] }],
    "plan name 'has space' must be 1-64 letters",
  ],
  ['no groups', 'p', [], "recovery plan 'p' needs at least one group"],
  ['bad group name', 'p', [{ name: '-x', machines: ['web'] }], "plan group name '-x' must be 1-64 letters"],
  [
    'group twice',
    'p',
    [
      { name: 'g', machines: ['web'] },
      { name: 'g', machines: ['mail'] },
    ],
    "plan group 'g' is named twice",
  ],
  ['empty group', 'p', [{ name: 'g', machines: [] }], "plan group 'g' has no machines"],
  [
    'empty script',
    'p',
    [{ name: 'g', machines: ['web'], pre: ' ' }],
    "the pre script of plan group 'g' must be 1-4096 characters",
  ],
  [
    'empty manual action',
    'p',
    [{ name: 'g', machines: ['web'], manual: [''] }],
    "a manual action of plan group 'g' must be 1-1000 characters",
  ],
  [
    'machine twice in a group',
    'p',
    [{ name: 'g', machines: ['web', 'web'] }],
    "machine 'web' is named twice in plan group 'g'",
  ],
  [
    'machine in two groups',
    'p',
    [
      { name: 'a', machines: ['web'] },
      { name: 'b', machines: ['web'] },
    ],
    "machine 'web' is in plan groups 'a' and 'b': a machine recovers once",
  ],
  [
    'unknown machine',
    'p',
    [{ name: 'g', machines: ['nope'] }],
    "replicated item of machine 'nope' not found",
  ],
  [
    'replication group incomplete',
    'p',
    [{ name: 'g', machines: ['db1', 'web'] }],
    "replication group 'tier' recovers as a whole: add 'db2' to plan group 'g'",
  ],
  [
    'replication group split',
    'p',
    [
      { name: 'a', machines: ['db1'] },
      { name: 'b', machines: ['db2'] },
    ],
    "replication group 'tier' recovers at one common point: 'db1' and 'db2' must be in the same plan group",
  ],
];

for (const [what, name, groups, message] of refusals) {
  test(`a plan is refused: ${what}`, () => {
    const r = checkPlan(name, groups, facts);
    assert.equal(r.ok, false);
    if (!r.ok) assert.ok(r.message.startsWith(message), r.message);
  });
}

test('a good plan is stored with its items by id, in order, with its scripts and manual actions', () => {
  const r = checkPlan(
    'p',
    [
      { name: 'data', machines: ['db2', 'db1'], pre: 'echo pre', manual: ['check replication'] },
      { name: 'front', machines: ['web', 'mail'], post: 'echo post' },
    ],
    facts,
  );
  assert.deepEqual(r, {
    ok: true,
    groups: [
      { name: 'data', items: ['i-db2', 'i-db1'], pre: 'echo pre', manual: ['check replication'] },
      { name: 'front', items: ['i-web', 'i-mail'], post: 'echo post', manual: [] },
    ],
  });
});
