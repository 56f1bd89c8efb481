// One Prometheus registry per component instance (never prom-client's global one), so
// several components in one process (the drill, tests) each expose only their own
// metrics. Gauges are computed when scraped, from the component's live status.
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { HealthProblem } from '../util/health.js';

export function newRegistry(opts: { processMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  // Process metrics (RSS, CPU, event-loop lag, heap) are the process's, not the component's:
  // ask for them once per process.
  if (opts.processMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'rebound_' });
  return registry;
}

/** A per-machine gauge: on every scrape, one sample per item from `value` (undefined = no sample). */
export function itemGauge<T extends { machineId: string }>(
  registry: Registry,
  name: string,
  help: string,
  items: () => T[],
  value: (item: T) => number | boolean | undefined,
): void {
  new Gauge({
    name,
    help,
    labelNames: ['machine'],
    registers: [registry],
    collect() {
      this.reset();
      for (const it of items()) {
        const v = value(it);
        if (v !== undefined) this.set({ machine: it.machineId }, typeof v === 'boolean' ? Number(v) : v);
      }
    },
  });
}

/** Milliseconds since the epoch as Prometheus timestamps (seconds); undefined stays undefined. */
export function unixSeconds(ms: number | undefined): number | undefined {
  return ms === undefined || ms <= 0 ? undefined : ms / 1000;
}

/** One sample (value 1) per current health problem of each item, labelled with its code. */
export function problemGauge(
  registry: Registry,
  name: string,
  items: () => { machineId: string; health: HealthProblem[] }[],
): void {
  new Gauge({
    name,
    help: 'One sample (value 1) per current health problem of a machine, labelled with its code.',
    labelNames: ['machine', 'code'],
    registers: [registry],
    collect() {
      this.reset();
      for (const it of items())
        for (const p of it.health) this.set({ machine: it.machineId, code: p.code }, 1);
    },
  });
}
