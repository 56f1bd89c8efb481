// Every migration, in order. Kept in code (not discovered from files) so the build carries them
// and their order is explicit. Add a new file and a line here; never edit one that shipped.
import type { Migration } from 'kysely';
import * as initial from './001-initial.js';
import * as jobs from './002-jobs.js';
import * as inventory from './003-inventory.js';
import * as failover from './004-failover.js';
import * as groupPoints from './005-group-points.js';

export const MIGRATIONS: Record<string, Migration> = {
  '001-initial': initial,
  '002-jobs': jobs,
  '003-inventory': inventory,
  '004-failover': failover,
  '005-group-points': groupPoints,
};
