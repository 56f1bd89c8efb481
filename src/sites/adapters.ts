// Every site adapter kind this build knows, by the name sites are created with.
import type { Logger } from 'pino';
import { PhysicalSite } from './physical.js';
import { QemuSite } from './qemu/qemu-site.js';
import type { SiteAdapter } from './site-adapter.js';

export type SiteAdapterFactory = (dir: string, logger: Logger, siteName: string) => Promise<SiteAdapter>;

export const adapterFactories: Record<string, SiteAdapterFactory> = {
  qemu: (dir, logger, siteName) =>
    QemuSite.open({ dir, logger, siteName, accel: process.env.REBOUND_QEMU_ACCEL === 'kvm' ? 'kvm' : 'tcg' }),
  physical: (dir, logger) => PhysicalSite.open({ dir, logger }),
};
