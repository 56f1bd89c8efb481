// Routes: sites (a name and a site adapter: qemu or physical).
import { randomUUID } from 'node:crypto';
import { isAbsolute } from 'node:path';
import { Type } from '@sinclair/typebox';
import type { ServerContext } from '../../context.js';
import type { Api } from '../app.js';
import { badRequest, conflict, notFound } from '../errors.js';
import { ErrorSchema, NameSchema } from '../schemas.js';

export const SITE_ADAPTERS = ['qemu', 'physical'] as const;

const SiteSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  adapter: Type.String(),
  config_json: Type.Union([Type.String(), Type.Null()]),
  created_at: Type.String(),
});

export async function registerSiteRoutes(app: Api, ctx: ServerContext): Promise<void> {
  app.get(
    '/api/v1/sites',
    {
      config: { access: ['admin', 'agent', 'process-server', 'master-target'] },
      schema: { tags: ['sites'], response: { 200: Type.Array(SiteSchema) } },
    },
    async () => ctx.db.selectFrom('sites').selectAll().orderBy('name').execute(),
  );

  app.post(
    '/api/v1/sites',
    {
      schema: {
        tags: ['sites'],
        body: Type.Object(
          {
            name: NameSchema,
            adapter: Type.String(),
            dir: Type.Optional(
              Type.String({
                minLength: 1,
                description: 'where the site keeps its machines (default DATA/sites/NAME)',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 201: SiteSchema, 400: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => {
      const { name, adapter, dir } = req.body;
      if (dir !== undefined && !isAbsolute(dir))
        throw badRequest(`site directory '${dir}' must be an absolute path`);
      if (!(SITE_ADAPTERS as readonly string[]).includes(adapter)) {
        throw badRequest(`site adapter '${adapter}' is not known: use one of ${SITE_ADAPTERS.join(', ')}`);
      }
      const existing = await ctx.db
        .selectFrom('sites')
        .select('id')
        .where('name', '=', name)
        .executeTakeFirst();
      if (existing) throw conflict(`site '${name}' already exists`);
      const site = {
        id: randomUUID(),
        name,
        adapter,
        config_json: dir ? JSON.stringify({ dir }) : null,
        created_at: ctx.now(),
      };
      await ctx.db.insertInto('sites').values(site).execute();
      return reply.status(201).send(site);
    },
  );

  app.delete(
    '/api/v1/sites/:name',
    {
      schema: {
        tags: ['sites'],
        params: Type.Object({ name: Type.String() }),
        response: { 204: Type.Null(), 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => {
      const site = await ctx.db
        .selectFrom('sites')
        .select('id')
        .where('name', '=', req.params.name)
        .executeTakeFirst();
      if (!site) throw notFound(`site '${req.params.name}'`);
      const used = await ctx.db
        .selectFrom('machines')
        .select('name')
        .where('site_id', '=', site.id)
        .executeTakeFirst();
      if (used) throw conflict(`site '${req.params.name}' still holds machine '${used.name}'`);
      await ctx.db.deleteFrom('sites').where('id', '=', site.id).execute();
      return reply.status(204).send(null);
    },
  );
}
