// Routes: the passphrase, backup and server status.
import type { ServerContext } from '../../context.js';
import type { Api } from '../app.js';

export async function registerServerAdminRoutes(_app: Api, _ctx: ServerContext): Promise<void> {}
