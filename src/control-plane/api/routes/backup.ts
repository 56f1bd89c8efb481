// Routes: a backup of the running server (admin only: it holds the CA's private key). The
// backup is written to a temporary file in the data dir first, so the database snapshot is
// read at disk speed whatever the client's, then sent and removed.
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { writeBackup } from '../../backup/backup.js';
import type { ServerContext } from '../../context.js';
import type { Api } from '../app.js';

export const BACKUP_ROUTE = '/api/v1/server/backup';

export async function registerBackupRoutes(app: Api, ctx: ServerContext): Promise<void> {
  app.get(
    BACKUP_ROUTE,
    {
      schema: {
        tags: ['server'],
        summary: 'a backup of the server: identity files and every table, read in one snapshot',
        description:
          'The body is a Rebound server backup file (docs/control-plane.md, "Backup and restore"); ' +
          'restore it with `rebound server restore FILE`.',
      },
    },
    async (_req, reply) => {
      const tmp = join(ctx.dataDir, `.backup-${randomBytes(6).toString('hex')}.rbk`);
      const result = await writeBackup({ db: ctx.db, kind: ctx.dbKind, dataDir: ctx.dataDir }, tmp);
      const stream = createReadStream(tmp);
      // Opened before the unlink: the open file keeps the data until the stream is done.
      await new Promise<void>((resolve, reject) => {
        stream.once('open', () => resolve());
        stream.once('error', reject);
      });
      await unlink(tmp);
      ctx.logger.info({ bytes: result.bytes, sha256: result.sha256 }, 'backup taken through the API');
      return reply
        .header('content-type', 'application/octet-stream')
        .header('content-length', String(result.bytes))
        .header('x-rebound-backup-sha256', result.sha256)
        .send(stream);
    },
  );
}
