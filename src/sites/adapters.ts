// Every site adapter kind this build knows, by the name sites are created with.
import type { Logger } from 'pino';
import type { SiteAdapter } from './site-adapter.js';

export type SiteAdapterFactory = (dir: string, logger: Logger) => SiteAdapter;

export const adapterFactories: Record<string, SiteAdapterFactory> = {};
