// Routes: replication policies (S14) and their failback policies (S15). Values are checked by
// policies/policy-rules.ts so that every refusal names the field and its allowed range.
import { type TSchema, Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import { ACK_MODES } from '../../../agent/ack-gate.js';
import type { ServerContext } from '../../context.js';
import { POLICY_FIELDS, POLICY_RANGES, type PolicyField } from '../../policies/policy-rules.js';
import {
  createPolicy,
  deletePolicy,
  listPolicies,
  showPolicy,
  updatePolicy,
} from '../../policies/policy-store.js';
import type { Api } from '../app.js';
import { badRequest } from '../errors.js';
import { ErrorSchema, NameSchema } from '../schemas.js';

const range = (f: keyof typeof POLICY_RANGES) =>
  Type.Integer({
    minimum: POLICY_RANGES[f].min,
    maximum: POLICY_RANGES[f].max,
    description: POLICY_RANGES[f].allowed,
  });

const valueSchemas: Record<PolicyField, TSchema> = {
  rpo_threshold_minutes: range('rpo_threshold_minutes'),
  retention_hours: range('retention_hours'),
  app_consistent_minutes: range('app_consistent_minutes'),
  crash_consistent_minutes: range('crash_consistent_minutes'),
  ack_mode: Type.Union(ACK_MODES.map((m) => Type.Literal(m))),
};

const PolicySchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  ...valueSchemas,
  failback: Type.Boolean({ description: 'a failback policy (S15): made with its policy, not editable' }),
  failback_policy: Type.Union([Type.String(), Type.Null()]),
  failback_of: Type.Union([Type.String(), Type.Null()]),
  created_at: Type.String(),
  updated_at: Type.String(),
});

const optionalValues = Object.fromEntries(
  POLICY_FIELDS.map((f) => [f, Type.Optional(valueSchemas[f])]),
) as Record<PolicyField, TSchema>;
const ChangesSchema = Type.Object(optionalValues);

/**
 * What the caller asked to change. Fastify's own validation only attaches its finding (see
 * attachValidation): policy-rules gives the message that names the field and its range, and
 * anything it does not cover (an unknown field, a bad name) is refused here.
 */
function changesOf(req: FastifyRequest, allowed: readonly string[]): Partial<Record<PolicyField, unknown>> {
  const body = (req.body ?? {}) as Record<string, unknown>;
  const unknown = Object.keys(body).filter((k) => !allowed.includes(k));
  if (unknown.length) {
    throw badRequest(`unknown field '${unknown[0]}': the fields are ${allowed.join(', ')}`);
  }
  const changes: Partial<Record<PolicyField, unknown>> = {};
  for (const f of POLICY_FIELDS) if (f in body) changes[f] = body[f];
  return changes;
}

/**
 * A schema finding about a policy value is left to policy-rules, which refuses the same values
 * with a message naming the range; any other finding (the name) is the answer.
 */
function refuseSchemaError(req: FastifyRequest): void {
  const err = req.validationError;
  if (!err) return;
  const paths = ((err.validation ?? []) as { instancePath?: string }[]).map((v) => v.instancePath ?? '');
  const aboutValues = paths.length > 0 && paths.every((p) => POLICY_FIELDS.some((f) => p === `/${f}`));
  if (!aboutValues) throw badRequest(`invalid request: ${err.message}`);
}

export async function registerPolicyRoutes(app: Api, ctx: ServerContext): Promise<void> {
  const readers = ['admin', 'agent', 'process-server', 'master-target'] as const;

  app.get(
    '/api/v1/policies',
    {
      config: { access: readers },
      schema: { tags: ['policies'], response: { 200: Type.Array(PolicySchema) } },
    },
    async () => listPolicies(ctx),
  );

  app.get(
    '/api/v1/policies/:name',
    {
      config: { access: readers },
      schema: {
        tags: ['policies'],
        params: Type.Object({ name: Type.String() }),
        response: { 200: PolicySchema, 404: ErrorSchema },
      },
    },
    async (req) => showPolicy(ctx, req.params.name),
  );

  app.post(
    '/api/v1/policies',
    {
      attachValidation: true,
      schema: {
        tags: ['policies'],
        description:
          'Creates a policy (defaults for values not given) and its failback policy NAME-failback.',
        body: Type.Object({ name: NameSchema, ...optionalValues }),
        response: { 201: PolicySchema, 400: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => {
      const changes = changesOf(req, ['name', ...POLICY_FIELDS]);
      const name = (req.body as { name?: unknown }).name;
      if (typeof name !== 'string') throw badRequest('name is required: the policy needs a name');
      refuseSchemaError(req);
      const policy = await createPolicy(ctx, name, changes);
      return reply.status(201).send(policy);
    },
  );

  app.patch(
    '/api/v1/policies/:name',
    {
      attachValidation: true,
      schema: {
        tags: ['policies'],
        description: 'Changes values of a policy; a failback policy is not editable (409).',
        params: Type.Object({ name: Type.String() }),
        body: ChangesSchema,
        response: { 200: PolicySchema, 400: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req) => {
      const changes = changesOf(req, POLICY_FIELDS);
      refuseSchemaError(req);
      if (Object.keys(changes).length === 0) {
        throw badRequest(`nothing to change: give at least one of ${POLICY_FIELDS.join(', ')}`);
      }
      return updatePolicy(ctx, req.params.name, changes);
    },
  );

  app.delete(
    '/api/v1/policies/:name',
    {
      schema: {
        tags: ['policies'],
        description: 'Deletes a policy and its failback policy; refused while a replicated item uses either.',
        params: Type.Object({ name: Type.String() }),
        response: { 204: Type.Null(), 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => {
      await deletePolicy(ctx, req.params.name);
      return reply.status(204).send(null);
    },
  );
}
