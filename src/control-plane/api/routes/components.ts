// Routes: process servers and master targets.
import type { ServerContext } from '../../context.js';
import type { Api } from '../app.js';

export async function registerComponentRoutes(_app: Api, _ctx: ServerContext): Promise<void> {}
