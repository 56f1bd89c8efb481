// Test failover (`rebound test-failover ITEM`): the machine boots at the recovery site, on an
// isolated network, from a copy-on-write view of a recovery point, while replication goes on;
// `rebound cleanup-test-failover ITEM` removes the test machine and its scratch data.
import { join } from 'node:path';
import { resolvePoint } from '../../master-target/point-spec.js';
import { dataPlaneId } from '../items/data-plane.js';
import { type ItemRows, loadItem, setItem } from '../items/item-rows.js';
import type { JobDefinition, StepContext } from '../jobs/definitions.js';
import { machineSpec, siteById } from './machine-ops.js';
import { recoveryMt } from './mt-ops.js';
import { parseTestFailover, type TestFailoverRecord } from './recovery-records.js';
import { adapterFor, siteDir } from './site-registry.js';
import { closeTestView, openTestView } from './test-views.js';

export const TEST_FAILOVER = 'test-failover';

/** Where test failovers' copy-on-write scratch files go (deleted at clean-up). */
const testScratch = (ctx: { dataDir: string }) => join(ctx.dataDir, 'test-failover');
export const CLEANUP_TEST_FAILOVER = 'cleanup-test-failover';

export interface TestFailoverParams {
  itemId: string;
  /** latest | latest-app | a point id | an ISO time. */
  point: string;
  siteId: string;
  machineName: string;
}

async function rows(s: StepContext<{ itemId: string }>): Promise<ItemRows> {
  const r = await loadItem(s.ctx.db, s.params.itemId);
  if (!r) throw new Error(`item ${s.params.itemId} no longer exists`);
  return r;
}

export const testFailoverJob: JobDefinition<TestFailoverParams> = {
  kind: TEST_FAILOVER,
  steps: () => [
    {
      name: 'open a view of the point',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        if (r.item.state !== 'protected') {
          throw new Error(
            `machine '${r.machine.name}' is ${r.item.state}: only a protected machine can be tested`,
          );
        }
        const mt = recoveryMt(s.ctx, r.masterTarget);
        const id = dataPlaneId(r.machine);
        const replica = mt.replica(id);
        if (!replica)
          throw new Error(`master target '${r.masterTarget.name}' holds no replica of '${r.machine.name}'`);
        const prev = parseTestFailover(r.item.test_failover_json);
        const point = prev?.point ?? resolvePoint(s.params.point, replica);
        const view = await openTestView(r.item.id, mt, id, point, testScratch(s.ctx), s.ctx.logger);
        const rec: TestFailoverRecord = {
          point,
          viewId: view.id,
          machineName: s.params.machineName,
          siteId: s.params.siteId,
          startedAt: prev?.startedAt ?? s.ctx.now(),
        };
        await setItem(s.ctx.db, r.item.id, { test_failover_json: JSON.stringify(rec) }, s.ctx.now());
        return { message: `point ${point}: a copy-on-write view at ${view.urls.join(', ')}` };
      },
    },
    {
      name: 'boot the test machine',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        const mt = recoveryMt(s.ctx, r.masterTarget);
        const rec = parseTestFailover(r.item.test_failover_json)!;
        const view = await openTestView(
          r.item.id,
          mt,
          dataPlaneId(r.machine),
          rec.point,
          testScratch(s.ctx),
          s.ctx.logger,
        );
        const site = (await siteById(s.ctx, s.params.siteId))!;
        const adapter = await adapterFor(s.ctx, site);
        const spec = await machineSpec(s.ctx, r.machine);
        const disksFrom = { kind: 'nbd' as const, urls: view.urls };
        if (!(await adapter.get(s.params.machineName))) {
          await adapter.create({
            name: s.params.machineName,
            // Its disks come from the view; these paths only name them (sparse, never written).
            disks: spec.disks.map((d) => ({
              ...d,
              path: join(siteDir(s.ctx, site), 'machines', s.params.machineName, 'unused', `${d.name}.img`),
            })),
            boot: spec.boot,
            memoryMiB: spec.memoryMiB,
            network: 'isolated',
            disksFrom,
          });
        }
        const m = await adapter.get(s.params.machineName);
        if (m?.powerState !== 'running') await adapter.powerOn(s.params.machineName, { disksFrom });
        return {
          message: `'${s.params.machineName}' runs at site '${site.name}' on an isolated network; replication goes on`,
        };
      },
    },
  ],
  async finish(ctx, job, outcome) {
    if (outcome.state !== 'Failed' && outcome.state !== 'Cancelled') return;
    // The record stays (when it was made) so that cleanup-test-failover removes what was started.
    const { itemId } = JSON.parse(job.params_json) as TestFailoverParams;
    ctx.logger.warn({ itemId, error: outcome.error }, 'test failover failed: clean it up');
  },
};

export const cleanupTestFailoverJob: JobDefinition<{ itemId: string }> = {
  kind: CLEANUP_TEST_FAILOVER,
  steps: () => [
    {
      name: 'remove the test machine',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        const rec = parseTestFailover(r.item.test_failover_json);
        if (!rec) throw new Error(`no test failover of '${r.machine.name}' is running`);
        const site = await siteById(s.ctx, rec.siteId);
        if (site) {
          const adapter = await adapterFor(s.ctx, site);
          if (await adapter.get(rec.machineName)) {
            await adapter.shutdown(rec.machineName, { timeoutMs: 0 });
            await adapter.delete(rec.machineName, { deleteDisks: true });
          }
        }
        return { message: `'${rec.machineName}' removed` };
      },
    },
    {
      name: 'close the view and delete its scratch data',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        const closed = await closeTestView(r.item.id);
        await setItem(s.ctx.db, r.item.id, { test_failover_json: null }, s.ctx.now());
        return { message: closed ? 'the view is closed; the test’s writes are gone' : 'no view was open' };
      },
    },
  ],
};
