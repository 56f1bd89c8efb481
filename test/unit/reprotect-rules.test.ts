// Every refusal of a reprotect (S13, S18-S20, S23, S26) with its exact message, and the
// choices when nothing is refused.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type {
  Datastore,
  Disk,
  Item,
  Machine,
  MasterTargetRow,
  ProcessServerRow,
  RetentionVolume,
  Site,
} from '../../src/control-plane/db/schema.js';
import {
  decideReprotect,
  groupProblem,
  type ReprotectFacts,
  type ReprotectRequest,
} from '../../src/control-plane/recovery/reprotect-rules.js';

const T = '2026-01-01T00:00:00.000Z';
const machine = (id: string, name: string, extra: Partial<Machine> = {}): Machine => ({
  id,
  name,
  site_id: 'site-a',
  os_type: 'linux',
  agent_name: `${name}-agent`,
  address: null,
  registered_at: T,
  last_heartbeat_at: T,
  status_json: null,
  created_by_failover_of: null,
  created_at: T,
  ...extra,
});
const original = machine('m-a', 'web');
const recovered = machine('m-b', 'web-recovered', { site_id: 'site-b', created_by_failover_of: 'i1' });
const item: Item = {
  id: 'i1',
  machine_id: 'm-a',
  policy_id: 'p1',
  process_server_id: 'ps1',
  master_target_id: 'mt1',
  datastore_id: null,
  retention_volume_id: null,
  state: 'failed-over',
  progress_pct: 100,
  rpo_seconds: null,
  health_json: '[]',
  direction: 'forward',
  group_id: null,
  created_at: T,
  updated_at: T,
  partner_machine_id: 'm-b',
  recovery_site_id: 'site-b',
  failover_json: JSON.stringify({ point: 9, committed: true }),
  test_failover_json: null,
};
const component = (id: string, name: string) => ({
  id,
  name,
  address: '127.0.0.1:1',
  builtin: 1 as const,
  registered_at: T,
  last_heartbeat_at: T,
  status_json: null,
});
const ps: ProcessServerRow = component('ps1', 'builtin-ps');
const mt: MasterTargetRow = { ...component('mt1', 'builtin-mt'), max_disks: 60, has_snapshots: 0 };
const ds: Datastore = {
  id: 'ds1',
  master_target_id: 'mt1',
  name: 'store',
  path: '/ds',
  capacity_bytes: 1e12,
  free_bytes: 1e12,
  refreshed_at: T,
  fs_type: 'ext4',
  mount_point: '/ds',
  problem: null,
  facts_json: null,
};
const rv: RetentionVolume = {
  id: 'rv1',
  master_target_id: 'mt1',
  path: '/mnt/retention',
  fs_type: 'ext4',
  capacity_bytes: 1e12,
  free_bytes: 1e12,
  valid: 1,
  invalid_reason: null,
  refreshed_at: T,
  mount_point: '/mnt/retention',
  facts_json: null,
};
const siteB: Site = { id: 'site-b', name: 'b', adapter: 'qemu', config_json: null, created_at: T };
const disk = (id: string, machineId: string): Disk => ({
  id,
  machine_id: machineId,
  name: 'vda',
  size_bytes: 1 << 30,
  path: null,
  created_at: T,
});

function facts(patch: Partial<ReprotectFacts> = {}): ReprotectFacts {
  return {
    item,
    machine: original,
    source: recovered,
    recoverySite: siteB,
    sourceAtSite: true,
    sourceDisks: [disk('d-b', 'm-b')],
    otherDisks: [
      { ...disk('d-a', 'm-a'), machine_name: 'web' },
      { ...disk('d-b', 'm-b'), machine_name: 'web-recovered' },
    ],
    groupName: undefined,
    processServers: [ps],
    masterTargets: [mt],
    datastores: [ds],
    retentionVolumes: [rv],
    attachedDisks: () => 0,
    ...patch,
  };
}
const ok: ReprotectRequest = { datastore: 'store' };

describe('reprotect rules', () => {
  it('chooses the built-in components and the datastore asked for', () => {
    const d = decideReprotect({ ...ok, retentionVolume: '/mnt/retention' }, facts());
    assert.ok(d.ok);
    assert.equal(d.choices.source.name, 'web-recovered');
    assert.equal(d.choices.masterTarget.name, 'builtin-mt');
    assert.equal(d.choices.datastore.name, 'store');
    assert.equal(d.choices.retentionVolume?.path, '/mnt/retention');
  });

  it('after a failback the original machine is the source, whatever made it', () => {
    const d = decideReprotect(ok, {
      ...facts({ source: original, machine: recovered, sourceDisks: [disk('d-a', 'm-a')] }),
      item: { ...item, state: 'failed-back', machine_id: 'm-b', partner_machine_id: 'm-a' },
    });
    assert.ok(d.ok);
    assert.equal(d.choices.source.name, 'web');
  });

  const refusals: [string, ReprotectRequest, Partial<ReprotectFacts>, number, string][] = [
    [
      'S19: a group only through a plan',
      ok,
      { groupName: 'tier1' },
      409,
      "machine 'web' is in replication group 'tier1': a group is reprotected only through a recovery plan (S19)",
    ],
    [
      'not failed over',
      ok,
      { item: { ...item, state: 'protected' } },
      409,
      "machine 'web' is protected, not failed over: reprotect reverses replication after a failover or failback",
    ],
    [
      'not committed',
      ok,
      { item: { ...item, failover_json: JSON.stringify({ point: 9, committed: false }) } },
      409,
      "the failover of 'web' is not committed: run 'rebound commit web' first",
    ],
    [
      'S26: recovered machine deleted (row gone)',
      ok,
      { source: undefined },
      409,
      "the recovered machine of 'web' was deleted: it cannot be reprotected, and failback is impossible (S26)",
    ],
    [
      'S26: recovered machine deleted (VM gone)',
      ok,
      { sourceAtSite: false },
      409,
      "the recovered machine of 'web' was deleted: it cannot be reprotected, and failback is impossible (S26)",
    ],
    [
      'S26: not created by failover',
      ok,
      { source: { ...recovered, created_by_failover_of: null } },
      409,
      "machine 'web-recovered' was not created by a failover of 'web': it cannot be reprotected (S26)",
    ],
    [
      'S26: migrated',
      ok,
      { source: { ...recovered, site_id: 'site-c' } },
      409,
      "the recovered machine 'web-recovered' was migrated away from site 'b' (not failed over): it cannot be reprotected (S26)",
    ],
    [
      'S13: agent not installed',
      ok,
      { source: { ...recovered, agent_name: null, registered_at: null } },
      409,
      "agent not installed on machine 'web-recovered' yet: retry once its agent has registered (S13)",
    ],
    [
      'S23: disk id collision',
      ok,
      {
        otherDisks: [
          { ...disk('d-b', 'm-b'), machine_name: 'web-recovered' },
          { ...disk('d-b', 'm-c'), machine_name: 'clone' },
        ],
      },
      409,
      "disk id d-b of machine 'web-recovered' is also a disk of machine 'clone' (cloned from one template?): disk ids must be unique (S23)",
    ],
    [
      'S23: master target snapshots',
      ok,
      { masterTargets: [{ ...mt, has_snapshots: 1 }] },
      409,
      "master target 'builtin-mt' has snapshots: remove them, then retry (S23)",
    ],
    [
      'S23: more than 60 disks',
      ok,
      { attachedDisks: () => 60 },
      409,
      "master target 'builtin-mt' would have 61 disks attached, more than its limit of 60 (S23)",
    ],
    [
      'S18: datastore required',
      {},
      {},
      400,
      'a datastore is required: new disks are made there when the original disks are gone (S18)',
    ],
    ['unknown datastore', { datastore: 'nope' }, {}, 404, "datastore 'nope' not found"],
    [
      'S23: datastore not visible (another master target)',
      ok,
      { datastores: [{ ...ds, master_target_id: 'mt2' }] },
      409,
      "datastore 'store' cannot be seen from master target 'builtin-mt' (it belongs to another master target) (S23)",
    ],
    [
      'S23: datastore not visible (probe)',
      ok,
      { datastores: [{ ...ds, problem: 'mount point /ds is gone' }] },
      409,
      "datastore 'store' cannot be seen from master target 'builtin-mt': mount point /ds is gone (S23)",
    ],
    ['unknown master target', { ...ok, masterTarget: 'mt9' }, {}, 404, "master target 'mt9' not found"],
    [
      'invalid retention volume',
      { ...ok, retentionVolume: '/mnt/retention' },
      { retentionVolumes: [{ ...rv, valid: 0, invalid_reason: 'vfat is not allowed' }] },
      400,
      "retention volume '/mnt/retention' is not valid: vfat is not allowed",
    ],
  ];
  for (const [what, req, patch, status, message] of refusals) {
    it(`refuses: ${what}`, () => {
      const d = decideReprotect(req, facts(patch));
      assert.ok(!d.ok, 'refused');
      assert.deepEqual(d.refusal, { status, message });
    });
  }

  it('S20: a group shares one OS and one master target', () => {
    assert.equal(
      groupProblem('g', [
        { name: 'a', os_type: 'linux', masterTarget: 'mt1' },
        { name: 'b', os_type: 'windows', masterTarget: 'mt1' },
      ]),
      "replication group 'g' mixes OS types (linux: a; windows: b): its machines can have no common recovery point (S20)",
    );
    assert.equal(
      groupProblem('g', [
        { name: 'a', os_type: 'linux', masterTarget: 'mt1' },
        { name: 'b', os_type: 'linux', masterTarget: 'mt2' },
      ]),
      "replication group 'g' uses different master targets (mt1: a; mt2: b): its machines can have no common recovery point (S20)",
    );
    assert.equal(groupProblem('g', [{ name: 'a', os_type: 'linux', masterTarget: 'mt1' }]), undefined);
  });
});
