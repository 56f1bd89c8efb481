// Whether an item may be reprotected (replication reversed after a failover, or restored
// after a failback), and with what. Pure: given the rows, the choices or the refusal that
// names the rule (S13, S18-S20, S23, S26), so the whole table is unit-tested and a refused
// request changes nothing.
import type {
  Datastore,
  Disk,
  Item,
  Machine,
  MasterTargetRow,
  ProcessServerRow,
  RetentionVolume,
  Site,
} from '../db/schema.js';
import { isRefusal, pick, type Refusal } from '../items/protect-choices.js';
import { parseFailover } from './recovery-records.js';

export interface ReprotectRequest {
  masterTarget?: string;
  processServer?: string;
  /** Required (S18): where new disks are made, used only when the target disks are gone. */
  datastore?: string;
  retentionVolume?: string;
  /** True when the request comes through a recovery plan (S19: groups only that way). */
  viaPlan?: boolean;
}

export interface ReprotectFacts {
  item: Item;
  /** The machine that replicated so far (the item's machine). */
  machine: Machine;
  /** The machine on the other side that becomes the source (item.partner_machine_id), if it still exists. */
  source: Machine | undefined;
  /** The site machines were recovered at. */
  recoverySite: Site | undefined;
  /** Its site machine exists (a deleted VM cannot be the source). */
  sourceAtSite: boolean;
  sourceDisks: Disk[];
  /** Disks of every other machine (S23 collisions). */
  otherDisks: (Disk & { machine_name: string })[];
  groupName: string | undefined;
  processServers: ProcessServerRow[];
  masterTargets: MasterTargetRow[];
  datastores: Datastore[];
  retentionVolumes: RetentionVolume[];
  attachedDisks: (masterTargetId: string) => number;
}

export interface ReprotectChoices {
  source: Machine;
  processServer: ProcessServerRow;
  masterTarget: MasterTargetRow;
  datastore: Datastore;
  retentionVolume: RetentionVolume | null;
}

export type ReprotectDecision = { ok: true; choices: ReprotectChoices } | { ok: false; refusal: Refusal };

const refuse = (status: Refusal['status'], message: string): ReprotectDecision => ({
  ok: false,
  refusal: { status, message },
});

export function decideReprotect(req: ReprotectRequest, f: ReprotectFacts): ReprotectDecision {
  const { item, machine } = f;
  const name = machine.name;
  if (f.groupName !== undefined && !req.viaPlan) {
    return refuse(
      409,
      `machine '${name}' is in replication group '${f.groupName}': a group is reprotected only through a recovery plan (S19)`,
    );
  }
  if (item.state !== 'failed-over' && item.state !== 'failed-back') {
    return refuse(
      409,
      `machine '${name}' is ${item.state}, not failed over: reprotect reverses replication after a failover or failback`,
    );
  }
  const failover = parseFailover(item.failover_json);
  if (item.state === 'failed-over' && !failover?.committed) {
    return refuse(409, `the failover of '${name}' is not committed: run 'rebound commit ${name}' first`);
  }
  const src = f.source;
  if (!src || !f.sourceAtSite) {
    return refuse(
      409,
      `the recovered machine of '${name}' was deleted: it cannot be reprotected, and failback is impossible (S26)`,
    );
  }
  if (item.state === 'failed-over' && src.created_by_failover_of !== item.id) {
    return refuse(
      409,
      `machine '${src.name}' was not created by a failover of '${name}': it cannot be reprotected (S26)`,
    );
  }
  if (item.state === 'failed-over' && src.site_id !== item.recovery_site_id) {
    return refuse(
      409,
      `the recovered machine '${src.name}' was migrated away from site '${f.recoverySite?.name ?? item.recovery_site_id}' ` +
        '(not failed over): it cannot be reprotected (S26)',
    );
  }
  if (!src.agent_name || !src.registered_at) {
    return refuse(
      409,
      `agent not installed on machine '${src.name}' yet: retry once its agent has registered (S13)`,
    );
  }
  for (const d of f.sourceDisks) {
    const twin = f.otherDisks.find(
      (o) => o.id === d.id && o.machine_id !== src.id && o.machine_id !== machine.id,
    );
    if (twin) {
      return refuse(
        409,
        `disk id ${d.id} of machine '${src.name}' is also a disk of machine '${twin.machine_name}' ` +
          '(cloned from one template?): disk ids must be unique (S23)',
      );
    }
  }
  const ps = pick(f.processServers, req.processServer, 'process server');
  if (isRefusal(ps)) return { ok: false, refusal: ps };
  const mt = pick(f.masterTargets, req.masterTarget, 'master target');
  if (isRefusal(mt)) return { ok: false, refusal: mt };
  if (mt.has_snapshots === 1) {
    return refuse(409, `master target '${mt.name}' has snapshots: remove them, then retry (S23)`);
  }
  const total = f.attachedDisks(mt.id) + f.sourceDisks.length;
  if (total > mt.max_disks) {
    return refuse(
      409,
      `master target '${mt.name}' would have ${total} disks attached, more than its limit of ${mt.max_disks} (S23)`,
    );
  }
  if (req.datastore === undefined) {
    return refuse(
      400,
      'a datastore is required: new disks are made there when the original disks are gone (S18)',
    );
  }
  const ds = f.datastores.find((d) => d.name === req.datastore || d.id === req.datastore);
  if (!ds) return refuse(404, `datastore '${req.datastore}' not found`);
  if (ds.master_target_id !== mt.id) {
    return refuse(
      409,
      `datastore '${ds.name}' cannot be seen from master target '${mt.name}' (it belongs to another master target) (S23)`,
    );
  }
  if (ds.problem) {
    return refuse(
      409,
      `datastore '${ds.name}' cannot be seen from master target '${mt.name}': ${ds.problem} (S23)`,
    );
  }
  let rv: RetentionVolume | null = null;
  if (req.retentionVolume !== undefined) {
    const v = f.retentionVolumes.find((x) => x.path === req.retentionVolume || x.id === req.retentionVolume);
    if (!v) return refuse(404, `retention volume '${req.retentionVolume}' not found`);
    if (v.master_target_id !== mt.id) {
      return refuse(409, `retention volume '${v.path}' belongs to another master target than '${mt.name}'`);
    }
    if (v.valid !== 1) return refuse(400, `retention volume '${v.path}' is not valid: ${v.invalid_reason}`);
    rv = v;
  }
  return {
    ok: true,
    choices: { source: src, processServer: ps, masterTarget: mt, datastore: ds, retentionVolume: rv },
  };
}

/** S20: the machines of a group must share one OS type and one master target. */
export function groupProblem(
  group: string,
  members: { name: string; os_type: string; masterTarget: string }[],
): string | undefined {
  const by = (key: (m: (typeof members)[number]) => string) => {
    const m = new Map<string, string[]>();
    for (const x of members) m.set(key(x), [...(m.get(key(x)) ?? []), x.name]);
    return m;
  };
  const list = (m: Map<string, string[]>) => [...m].map(([k, v]) => `${k}: ${v.join(', ')}`).join('; ');
  const os = by((m) => m.os_type);
  if (os.size > 1) {
    return `replication group '${group}' mixes OS types (${list(os)}): its machines can have no common recovery point (S20)`;
  }
  const mts = by((m) => m.masterTarget);
  if (mts.size > 1) {
    return `replication group '${group}' uses different master targets (${list(mts)}): its machines can have no common recovery point (S20)`;
  }
  return undefined;
}
