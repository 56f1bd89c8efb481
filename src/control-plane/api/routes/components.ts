// Routes: process servers and master targets (read; an operator may set a master target's disk
// limit and whether it has snapshots). Registration and heartbeats write the rows elsewhere.
import { Type } from '@sinclair/typebox';
import {
  listMasterTargets,
  listProcessServers,
  MAX_ATTACHED_DISKS,
  showMasterTarget,
  showProcessServer,
  updateMasterTarget,
} from '../../components/component-store.js';
import type { ServerContext } from '../../context.js';
import type { Api } from '../app.js';
import { ErrorSchema } from '../schemas.js';

const componentFields = {
  id: Type.String(),
  name: Type.String(),
  address: Type.Union([Type.String(), Type.Null()]),
  builtin: Type.Boolean({ description: 'built into the configuration server (S4)' }),
  registered_at: Type.String(),
  last_heartbeat_at: Type.Union([Type.String(), Type.Null()]),
  heartbeat_age_seconds: Type.Union([Type.Number(), Type.Null()]),
  status: Type.Unknown({ description: 'what the component last reported' }),
};

const ProcessServerSchema = Type.Object(componentFields);

const MasterTargetSchema = Type.Object({
  ...componentFields,
  max_disks: Type.Integer({ description: `at most ${MAX_ATTACHED_DISKS} (S23)` }),
  attached_disks: Type.Integer({ description: 'disks of the replicated items whose master target it is' }),
  has_snapshots: Type.Boolean(),
});

const NameParams = Type.Object({ name: Type.String() });

export async function registerComponentRoutes(app: Api, ctx: ServerContext): Promise<void> {
  const readers = ['admin', 'process-server', 'master-target'] as const;

  app.get(
    '/api/v1/process-servers',
    {
      config: { access: readers },
      schema: { tags: ['components'], response: { 200: Type.Array(ProcessServerSchema) } },
    },
    async () => listProcessServers(ctx),
  );

  app.get(
    '/api/v1/process-servers/:name',
    {
      config: { access: readers },
      schema: {
        tags: ['components'],
        params: NameParams,
        response: { 200: ProcessServerSchema, 404: ErrorSchema },
      },
    },
    async (req) => showProcessServer(ctx, req.params.name),
  );

  app.get(
    '/api/v1/master-targets',
    {
      config: { access: readers },
      schema: { tags: ['components'], response: { 200: Type.Array(MasterTargetSchema) } },
    },
    async () => listMasterTargets(ctx),
  );

  app.get(
    '/api/v1/master-targets/:name',
    {
      config: { access: readers },
      schema: {
        tags: ['components'],
        params: NameParams,
        response: { 200: MasterTargetSchema, 404: ErrorSchema },
      },
    },
    async (req) => showMasterTarget(ctx, req.params.name),
  );

  app.patch(
    '/api/v1/master-targets/:name',
    {
      schema: {
        tags: ['components'],
        description: `Sets the disk limit (1-${MAX_ATTACHED_DISKS}) or whether the master target has snapshots.`,
        params: NameParams,
        body: Type.Object(
          { max_disks: Type.Optional(Type.Number()), has_snapshots: Type.Optional(Type.Boolean()) },
          { additionalProperties: false },
        ),
        response: { 200: MasterTargetSchema, 400: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req) => updateMasterTarget(ctx, req.params.name, req.body),
  );
}
