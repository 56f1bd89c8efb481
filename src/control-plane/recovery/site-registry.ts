// The site adapter behind each site row: one object per site (it keeps no state the
// database does not, so a restarted server finds the same machines), made by the factory
// of its adapter kind in src/sites/adapters.ts.
import { join } from 'node:path';
import { adapterFactories } from '../../sites/adapters.js';
import type { AgentRegistration, SiteAdapter } from '../../sites/site-adapter.js';
import type { ServerContext } from '../context.js';
import type { Site } from '../db/schema.js';
import { PASSPHRASE_FILE } from '../registration/passphrase.js';

const adapters = new WeakMap<ServerContext, Map<string, Promise<SiteAdapter>>>();

/** Where a site keeps its machines: its configured dir, else DATA/sites/NAME. */
export function siteDir(ctx: ServerContext, site: Site): string {
  const config = site.config_json ? (JSON.parse(site.config_json) as { dir?: string }) : {};
  return config.dir ?? join(ctx.dataDir, 'sites', site.name);
}

export function adapterFor(ctx: ServerContext, site: Site): Promise<SiteAdapter> {
  const byId = adapters.get(ctx) ?? new Map<string, Promise<SiteAdapter>>();
  adapters.set(ctx, byId);
  let a = byId.get(site.id);
  if (!a) {
    const make = adapterFactories[site.adapter];
    if (!make) {
      return Promise.reject(
        new Error(`site '${site.name}' has adapter '${site.adapter}', which this server does not know`),
      );
    }
    a = make(siteDir(ctx, site), ctx.logger.child({ site: site.name }), site.name);
    // A failed open is not kept: the next call tries again.
    a.catch(() => byId.delete(site.id));
    byId.set(site.id, a);
  }
  return a;
}

/** How agents a site adapter installs register with this server. */
export function agentRegistration(ctx: ServerContext): AgentRegistration {
  if (!ctx.apiAddress) throw new Error('the configuration server does not listen yet');
  return { cs: ctx.apiAddress, passphraseFile: join(ctx.dataDir, PASSPHRASE_FILE) };
}
