// Schemas shared by several routes (TypeBox: one definition gives the JSON schema that Fastify
// validates with and puts in /openapi.json, and the TypeScript type).
import { Type } from '@sinclair/typebox';

export const ErrorSchema = Type.Object({
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  }),
});

/** Names of things people create: sites, policies, machines. */
export const NameSchema = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$',
});
