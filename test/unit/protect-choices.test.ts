import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type {
  Datastore,
  Machine,
  MasterTargetRow,
  Policy,
  ProcessServerRow,
  RetentionVolume,
} from '../../src/control-plane/db/schema.js';
import { decideProtect, type ProtectFacts } from '../../src/control-plane/items/protect-choices.js';

const T = '2026-01-01T00:00:00.000Z';
const machine: Machine = {
  id: 'm1',
  name: 'web',
  site_id: null,
  os_type: 'linux',
  agent_name: 'web-agent',
  address: null,
  registered_at: T,
  last_heartbeat_at: T,
  status_json: null,
  created_by_failover_of: null,
  created_at: T,
};
const policy: Policy = {
  id: 'p1',
  name: 'gold',
  rpo_threshold_minutes: 15,
  retention_hours: 24,
  app_consistent_minutes: 60,
  crash_consistent_minutes: 5,
  ack_mode: 'async',
  is_failback: 0,
  parent_policy_id: null,
  created_at: T,
  updated_at: T,
};
const component = (id: string, name: string, builtin: 0 | 1) => ({
  id,
  name,
  address: '127.0.0.1:1',
  builtin,
  registered_at: T,
  last_heartbeat_at: T,
  status_json: null,
});
const ps = (id: string, name: string, builtin: 0 | 1 = 0): ProcessServerRow => component(id, name, builtin);
const mt = (id: string, name: string, builtin: 0 | 1 = 0, max_disks = 60): MasterTargetRow => ({
  ...component(id, name, builtin),
  max_disks,
  has_snapshots: 0,
});
const ds = (id: string, mtId: string, name: string): Datastore => ({
  id,
  master_target_id: mtId,
  name,
  path: `/ds/${name}`,
  capacity_bytes: 1e12,
  free_bytes: 1e12,
  refreshed_at: T,
  fs_type: 'ext4',
  mount_point: '/ds',
  problem: null,
  facts_json: null,
});
const rv = (id: string, mtId: string, path: string, invalid?: string): RetentionVolume => ({
  id,
  master_target_id: mtId,
  path,
  fs_type: invalid ? 'vfat' : 'ext4',
  capacity_bytes: 1e12,
  free_bytes: 1e12,
  valid: invalid ? 0 : 1,
  invalid_reason: invalid ?? null,
  refreshed_at: T,
  mount_point: '/mnt/retention',
  facts_json: null,
});

const base: ProtectFacts = {
  machine,
  existingItem: undefined,
  policy,
  processServers: [ps('ps0', 'builtin-ps', 1), ps('ps1', 'ps-east')],
  masterTargets: [mt('mt0', 'builtin-mt', 1), mt('mt1', 'mt-west')],
  datastores: [ds('d0', 'mt0', 'local'), ds('d1', 'mt1', 'west-a'), ds('d2', 'mt1', 'west-b')],
  retentionVolumes: [
    rv('r0', 'mt0', '/mnt/retention'),
    rv('r1', 'mt1', '/mnt/usb', 'FAT file systems are not supported'),
  ],
  machineDisks: 2,
  attachedDisks: () => 0,
};
const req = { machine: 'web', policy: 'gold' };

describe('decideProtect', () => {
  it('defaults to the built-in components and the master target’s only datastore and valid volume', () => {
    const d = decideProtect(req, base);
    assert.ok(d.ok);
    assert.deepEqual(
      [
        d.choices.processServer.name,
        d.choices.masterTarget.name,
        d.choices.datastore?.name,
        d.choices.retentionVolume?.path,
      ],
      ['builtin-ps', 'builtin-mt', 'local', '/mnt/retention'],
    );
  });

  const refusals: [
    string,
    Partial<typeof req & Record<string, string>>,
    Partial<ProtectFacts>,
    number,
    string,
  ][] = [
    ['unknown machine', {}, { machine: undefined }, 404, "machine 'web' not found"],
    ['unknown policy', {}, { policy: undefined }, 404, "policy 'gold' not found"],
    [
      'failback policy',
      {},
      { policy: { ...policy, name: 'gold-failback', is_failback: 1 } },
      400,
      "policy 'gold-failback' is a failback policy: reprotect applies it by itself; choose a replication policy",
    ],
    [
      'agent not registered',
      {},
      { machine: { ...machine, agent_name: null, registered_at: null } },
      409,
      "machine 'web' has no registered agent (agent not installed): run 'rebound agent register' on it first",
    ],
    [
      'already protected',
      {},
      { existingItem: { id: 'i1', state: 'protected' } },
      409,
      "machine 'web' is already protected (item i1, state protected)",
    ],
    ['unknown process server', { processServer: 'nope' }, {}, 404, "process server 'nope' not found"],
    ['unknown master target', { masterTarget: 'nope' }, {}, 404, "master target 'nope' not found"],
    [
      'several process servers, none built in',
      {},
      { processServers: [ps('a', 'ps-a'), ps('b', 'ps-b')] },
      400,
      'several process servers are registered (ps-a, ps-b): choose one',
    ],
    ['no master target', {}, { masterTargets: [] }, 409, 'no master target is registered'],
    [
      'datastore of another master target',
      { datastore: 'west-a' },
      {},
      400,
      "datastore 'west-a' belongs to master target 'mt-west', not to 'builtin-mt'",
    ],
    ['unknown datastore', { datastore: 'nope' }, {}, 404, "datastore 'nope' not found"],
    [
      'several datastores',
      { masterTarget: 'mt-west' },
      {},
      400,
      "master target 'mt-west' has several datastores (west-a, west-b): choose one",
    ],
    [
      'retention volume of another master target',
      { retentionVolume: '/mnt/usb' },
      {},
      400,
      "retention volume '/mnt/usb' belongs to master target 'mt-west', not to 'builtin-mt'",
    ],
    [
      'invalid retention volume',
      { masterTarget: 'mt-west', datastore: 'west-a', retentionVolume: '/mnt/usb' },
      {},
      400,
      "retention volume '/mnt/usb' of master target 'mt-west' is not valid: FAT file systems are not supported",
    ],
    [
      'only an invalid retention volume',
      { masterTarget: 'mt-west', datastore: 'west-a' },
      {},
      400,
      "retention volume '/mnt/usb' of master target 'mt-west' is not valid: FAT file systems are not supported",
    ],
    ['unknown retention volume', { retentionVolume: '/nope' }, {}, 404, "retention volume '/nope' not found"],
    [
      'too many disks on the master target (S23)',
      {},
      { attachedDisks: () => 59 },
      409,
      "master target 'builtin-mt' would hold 61 disks, more than its limit of 60",
    ],
  ];
  for (const [what, extra, facts, status, message] of refusals) {
    it(`refuses: ${what}`, () => {
      const d = decideProtect({ ...req, ...extra }, { ...base, ...facts });
      assert.deepEqual(d, { ok: false, refusal: { status, message } });
    });
  }

  it('takes the only component when none is built in, and a datastore by id', () => {
    const d = decideProtect(
      { ...req, datastore: 'd1', retentionVolume: 'r2' },
      {
        ...base,
        processServers: [ps('ps1', 'ps-east')],
        masterTargets: [mt('mt1', 'mt-west')],
        retentionVolumes: [rv('r2', 'mt1', '/mnt/ret')],
      },
    );
    assert.ok(d.ok);
    assert.deepEqual(
      [
        d.choices.processServer.name,
        d.choices.masterTarget.name,
        d.choices.datastore?.name,
        d.choices.retentionVolume?.path,
      ],
      ['ps-east', 'mt-west', 'west-a', '/mnt/ret'],
    );
  });
});
