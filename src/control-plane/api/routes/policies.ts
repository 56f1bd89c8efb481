// Routes: replication policies and their failback policies.
import type { ServerContext } from '../../context.js';
import type { Api } from '../app.js';

export async function registerPolicyRoutes(_app: Api, _ctx: ServerContext): Promise<void> {}
