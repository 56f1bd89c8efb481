// What the recovery jobs do with machines through their site adapters and agents: find a
// machine's site, wait for an agent to register, take a bookmark through a local agent.
import { callAgent } from '../../agent/control-server.js';
import type { MachineSpec, ManualAction, SiteAdapter, SiteMachine } from '../../sites/site-adapter.js';
import type { ServerContext } from '../context.js';
import type { Machine, Site } from '../db/schema.js';
import { sleep } from '../jobs/definitions.js';
import { adapterFor } from './site-registry.js';

export interface MachineAtSite {
  site: Site;
  adapter: SiteAdapter;
}

export function isManual(x: unknown): x is ManualAction {
  return typeof x === 'object' && x !== null && 'manual' in x;
}

export async function siteById(ctx: ServerContext, id: string | null): Promise<Site | undefined> {
  if (!id) return undefined;
  return ctx.db.selectFrom('sites').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function machineSite(ctx: ServerContext, machine: Machine): Promise<MachineAtSite> {
  const site = await siteById(ctx, machine.site_id);
  if (!site) throw new Error(`machine '${machine.name}' is at no site: its power cannot be managed`);
  return { site, adapter: await adapterFor(ctx, site) };
}

export async function machineByName(ctx: ServerContext, name: string): Promise<Machine | undefined> {
  return ctx.db.selectFrom('machines').selectAll().where('name', '=', name).executeTakeFirst();
}

export async function machineById(ctx: ServerContext, id: string | null): Promise<Machine | undefined> {
  if (!id) return undefined;
  return ctx.db.selectFrom('machines').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Waits until an agent registered the machine `name` (its row has an agent); the row. */
export async function waitRegistered(
  ctx: ServerContext,
  name: string,
  signal: AbortSignal,
  timeoutMs = 120_000,
): Promise<Machine> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = await machineByName(ctx, name);
    if (m?.agent_name && m.registered_at) return m;
    if (Date.now() > deadline) {
      throw new Error(`the agent of '${name}' did not register within ${timeoutMs / 1000} s`);
    }
    await sleep(500, signal);
  }
}

/** The site machine, or an error naming it. */
export async function siteMachine(at: MachineAtSite, name: string): Promise<SiteMachine> {
  const m = await at.adapter.get(name);
  if (!m) throw new Error(`machine '${name}' no longer exists at site '${at.site.name}'`);
  return m;
}

/** How a machine is defined at its site (a failover or a test boots its copy the same way). */
export async function machineSpec(ctx: ServerContext, machine: Machine): Promise<MachineSpec> {
  const at = await machineSite(ctx, machine);
  const m = await at.adapter.get(machine.name);
  if (!m?.spec) {
    throw new Error(
      `machine '${machine.name}' has no definition at site '${at.site.name}' to boot a copy of`,
    );
  }
  return m.spec;
}

/** Data-plane disk ids of a running local agent, by disk name. */
export async function agentDisks(
  m: SiteMachine,
): Promise<{ id: number; name: string; size: number; path: string }[]> {
  if (!m.agent) throw new Error(`machine '${m.name}' has no local agent`);
  const r = await callAgent(m.agent.dataDir, 'GET', '/status');
  if (r.status !== 200) throw new Error(`the agent of '${m.name}' answered ${r.status}: ${r.body.error}`);
  return (r.body.disks as { id: number; name: string; size: number; path: string }[]).map((d) => ({
    id: d.id,
    name: d.name,
    size: d.size,
    path: d.path,
  }));
}

/** A bookmark through a machine's local agent (everything written before it is in the log): its seq. */
export async function agentBookmark(m: SiteMachine, tag: string): Promise<number> {
  if (!m.agent?.running) throw new Error(`the agent of '${m.name}' is not running: no bookmark can be taken`);
  const r = await callAgent(m.agent.dataDir, 'POST', `/bookmarks?tag=${encodeURIComponent(tag)}`);
  if (r.status !== 201) throw new Error(`the agent of '${m.name}' refused the bookmark: ${r.body.error}`);
  return r.body.seq as number;
}
