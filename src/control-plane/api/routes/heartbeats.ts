// Routes: heartbeats from agents, process servers and master targets. The caller is known from
// its certificate, so a component can only ever heartbeat for itself.
import { Type } from '@sinclair/typebox';
import { clearAlert, raiseAlert } from '../../alerts.js';
import type { ServerContext } from '../../context.js';
import {
  DEFAULT_HEARTBEAT_SECONDS,
  type HeartbeatAnswer,
  type HeartbeatRequest,
} from '../../heartbeat-contract.js';
import { HEARTBEAT_MISSING } from '../../heartbeat-watch.js';
import { machineOfAgent, syncDisks } from '../../machines-store.js';
import type { Api } from '../app.js';
import { DiskListSchema } from '../disk-schema.js';
import { ApiError, badRequest, notFound } from '../errors.js';
import { ErrorSchema } from '../schemas.js';

export const DISK_ID_COLLISION = 'disk-id-collision';

const HeartbeatBody = Type.Object(
  {
    address: Type.Optional(Type.String({ maxLength: 300 })),
    status: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    disks: Type.Optional(DiskListSchema),
  },
  { additionalProperties: false },
);

// Extensible: fields added here later (e.g. `replication` for agents) reach components, which
// ignore what they do not know.
const HeartbeatAnswerSchema = Type.Object({
  now: Type.String(),
  nextHeartbeatSeconds: Type.Number(),
});

export async function registerHeartbeatRoutes(app: Api, ctx: ServerContext): Promise<void> {
  app.post(
    '/api/v1/heartbeats',
    {
      config: { access: ['agent', 'process-server', 'master-target'] },
      schema: {
        tags: ['heartbeats'],
        summary: 'a component is alive (and, for agents, its disks)',
        body: HeartbeatBody,
        response: { 200: HeartbeatAnswerSchema, 400: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req): Promise<HeartbeatAnswer> => {
      if (req.principal.kind !== 'component') throw new Error('heartbeat without a component principal');
      const { role, name } = req.principal.identity;
      const hb = req.body as HeartbeatRequest;
      const now = ctx.now();
      const status = hb.status === undefined ? undefined : JSON.stringify(hb.status);
      if (role === 'agent') {
        const machine = await machineOfAgent(ctx.db, name);
        if (!machine) {
          throw notFound(`agent '${name}' is not registered (its machine was removed?): register it again`);
        }
        await ctx.db
          .updateTable('machines')
          .set({
            last_heartbeat_at: now,
            ...(hb.address === undefined ? {} : { address: hb.address }),
            ...(status === undefined ? {} : { status_json: status }),
          })
          .where('id', '=', machine.id)
          .execute();
        await clearAlert(ctx, HEARTBEAT_MISSING, machine.id);
        if (hb.disks) {
          try {
            await ctx.db.transaction().execute((trx) => syncDisks(trx, machine, hb.disks!, now));
            await clearAlert(ctx, DISK_ID_COLLISION, machine.id);
          } catch (e) {
            // Alive, but its disks are refused: visible in `rebound alerts`, and the agent logs it.
            if (e instanceof ApiError && e.statusCode === 409) {
              await raiseAlert(ctx, {
                severity: 'critical',
                kind: DISK_ID_COLLISION,
                subjectId: machine.id,
                message: e.message,
              });
            }
            throw e;
          }
        }
      } else if (role === 'process-server' || role === 'master-target') {
        if (hb.disks) throw badRequest(`a ${role} reports no disks`);
        const table = role === 'process-server' ? 'process_servers' : 'master_targets';
        const row = await ctx.db.selectFrom(table).select('id').where('name', '=', name).executeTakeFirst();
        if (!row) throw notFound(`${role} '${name}' is not registered: register it again`);
        await ctx.db
          .updateTable(table)
          .set({
            last_heartbeat_at: now,
            ...(hb.address === undefined ? {} : { address: hb.address }),
            ...(status === undefined ? {} : { status_json: status }),
          })
          .where('id', '=', row.id)
          .execute();
        await clearAlert(ctx, HEARTBEAT_MISSING, row.id);
      }
      return { now, nextHeartbeatSeconds: DEFAULT_HEARTBEAT_SECONDS };
    },
  );
}
