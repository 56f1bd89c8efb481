// Routes: alerts (heartbeat-missing, disk-id-collision, rpo-threshold-exceeded, ...): the open
// ones by default, every one with ?all=true.
import { Type } from '@sinclair/typebox';
import type { ServerContext } from '../../context.js';
import type { Api } from '../app.js';

const AlertSchema = Type.Object({
  id: Type.String(),
  severity: Type.String(),
  kind: Type.String(),
  subject_id: Type.String(),
  message: Type.String(),
  raised_at: Type.String(),
  cleared_at: Type.Union([Type.String(), Type.Null()]),
});

export async function registerAlertRoutes(app: Api, ctx: ServerContext): Promise<void> {
  app.get(
    '/api/v1/alerts',
    {
      schema: {
        tags: ['alerts'],
        querystring: Type.Object({ all: Type.Optional(Type.Boolean()) }),
        response: { 200: Type.Array(AlertSchema) },
      },
    },
    async (req) => {
      let q = ctx.db.selectFrom('alerts').selectAll();
      if (!req.query.all) q = q.where('cleared_at', 'is', null);
      return q.orderBy('raised_at', 'desc').orderBy('id').execute();
    },
  );
}
