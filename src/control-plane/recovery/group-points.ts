// A replication group's common recovery points. Crash-consistent: every member's agent holds
// new writes (its write barrier) until all hold, each then logs a flush marker, and all are
// released: no write acknowledged after any member's marker is before another's, so the
// markers are one instant of the group. App-consistent: every member is frozen through its
// site (QEMU guest agent), each logs a bookmark, all are thawed. The row in group_points keeps
// each member's sequence number; a group fails over with each machine at its own.
import { randomUUID } from 'node:crypto';
import { callAgent } from '../../agent/control-server.js';
import { resolvePoint } from '../../master-target/point-spec.js';
import type { ServerContext } from '../context.js';
import type { GroupPoint } from '../db/schema.js';
import { dataPlaneId } from '../items/data-plane.js';
import type { ItemRows } from '../items/item-rows.js';
import type { ReplicationGroup } from './groups.js';
import { groupMembers } from './groups.js';
import { type MachineAtSite, machineSite, siteMachine } from './machine-ops.js';
import { recoveryMt } from './mt-ops.js';

/** A held barrier releases itself after this long even if the server dies in between. */
const HOLD_TIMEOUT_MS = 10_000;

interface MemberAgent {
  rows: ItemRows;
  /** Its site and adapter (the app-consistent point freezes through them). */
  at: MachineAtSite;
  dataDir: string;
}

async function memberAgents(
  ctx: ServerContext,
  g: ReplicationGroup,
  members: ItemRows[],
): Promise<MemberAgent[]> {
  if (members.length === 0) throw new Error(`replication group '${g.name}' has no machines`);
  const out: MemberAgent[] = [];
  for (const r of members) {
    const at = await machineSite(ctx, r.machine);
    const m = await siteMachine(at, r.machine.name);
    if (!m.agent?.running) {
      throw new Error(
        `the agent of machine '${r.machine.name}' is not running: group '${g.name}' can take no common point now`,
      );
    }
    out.push({ rows: r, at, dataDir: m.agent.dataDir });
  }
  return out;
}

async function agentCall(a: MemberAgent, path: string, ok: number): Promise<Record<string, unknown>> {
  const r = await callAgent(a.dataDir, 'POST', path);
  if (r.status !== ok)
    throw new Error(`the agent of '${a.rows.machine.name}' refused ${path}: ${r.body.error}`);
  return r.body;
}

async function crashPoint(agents: MemberAgent[]): Promise<Map<string, number>> {
  const held: MemberAgent[] = [];
  try {
    await Promise.all(
      agents.map(async (a) => {
        await agentCall(a, `/barrier/hold?timeoutMs=${HOLD_TIMEOUT_MS}`, 200);
        held.push(a);
      }),
    );
    const seqs = await Promise.all(agents.map((a) => agentCall(a, '/flush', 201)));
    return new Map(agents.map((a, i) => [a.rows.machine.id, seqs[i]!.seq as number]));
  } finally {
    await Promise.all(held.map((a) => agentCall(a, '/barrier/release', 200).catch(() => undefined)));
  }
}

async function appPoint(
  ctx: ServerContext,
  g: ReplicationGroup,
  agents: MemberAgent[],
): Promise<Map<string, number>> {
  const frozen: { thaw: () => Promise<void> }[] = [];
  const tag = `group:${g.name}:${ctx.now()}`;
  try {
    for (const a of agents) {
      const { at } = a;
      if (!at.adapter.freeze || !at.adapter.thaw) {
        throw new Error(
          `site '${at.site.name}' cannot freeze '${a.rows.machine.name}': no app-consistent group point`,
        );
      }
      const how = await at.adapter.freeze(a.rows.machine.name);
      if (how !== 'frozen') {
        throw new Error(`'${a.rows.machine.name}' runs no guest agent: no app-consistent group point`);
      }
      const thaw = at.adapter.thaw.bind(at.adapter);
      frozen.push({ thaw: () => thaw(a.rows.machine.name) });
    }
    const seqs = await Promise.all(
      agents.map((a) => agentCall(a, `/bookmarks?tag=${encodeURIComponent(tag)}`, 201)),
    );
    return new Map(agents.map((a, i) => [a.rows.machine.id, seqs[i]!.seq as number]));
  } finally {
    await Promise.all(frozen.map((f) => f.thaw().catch(() => undefined)));
  }
}

/** Takes a common point of the group now and records it. */
export async function takeGroupPoint(
  ctx: ServerContext,
  g: ReplicationGroup,
  kind: 'crash' | 'app' = 'crash',
): Promise<GroupPoint> {
  const members = await groupMembers(ctx, g.id);
  const agents = await memberAgents(ctx, g, members);
  const seqs = kind === 'app' ? await appPoint(ctx, g, agents) : await crashPoint(agents);
  const row: GroupPoint = {
    id: randomUUID(),
    group_id: g.id,
    kind,
    taken_at: ctx.now(),
    seqs_json: JSON.stringify(Object.fromEntries(seqs)),
  };
  await ctx.db.insertInto('group_points').values(row).execute();
  ctx.logger.info({ group: g.name, kind, seqs: Object.fromEntries(seqs) }, 'group point taken');
  return row;
}

/**
 * The newest common point of the members that every member's replica has applied and still
 * retains: `latest` (or `latest-processed`), `latest-app`, or an ISO time (the newest at or
 * before it). Each member's item id → its seq.
 */
export async function commonPoint(
  ctx: ServerContext,
  g: ReplicationGroup,
  members: ItemRows[],
  spec: string,
): Promise<{ point: GroupPoint; seqs: Map<string, number> }> {
  let q = ctx.db.selectFrom('group_points').selectAll().where('group_id', '=', g.id);
  if (spec === 'latest-app') q = q.where('kind', '=', 'app');
  else if (spec !== 'latest' && spec !== 'latest-processed') {
    const ms = Date.parse(spec);
    if (!/^\d{4}-\d{2}-\d{2}T/.test(spec) || Number.isNaN(ms)) {
      throw new Error(
        `point '${spec}' cannot be a common point of group '${g.name}': use latest, latest-processed, latest-app or an ISO time`,
      );
    }
    q = q.where('taken_at', '<=', new Date(ms).toISOString());
  }
  const candidates = await q.orderBy('taken_at', 'desc').execute();
  const why: string[] = [];
  for (const p of candidates) {
    const seqs = JSON.parse(p.seqs_json) as Record<string, number>;
    const chosen = new Map<string, number>();
    let problem: string | undefined;
    for (const r of members) {
      const seq = seqs[r.machine.id];
      if (seq === undefined) {
        problem = `machine '${r.machine.name}' was not in the group then`;
        break;
      }
      const replica = recoveryMt(ctx, r.masterTarget).replica(dataPlaneId(r.machine));
      if (!replica) {
        problem = `master target '${r.masterTarget.name}' holds no replica of '${r.machine.name}'`;
        break;
      }
      if (seq > replica.appliedThrough) {
        problem = `'${r.machine.name}' has applied only through seq ${replica.appliedThrough}, not ${seq}`;
        break;
      }
      try {
        chosen.set(r.item.id, resolvePoint(String(seq), replica));
      } catch (e) {
        problem = `'${r.machine.name}': ${(e as Error).message}`;
        break;
      }
    }
    if (!problem) return { point: p, seqs: chosen };
    if (why.length < 3) why.push(`${p.taken_at}: ${problem}`);
  }
  throw new Error(
    `replication group '${g.name}' has no common ${spec === 'latest-app' ? 'app-consistent ' : ''}recovery point ` +
      `that every machine's replica holds${why.length ? ` (${why.join('; ')})` : ''}: take one with 'rebound groups point ${g.name}'`,
  );
}
