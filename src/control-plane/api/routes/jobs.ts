// Routes: jobs and their steps.
import type { ServerContext } from '../../context.js';
import type { Api } from '../app.js';

export async function registerJobRoutes(_app: Api, _ctx: ServerContext): Promise<void> {}
