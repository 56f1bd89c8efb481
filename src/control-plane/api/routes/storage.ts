// Routes: datastores and retention volumes of master targets (S24). The built-in master
// target's paths are probed by this server; a remote master target probes its own and reports
// them (storage-paths tells it what to probe, storage-report takes the facts).
import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import { DEFAULT_RETENTION_PATH } from '../../../volumes/retention-rules.js';
import { VolumeFactsSchema } from '../../../volumes/volume-facts.js';
import type { ServerContext } from '../../context.js';
import {
  addDatastore,
  addRetentionVolume,
  applyStorageReport,
  listDatastores,
  listRetentionVolumes,
  refreshLocalStorage,
  removeDatastore,
  removeRetentionVolume,
  type StorageReport,
  storagePathsOf,
} from '../../storage/storage-store.js';
import type { Api } from '../app.js';
import { forbidden } from '../errors.js';
import { ErrorSchema, NameSchema } from '../schemas.js';

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

const DatastoreSchema = Type.Object({
  id: Type.String(),
  master_target: Type.String(),
  name: Type.String(),
  path: Type.String(),
  fs_type: Nullable(Type.String()),
  mount_point: Nullable(Type.String()),
  capacity_bytes: Type.Number(),
  free_bytes: Type.Number(),
  problem: Nullable(Type.String({ description: 'why replica disks cannot go there' })),
  refreshed_at: Type.String(),
});

const RetentionVolumeSchema = Type.Object({
  id: Type.String(),
  master_target: Type.String(),
  path: Type.String(),
  fs_type: Nullable(Type.String()),
  mount_point: Nullable(Type.String()),
  capacity_bytes: Type.Number(),
  free_bytes: Type.Number(),
  valid: Type.Boolean({ description: 'passes every S24 rule' }),
  invalid_reason: Nullable(Type.String({ description: 'every S24 rule it breaks' })),
  facts: Type.Union([VolumeFactsSchema, Type.Null()]),
  refreshed_at: Type.String(),
});

const MasterTargetParams = Type.Object({ name: Type.String() });

/** A master target may only read and report its own storage. */
function ownMasterTarget(req: FastifyRequest, name: string): void {
  const p = req.principal;
  if (p.kind === 'component' && p.identity.name !== name) {
    throw forbidden(`master target '${p.identity.name}' may not act for master target '${name}'`);
  }
}

export async function registerStorageRoutes(app: Api, ctx: ServerContext): Promise<void> {
  const readers = ['admin', 'process-server', 'master-target'] as const;

  app.get(
    '/api/v1/datastores',
    {
      config: { access: readers },
      schema: { tags: ['storage'], response: { 200: Type.Array(DatastoreSchema) } },
    },
    async () => listDatastores(ctx),
  );

  app.post(
    '/api/v1/datastores',
    {
      schema: {
        tags: ['storage'],
        description:
          'Adds a datastore (a directory for replica disks) to a master target (default: the built-in one).',
        body: Type.Object(
          {
            master_target: Type.Optional(Type.String()),
            name: NameSchema,
            path: Type.String({ minLength: 1 }),
          },
          { additionalProperties: false },
        ),
        response: { 201: DatastoreSchema, 400: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => reply.status(201).send(await addDatastore(ctx, req.body)),
  );

  app.delete(
    '/api/v1/datastores/:master_target/:name',
    {
      schema: {
        tags: ['storage'],
        params: Type.Object({ master_target: Type.String(), name: Type.String() }),
        response: { 204: Type.Null(), 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => {
      await removeDatastore(ctx, req.params.master_target, req.params.name);
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/api/v1/retention-volumes',
    {
      config: { access: readers },
      schema: { tags: ['storage'], response: { 200: Type.Array(RetentionVolumeSchema) } },
    },
    async () => listRetentionVolumes(ctx),
  );

  app.post(
    '/api/v1/retention-volumes',
    {
      schema: {
        tags: ['storage'],
        description:
          `Adds a retention volume to a master target (default: the built-in one; default path ${DEFAULT_RETENTION_PATH}). ` +
          'A volume that breaks S24 is kept with valid=false and the rules it breaks.',
        body: Type.Object(
          { master_target: Type.Optional(Type.String()), path: Type.Optional(Type.String({ minLength: 1 })) },
          { additionalProperties: false },
        ),
        response: { 201: RetentionVolumeSchema, 400: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => reply.status(201).send(await addRetentionVolume(ctx, req.body ?? {})),
  );

  app.delete(
    '/api/v1/retention-volumes/:master_target',
    {
      schema: {
        tags: ['storage'],
        description: 'Removes the retention volume at ?path= of a master target.',
        params: Type.Object({ master_target: Type.String() }),
        querystring: Type.Object({ path: Type.String({ minLength: 1 }) }),
        response: { 204: Type.Null(), 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => {
      await removeRetentionVolume(ctx, req.params.master_target, req.query.path);
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/api/v1/storage/refresh',
    {
      schema: {
        tags: ['storage'],
        description:
          'Probes the built-in master target’s datastores and retention volumes now (otherwise every 15 minutes). ' +
          'Remote master targets report their own.',
        response: {
          200: Type.Object({ probed: Type.Array(Type.String()), remote: Type.Array(Type.String()) }),
        },
      },
    },
    async () => refreshLocalStorage(ctx),
  );

  app.get(
    '/api/v1/master-targets/:name/storage-paths',
    {
      config: { access: ['admin', 'master-target'] },
      schema: {
        tags: ['storage'],
        description: 'The paths a master target should probe and report (storage-report).',
        params: MasterTargetParams,
        response: {
          200: Type.Object({
            datastores: Type.Array(Type.Object({ name: Type.String(), path: Type.String() })),
            retention_volumes: Type.Array(Type.Object({ path: Type.String() })),
          }),
          403: ErrorSchema,
          404: ErrorSchema,
        },
      },
    },
    async (req) => {
      ownMasterTarget(req, req.params.name);
      return storagePathsOf(ctx, req.params.name);
    },
  );

  app.post(
    '/api/v1/master-targets/:name/storage-report',
    {
      config: { access: ['master-target'] },
      schema: {
        tags: ['storage'],
        description:
          'A master target reports the probed facts of its datastores and retention volumes (src/volumes/probe.ts); ' +
          'the server validates retention volumes (S24) and answers with what it recorded.',
        params: MasterTargetParams,
        body: Type.Object(
          {
            datastores: Type.Optional(
              Type.Array(Type.Object({ name: NameSchema, facts: VolumeFactsSchema })),
            ),
            retention_volumes: Type.Optional(Type.Array(Type.Object({ facts: VolumeFactsSchema }))),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            datastores: Type.Array(DatastoreSchema),
            retention_volumes: Type.Array(RetentionVolumeSchema),
          }),
          400: ErrorSchema,
          403: ErrorSchema,
          404: ErrorSchema,
        },
      },
    },
    async (req) => {
      ownMasterTarget(req, req.params.name);
      return applyStorageReport(ctx, req.params.name, req.body as StorageReport);
    },
  );
}
