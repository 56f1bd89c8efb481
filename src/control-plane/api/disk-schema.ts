// The disk an agent reports (registration, heartbeats, PUT .../disks): one schema for all three.
import { Type } from '@sinclair/typebox';

export const DiskReportSchema = Type.Object(
  {
    id: Type.String({
      pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
    }),
    name: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' }),
    sizeBytes: Type.Integer({ minimum: 0 }),
    path: Type.Optional(Type.String({ maxLength: 4096 })),
  },
  { additionalProperties: false },
);

export const DiskListSchema = Type.Array(DiskReportSchema, { maxItems: 256 });
