// Enabling replication for a machine: checks the request against what the inventory holds and
// settles every choice the operator left out. Pure: given the rows, it answers the resolved
// choices or the refusal (HTTP status and a message naming the problem), so the whole table
// of refusals is unit-tested.
import type {
  Datastore,
  Machine,
  MasterTargetRow,
  Policy,
  ProcessServerRow,
  RetentionVolume,
} from '../db/schema.js';

export interface ProtectRequest {
  machine: string;
  policy: string;
  processServer?: string;
  masterTarget?: string;
  datastore?: string;
  retentionVolume?: string;
}

export interface ProtectFacts {
  machine: Machine | undefined;
  /** The machine's item, when it already has one. */
  existingItem: { id: string; state: string } | undefined;
  policy: Policy | undefined;
  processServers: ProcessServerRow[];
  masterTargets: MasterTargetRow[];
  datastores: Datastore[];
  retentionVolumes: RetentionVolume[];
  /** How many disks the machine has. */
  machineDisks: number;
  /** Disks already replicated to each master target, by its id. */
  attachedDisks: (masterTargetId: string) => number;
}

export interface ProtectChoices {
  machine: Machine;
  policy: Policy;
  processServer: ProcessServerRow;
  masterTarget: MasterTargetRow;
  datastore: Datastore | null;
  retentionVolume: RetentionVolume | null;
}

export interface Refusal {
  status: 400 | 404 | 409;
  message: string;
}

export type ProtectDecision = { ok: true; choices: ProtectChoices } | { ok: false; refusal: Refusal };

const refuse = (status: Refusal['status'], message: string): ProtectDecision => ({
  ok: false,
  refusal: { status, message },
});

/** A component by name, or the default: the built-in one, else the only one. */
export function pick<T extends { name: string; builtin: number }>(
  rows: T[],
  wanted: string | undefined,
  what: string,
): T | Refusal {
  if (wanted !== undefined) {
    return rows.find((r) => r.name === wanted) ?? { status: 404, message: `${what} '${wanted}' not found` };
  }
  const builtin = rows.find((r) => r.builtin === 1);
  if (builtin) return builtin;
  if (rows.length === 1) return rows[0]!;
  if (rows.length === 0) return { status: 409, message: `no ${what} is registered` };
  return {
    status: 400,
    message: `several ${what}s are registered (${rows.map((r) => r.name).join(', ')}): choose one`,
  };
}

export const isRefusal = (x: unknown): x is Refusal => typeof x === 'object' && x !== null && 'status' in x;

export function decideProtect(req: ProtectRequest, f: ProtectFacts): ProtectDecision {
  const machine = f.machine;
  if (!machine) return refuse(404, `machine '${req.machine}' not found`);
  const policy = f.policy;
  if (!policy) return refuse(404, `policy '${req.policy}' not found`);
  if (policy.is_failback === 1) {
    return refuse(
      400,
      `policy '${policy.name}' is a failback policy: reprotect applies it by itself; choose a replication policy`,
    );
  }
  if (!machine.agent_name || !machine.registered_at) {
    return refuse(
      409,
      `machine '${machine.name}' has no registered agent (agent not installed): run 'rebound agent register' on it first`,
    );
  }
  if (f.existingItem) {
    return refuse(
      409,
      `machine '${machine.name}' is already protected (item ${f.existingItem.id}, state ${f.existingItem.state})`,
    );
  }
  const ps = pick(f.processServers, req.processServer, 'process server');
  if (isRefusal(ps)) return { ok: false, refusal: ps };
  const mt = pick(f.masterTargets, req.masterTarget, 'master target');
  if (isRefusal(mt)) return { ok: false, refusal: mt };
  const mtName = (id: string) => f.masterTargets.find((m) => m.id === id)?.name ?? id;

  let datastore: Datastore | null = null;
  const ownStores = f.datastores.filter((d) => d.master_target_id === mt.id);
  if (req.datastore !== undefined) {
    const mine = ownStores.find((d) => d.name === req.datastore || d.id === req.datastore);
    if (!mine) {
      const other = f.datastores.find((d) => d.name === req.datastore || d.id === req.datastore);
      if (other) {
        return refuse(
          400,
          `datastore '${req.datastore}' belongs to master target '${mtName(other.master_target_id)}', not to '${mt.name}'`,
        );
      }
      return refuse(404, `datastore '${req.datastore}' not found`);
    }
    if (mine.problem) return refuse(409, `datastore '${mine.name}' cannot be used: ${mine.problem}`);
    datastore = mine;
  } else if (ownStores.length === 1) {
    datastore = ownStores[0]!;
  } else if (ownStores.length > 1) {
    return refuse(
      400,
      `master target '${mt.name}' has several datastores (${ownStores.map((d) => d.name).join(', ')}): choose one`,
    );
  }

  let retention: RetentionVolume | null = null;
  const ownVolumes = f.retentionVolumes.filter((v) => v.master_target_id === mt.id);
  const invalid = (v: RetentionVolume) =>
    refuse(
      400,
      `retention volume '${v.path}' of master target '${mt.name}' is not valid: ${v.invalid_reason ?? 'unknown reason'}`,
    );
  if (req.retentionVolume !== undefined) {
    const mine = ownVolumes.find((v) => v.path === req.retentionVolume || v.id === req.retentionVolume);
    if (!mine) {
      const other = f.retentionVolumes.find(
        (v) => v.path === req.retentionVolume || v.id === req.retentionVolume,
      );
      if (other) {
        return refuse(
          400,
          `retention volume '${req.retentionVolume}' belongs to master target '${mtName(other.master_target_id)}', not to '${mt.name}'`,
        );
      }
      return refuse(404, `retention volume '${req.retentionVolume}' not found`);
    }
    if (mine.valid !== 1) return invalid(mine);
    retention = mine;
  } else if (ownVolumes.length > 0) {
    const valid = ownVolumes.filter((v) => v.valid === 1);
    if (valid.length === 0) return invalid(ownVolumes[0]!);
    if (valid.length > 1) {
      return refuse(
        400,
        `master target '${mt.name}' has several retention volumes (${valid.map((v) => v.path).join(', ')}): choose one`,
      );
    }
    retention = valid[0]!;
  }

  const total = f.attachedDisks(mt.id) + f.machineDisks;
  if (total > mt.max_disks) {
    return refuse(
      409,
      `master target '${mt.name}' would hold ${total} disks, more than its limit of ${mt.max_disks}`,
    );
  }
  return {
    ok: true,
    choices: { machine, policy, processServer: ps, masterTarget: mt, datastore, retentionVolume: retention },
  };
}
