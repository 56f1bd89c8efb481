// Routes: the registration passphrase (admin only). The plaintext is read from DATA/passphrase
// on the server; the database holds only its derived key (registration/passphrase.ts).
import { Type } from '@sinclair/typebox';
import type { ServerContext } from '../../context.js';
import {
  PassphraseUnavailableError,
  rotatePassphrase,
  showPassphrase,
} from '../../registration/passphrase.js';
import type { Api } from '../app.js';
import { ApiError } from '../errors.js';
import { ErrorSchema } from '../schemas.js';

const PassphraseSchema = Type.Object({
  passphrase: Type.String(),
  createdAt: Type.String(),
  file: Type.String(),
});

export async function registerPassphraseRoutes(app: Api, ctx: ServerContext): Promise<void> {
  app.get(
    '/api/v1/server/passphrase',
    {
      schema: {
        tags: ['server'],
        summary: 'the current registration passphrase',
        response: { 200: PassphraseSchema, 409: ErrorSchema },
      },
    },
    async () => {
      try {
        return await showPassphrase(ctx);
      } catch (e) {
        if (e instanceof PassphraseUnavailableError) throw new ApiError(409, 'no-passphrase', e.message);
        throw e;
      }
    },
  );

  app.post(
    '/api/v1/server/passphrase/rotate',
    {
      schema: {
        tags: ['server'],
        summary:
          'a new registration passphrase; the old one stops working, registered components keep theirs',
        response: { 200: PassphraseSchema },
      },
    },
    async () => rotatePassphrase(ctx),
  );
}
