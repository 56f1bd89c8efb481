// Every route module of the API. Each file owns one resource; see docs/api.md.
import type { ServerContext } from '../../context.js';
import type { Api } from '../app.js';
import { registerAlertRoutes } from './alerts.js';
import { registerBackupRoutes } from './backup.js';
import { registerComponentRoutes } from './components.js';
import { registerGroupRoutes } from './groups.js';
import { registerHeartbeatRoutes } from './heartbeats.js';
import { registerItemRoutes } from './items.js';
import { registerJobRoutes } from './jobs.js';
import { registerMachineRoutes } from './machines.js';
import { registerPassphraseRoutes } from './passphrase.js';
import { registerPlanRoutes } from './plans.js';
import { registerPolicyRoutes } from './policies.js';
import { registerRecoveryRoutes } from './recovery.js';
import { registerRegistrationRoutes } from './registration.js';
import { registerServerAdminRoutes } from './server-admin.js';
import { registerSiteMachineRoutes } from './site-machines.js';
import { registerSiteRoutes } from './sites.js';
import { registerStorageRoutes } from './storage.js';

export async function registerRoutes(app: Api, ctx: ServerContext): Promise<void> {
  for (const register of [
    registerSiteRoutes,
    registerRegistrationRoutes,
    registerMachineRoutes,
    registerComponentRoutes,
    registerStorageRoutes,
    registerPolicyRoutes,
    registerItemRoutes,
    registerRecoveryRoutes,
    registerGroupRoutes,
    registerPlanRoutes,
    registerSiteMachineRoutes,
    registerJobRoutes,
    registerAlertRoutes,
    registerServerAdminRoutes,
    registerBackupRoutes,
    registerPassphraseRoutes,
    registerHeartbeatRoutes,
  ]) {
    await register(app, ctx);
  }
}
