// Routes: replication groups (machines that share recovery points, S19-S20) and their common
// points. Admin only.
import { Type } from '@sinclair/typebox';
import type { ServerContext } from '../../context.js';
import { takeGroupPoint } from '../../recovery/group-points.js';
import { createGroup, deleteGroup, groupByName, groupView, listGroups } from '../../recovery/groups.js';
import type { Api } from '../app.js';
import { ApiError } from '../errors.js';
import { ErrorSchema } from '../schemas.js';

const GroupSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  created_at: Type.String(),
  machines: Type.Array(Type.Object({ name: Type.String(), item_id: Type.String(), state: Type.String() })),
  latest_point: Type.Union([
    Type.Object({ id: Type.String(), kind: Type.String(), taken_at: Type.String() }),
    Type.Null(),
  ]),
});

const PointSchema = Type.Object({
  id: Type.String(),
  kind: Type.String(),
  taken_at: Type.String(),
  seqs: Type.Record(Type.String(), Type.Number(), {
    description: 'machine name -> its sequence number of the point',
  }),
});

const GroupParams = Type.Object({ group: Type.String() });

export async function registerGroupRoutes(app: Api, ctx: ServerContext): Promise<void> {
  app.get(
    '/api/v1/groups',
    { schema: { tags: ['groups'], response: { 200: Type.Array(GroupSchema) } } },
    async () => listGroups(ctx),
  );

  app.post(
    '/api/v1/groups',
    {
      schema: {
        tags: ['groups'],
        description:
          'A replication group of replicated machines: one OS type and one master target (S20), each machine in one group.',
        body: Type.Object(
          {
            name: Type.String({ minLength: 1 }),
            machines: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
          },
          { additionalProperties: false },
        ),
        response: { 201: GroupSchema, 400: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => reply.status(201).send(await createGroup(ctx, req.body.name, req.body.machines)),
  );

  app.get(
    '/api/v1/groups/:group',
    { schema: { tags: ['groups'], params: GroupParams, response: { 200: GroupSchema, 404: ErrorSchema } } },
    async (req) => groupView(ctx, await groupByName(ctx, req.params.group)),
  );

  app.delete(
    '/api/v1/groups/:group',
    {
      schema: {
        tags: ['groups'],
        description: 'Its machines go on replicating, each on its own; its common points are forgotten.',
        params: GroupParams,
        response: { 204: Type.Null(), 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => {
      await deleteGroup(ctx, req.params.group);
      return reply.status(204).send(null);
    },
  );

  const pointJson = async (p: { id: string; kind: string; taken_at: string; seqs_json: string }) => {
    const seqs = JSON.parse(p.seqs_json) as Record<string, number>;
    const names = await ctx.db
      .selectFrom('machines')
      .select(['id', 'name'])
      .where('id', 'in', Object.keys(seqs).length ? Object.keys(seqs) : [''])
      .execute();
    const nameOf = new Map(names.map((n) => [n.id, n.name]));
    return {
      id: p.id,
      kind: p.kind,
      taken_at: p.taken_at,
      seqs: Object.fromEntries(Object.entries(seqs).map(([id, seq]) => [nameOf.get(id) ?? id, seq])),
    };
  };

  app.get(
    '/api/v1/groups/:group/points',
    {
      schema: {
        tags: ['groups'],
        description: 'The group’s common recovery points, newest first.',
        params: GroupParams,
        response: { 200: Type.Array(PointSchema), 404: ErrorSchema },
      },
    },
    async (req) => {
      const g = await groupByName(ctx, req.params.group);
      const rows = await ctx.db
        .selectFrom('group_points')
        .selectAll()
        .where('group_id', '=', g.id)
        .orderBy('taken_at', 'desc')
        .limit(1000)
        .execute();
      return Promise.all(rows.map(pointJson));
    },
  );

  app.post(
    '/api/v1/groups/:group/points',
    {
      schema: {
        tags: ['groups'],
        description:
          'Takes a common point now: crash-consistent under one write barrier across the agents, or app-consistent with every machine frozen.',
        params: GroupParams,
        body: Type.Object(
          { kind: Type.Optional(Type.Union([Type.Literal('crash'), Type.Literal('app')])) },
          { additionalProperties: false },
        ),
        response: { 201: PointSchema, 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => {
      const g = await groupByName(ctx, req.params.group);
      const p = await takeGroupPoint(ctx, g, req.body?.kind ?? 'crash').catch((e: Error) => {
        throw new ApiError(409, 'conflict', e.message);
      });
      return reply.status(201).send(await pointJson(p));
    },
  );
}
