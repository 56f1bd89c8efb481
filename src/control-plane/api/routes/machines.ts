// Routes: machines and their disks; agent heartbeats.
import type { ServerContext } from '../../context.js';
import type { Api } from '../app.js';

export async function registerMachineRoutes(_app: Api, _ctx: ServerContext): Promise<void> {}
