// Routes: replicated items (protect, disable) and their state.
import type { ServerContext } from '../../context.js';
import type { Api } from '../app.js';

export async function registerItemRoutes(_app: Api, _ctx: ServerContext): Promise<void> {}
