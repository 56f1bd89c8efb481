// Routes: machines at a site, through its adapter. Creating one on a qemu site defines the
// VM, makes its disk images and installs its agent (registered with this server, so the
// machine appears in the inventory at that site, ready to protect); power actions and
// deletion act on the VM. On a physical site each action answers what the operator must do.
import { join } from 'node:path';
import { type Static, Type } from '@sinclair/typebox';
import type { SiteMachine } from '../../../sites/site-adapter.js';
import type { ServerContext } from '../../context.js';
import type { Site } from '../../db/schema.js';
import { isManual, machineByName, waitRegistered } from '../../recovery/machine-ops.js';
import { adapterFor, agentRegistration, siteDir } from '../../recovery/site-registry.js';
import type { Api } from '../app.js';
import { badRequest, conflict, notFound } from '../errors.js';
import { ErrorSchema, NameSchema } from '../schemas.js';

const SiteMachineSchema = Type.Object({
  name: Type.String(),
  power_state: Type.String(),
  disks: Type.Array(Type.Object({ name: Type.String(), path: Type.String(), size_bytes: Type.Number() })),
  console_log: Type.Union([Type.String(), Type.Null()]),
  agent_running: Type.Union([Type.Boolean(), Type.Null()]),
  held_off_by: Type.Union([Type.String(), Type.Null()]),
  manual: Type.Optional(Type.String()),
});

/** A machine at a site as the API (and `rebound vm list --json`) shows it. */
export type SiteMachineJson = Static<typeof SiteMachineSchema>;

const json = (m: SiteMachine, manual?: string) => ({
  name: m.name,
  power_state: m.powerState,
  disks: m.disks.map((d) => ({ name: d.name, path: d.path, size_bytes: d.sizeBytes })),
  console_log: m.consoleLog ?? null,
  agent_running: m.agent ? m.agent.running : null,
  held_off_by: m.heldOffBy ?? null,
  ...(manual ? { manual } : {}),
});

export async function registerSiteMachineRoutes(app: Api, ctx: ServerContext): Promise<void> {
  const site = async (name: string): Promise<Site> => {
    const s = await ctx.db.selectFrom('sites').selectAll().where('name', '=', name).executeTakeFirst();
    if (!s) throw notFound(`site '${name}'`);
    return s;
  };
  const machine = async (s: Site, name: string) => {
    const m = await (await adapterFor(ctx, s)).get(name);
    if (!m) throw notFound(`machine '${name}' at site '${s.name}'`);
    return m;
  };
  const params = Type.Object({ site: Type.String(), name: Type.String() });

  app.get(
    '/api/v1/sites/:site/machines',
    {
      schema: {
        tags: ['sites'],
        params: Type.Object({ site: Type.String() }),
        response: { 200: Type.Array(SiteMachineSchema), 404: ErrorSchema },
      },
    },
    async (req) => (await (await adapterFor(ctx, await site(req.params.site))).list()).map((m) => json(m)),
  );

  app.post(
    '/api/v1/sites/:site/machines',
    {
      schema: {
        tags: ['sites'],
        description:
          'Defines a machine at the site. On a qemu site: a VM with sparse disk images and its own agent, ' +
          'registered with this server (the machine appears in the inventory, ready to protect).',
        params: Type.Object({ site: Type.String() }),
        body: Type.Object(
          {
            name: NameSchema,
            disks: Type.Array(
              Type.Object(
                { name: NameSchema, sizeBytes: Type.Integer({ minimum: 1 }) },
                { additionalProperties: false },
              ),
              { minItems: 1, maxItems: 16 },
            ),
            memoryMiB: Type.Optional(Type.Integer({ minimum: 64, maximum: 65536 })),
            kernel: Type.String({ minLength: 1 }),
            initrd: Type.String({ minLength: 1 }),
            append: Type.Optional(Type.String()),
            osType: Type.Optional(Type.Union([Type.Literal('linux'), Type.Literal('windows')])),
          },
          { additionalProperties: false },
        ),
        response: { 201: SiteMachineSchema, 400: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => {
      const s = await site(req.params.site);
      const b = req.body;
      const adapter = await adapterFor(ctx, s);
      if (await adapter.get(b.name)) throw conflict(`machine '${b.name}' already exists at site '${s.name}'`);
      if (await machineByName(ctx, b.name))
        throw conflict(`a machine named '${b.name}' is already registered`);
      const names = new Set(b.disks.map((d) => d.name));
      if (names.size !== b.disks.length) throw badRequest('disk names must differ');
      const created = await adapter.create({
        name: b.name,
        memoryMiB: b.memoryMiB,
        disks: b.disks.map((d) => ({
          name: d.name,
          path: join(siteDir(ctx, s), 'machines', b.name, 'disks', `${d.name}.img`),
          sizeBytes: d.sizeBytes,
        })),
        boot: { kernel: b.kernel, initrd: b.initrd, append: b.append },
        disksFrom: { kind: 'agent' },
      });
      const started = await adapter.startAgent(b.name, agentRegistration(ctx));
      if (!isManual(started)) {
        const m = await waitRegistered(ctx, b.name, AbortSignal.timeout(120_000));
        await ctx.db
          .updateTable('machines')
          .set({ site_id: s.id, os_type: b.osType ?? 'linux' })
          .where('id', '=', m.id)
          .execute();
      }
      const now = (await adapter.get(b.name)) ?? created;
      return reply.status(201).send(json(now, isManual(started) ? started.manual : undefined));
    },
  );

  app.post(
    '/api/v1/sites/:site/machines/:name/power-on',
    {
      schema: {
        tags: ['sites'],
        params,
        response: { 200: SiteMachineSchema, 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req) => {
      const s = await site(req.params.site);
      await machine(s, req.params.name);
      const r = await (await adapterFor(ctx, s)).powerOn(req.params.name).catch((e: Error) => {
        throw conflict(e.message);
      });
      return json(await machine(s, req.params.name), isManual(r) ? r.manual : undefined);
    },
  );

  app.post(
    '/api/v1/sites/:site/machines/:name/shutdown',
    {
      schema: {
        tags: ['sites'],
        params,
        body: Type.Optional(
          Type.Object({ timeoutSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600 })) }),
        ),
        response: {
          200: Type.Object({ machine: SiteMachineSchema, outcome: Type.String() }),
          404: ErrorSchema,
        },
      },
    },
    async (req) => {
      const s = await site(req.params.site);
      await machine(s, req.params.name);
      const r = await (await adapterFor(ctx, s)).shutdown(req.params.name, {
        timeoutMs: (req.body?.timeoutSeconds ?? 120) * 1000,
      });
      const m = await machine(s, req.params.name);
      return isManual(r)
        ? { machine: json(m, r.manual), outcome: 'manual' }
        : { machine: json(m), outcome: r };
    },
  );

  app.delete(
    '/api/v1/sites/:site/machines/:name',
    {
      schema: {
        tags: ['sites'],
        params,
        querystring: Type.Object({ deleteDisks: Type.Optional(Type.Boolean()) }),
        response: { 204: Type.Null(), 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => {
      const s = await site(req.params.site);
      await machine(s, req.params.name);
      const row = await machineByName(ctx, req.params.name);
      if (row) {
        const item = await ctx.db
          .selectFrom('items')
          .select(['id', 'state'])
          .where('machine_id', '=', row.id)
          .executeTakeFirst();
        if (item && item.state !== 'failed-over' && item.state !== 'failed-back') {
          throw conflict(
            `machine '${req.params.name}' is replicated (item ${item.id}, ${item.state}): unprotect it first`,
          );
        }
      }
      await (await adapterFor(ctx, s)).delete(req.params.name, {
        deleteDisks: req.query.deleteDisks ?? false,
      });
      return reply.status(204).send(null);
    },
  );
}
