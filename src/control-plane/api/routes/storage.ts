// Routes: datastores and retention volumes of master targets.
import type { ServerContext } from '../../context.js';
import type { Api } from '../app.js';

export async function registerStorageRoutes(_app: Api, _ctx: ServerContext): Promise<void> {}
