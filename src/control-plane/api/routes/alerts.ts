// Routes: alerts (heartbeat-missing, rpo-threshold-exceeded, ...).
import type { ServerContext } from '../../context.js';
import type { Api } from '../app.js';

export async function registerAlertRoutes(_app: Api, _ctx: ServerContext): Promise<void> {}
