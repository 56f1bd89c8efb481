// Routes: machines and their disks. Agents register them (registration.ts) and report disks;
// an agent may read and change only its own machine, the admin every machine.
import { Type } from '@sinclair/typebox';
import { clearAlert } from '../../alerts.js';
import type { ServerContext } from '../../context.js';
import type { Disk, Machine } from '../../db/schema.js';
import { HEARTBEAT_MISSING } from '../../heartbeat-watch.js';
import { machineByName, machineOfAgent, syncDisks } from '../../machines-store.js';
import { OS_TYPES, type ReportedDisk } from '../../registration/protocol.js';
import type { Api } from '../app.js';
import { DiskListSchema } from '../disk-schema.js';
import { badRequest, conflict, forbidden, notFound } from '../errors.js';
import { PageQuery, pageLimit } from '../paging.js';
import type { Principal } from '../principal.js';
import { ErrorSchema } from '../schemas.js';
import { DISK_ID_COLLISION } from './heartbeats.js';

const DiskSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  size_bytes: Type.Number(),
  path: Type.Union([Type.String(), Type.Null()]),
  created_at: Type.String(),
});

const Nullable = (t: ReturnType<typeof Type.String>) => Type.Union([t, Type.Null()]);

export const MachineSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  site_id: Nullable(Type.String()),
  site: Nullable(Type.String()),
  os_type: Type.String(),
  agent_name: Nullable(Type.String()),
  address: Nullable(Type.String()),
  registered_at: Nullable(Type.String()),
  last_heartbeat_at: Nullable(Type.String()),
  status: Type.Unknown(),
  created_by_failover_of: Nullable(Type.String()),
  created_at: Type.String(),
  disks: Type.Array(DiskSchema),
});

const NameParams = Type.Object({ name: Type.String() });

type MachineView = Omit<Machine, 'status_json'> & { site: string | null; status: unknown; disks: Disk[] };

async function view(ctx: ServerContext, machines: Machine[]): Promise<MachineView[]> {
  if (machines.length === 0) return [];
  const ids = machines.map((m) => m.id);
  const disks = await ctx.db
    .selectFrom('disks')
    .selectAll()
    .where('machine_id', 'in', ids)
    .orderBy('name')
    .execute();
  const siteNames = new Map(
    (await ctx.db.selectFrom('sites').select(['id', 'name']).execute()).map((s) => [s.id, s.name]),
  );
  // Grouped once: a thousand machines must not each scan every disk.
  const disksOf = new Map<string, Disk[]>();
  for (const d of disks) {
    const list = disksOf.get(d.machine_id);
    if (list) list.push(d);
    else disksOf.set(d.machine_id, [d]);
  }
  // Fields named one by one: object rest over a thousand rows costs tens of milliseconds.
  return machines.map((m) => ({
    id: m.id,
    name: m.name,
    site_id: m.site_id,
    site: (m.site_id && siteNames.get(m.site_id)) ?? null,
    os_type: m.os_type,
    agent_name: m.agent_name,
    address: m.address,
    registered_at: m.registered_at,
    last_heartbeat_at: m.last_heartbeat_at,
    status: m.status_json === null ? null : JSON.parse(m.status_json),
    created_by_failover_of: m.created_by_failover_of,
    created_at: m.created_at,
    disks: disksOf.get(m.id) ?? [],
  }));
}

/** The named machine, if the caller may touch it: the admin any, an agent only its own. */
async function reachable(ctx: ServerContext, p: Principal, name: string): Promise<Machine> {
  if (p.kind === 'component' && p.identity.role === 'agent') {
    const own = await machineOfAgent(ctx.db, p.identity.name);
    if (!own || own.name !== name) {
      throw forbidden(
        `agent '${p.identity.name}' may read and change only its own machine` +
          `${own ? ` '${own.name}'` : ''}, not machine '${name}'`,
      );
    }
    return own;
  }
  const m = await machineByName(ctx.db, name);
  if (!m) throw notFound(`machine '${name}'`);
  return m;
}

export async function registerMachineRoutes(app: Api, ctx: ServerContext): Promise<void> {
  app.get(
    '/api/v1/machines',
    {
      schema: {
        tags: ['machines'],
        description: 'Machines by name, a page at a time.',
        querystring: PageQuery,
        response: { 200: Type.Array(MachineSchema) },
      },
    },
    async (req) => {
      let q = ctx.db.selectFrom('machines').selectAll();
      if (req.query.after !== undefined) q = q.where('name', '>', req.query.after);
      return view(ctx, await q.orderBy('name').limit(pageLimit(req.query)).execute());
    },
  );

  app.get(
    '/api/v1/machines/:name',
    {
      config: { access: ['admin', 'agent'] },
      schema: {
        tags: ['machines'],
        params: NameParams,
        response: { 200: MachineSchema, 403: ErrorSchema, 404: ErrorSchema },
      },
    },
    async (req) => (await view(ctx, [await reachable(ctx, req.principal, req.params.name)]))[0],
  );

  app.patch(
    '/api/v1/machines/:name',
    {
      config: { access: ['admin', 'agent'] },
      schema: {
        tags: ['machines'],
        params: NameParams,
        body: Type.Object(
          {
            site: Type.Optional(Type.Union([Type.String(), Type.Null()])),
            osType: Type.Optional(Type.String()),
            address: Type.Optional(Type.String({ maxLength: 300 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: MachineSchema, 400: ErrorSchema, 403: ErrorSchema, 404: ErrorSchema },
      },
    },
    async (req) => {
      const m = await reachable(ctx, req.principal, req.params.name);
      const { site, osType, address } = req.body;
      const set: Partial<Machine> = {};
      if (osType !== undefined) {
        if (!(OS_TYPES as readonly string[]).includes(osType)) {
          throw badRequest(`OS type '${osType}' is not known: use one of ${OS_TYPES.join(', ')}`);
        }
        set.os_type = osType;
      }
      if (site !== undefined) {
        if (site === null) set.site_id = null;
        else {
          const s = await ctx.db.selectFrom('sites').select('id').where('name', '=', site).executeTakeFirst();
          if (!s) throw notFound(`site '${site}'`);
          set.site_id = s.id;
        }
      }
      if (address !== undefined) set.address = address;
      if (Object.keys(set).length > 0) {
        await ctx.db.updateTable('machines').set(set).where('id', '=', m.id).execute();
      }
      const updated = await ctx.db.selectFrom('machines').selectAll().where('id', '=', m.id).execute();
      return (await view(ctx, updated))[0];
    },
  );

  app.put(
    '/api/v1/machines/:name/disks',
    {
      config: { access: ['admin', 'agent'] },
      schema: {
        tags: ['machines'],
        summary: "replace the machine's disk list (ids unique across the deployment)",
        params: NameParams,
        body: Type.Object({ disks: DiskListSchema }, { additionalProperties: false }),
        response: { 200: MachineSchema, 400: ErrorSchema, 403: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req) => {
      const m = await reachable(ctx, req.principal, req.params.name);
      await ctx.db
        .transaction()
        .execute((trx) => syncDisks(trx, m, req.body.disks as ReportedDisk[], ctx.now()));
      await clearAlert(ctx, DISK_ID_COLLISION, m.id);
      return (await view(ctx, [m]))[0];
    },
  );

  app.delete(
    '/api/v1/machines/:name',
    {
      schema: {
        tags: ['machines'],
        summary: 'forget a machine (its agent must register again)',
        params: NameParams,
        response: { 204: Type.Null(), 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => {
      const m = await machineByName(ctx.db, req.params.name);
      if (!m) throw notFound(`machine '${req.params.name}'`);
      const item = await ctx.db
        .selectFrom('items')
        .select('id')
        .where('machine_id', '=', m.id)
        .executeTakeFirst();
      if (item) {
        throw conflict(`machine '${m.name}' is replicated (item ${item.id}): disable its replication first`);
      }
      await ctx.db.transaction().execute(async (trx) => {
        await trx.deleteFrom('disks').where('machine_id', '=', m.id).execute();
        await trx.deleteFrom('machines').where('id', '=', m.id).execute();
      });
      await clearAlert(ctx, HEARTBEAT_MISSING, m.id);
      await clearAlert(ctx, DISK_ID_COLLISION, m.id);
      return reply.status(204).send(null);
    },
  );
}
