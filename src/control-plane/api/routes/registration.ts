// Routes: registration of agents, process servers and master targets with the passphrase.
import type { ServerContext } from '../../context.js';
import type { Api } from '../app.js';

export async function registerRegistrationRoutes(_app: Api, _ctx: ServerContext): Promise<void> {}
