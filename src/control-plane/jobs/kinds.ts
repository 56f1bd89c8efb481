// Every kind of job this server runs, and how a job of one is queued. A job's step names are
// fixed when it is queued (the API shows them at once); the runner checks they still match.
import type { Kysely, Transaction } from 'kysely';
import type { ServerContext } from '../context.js';
import type { Database } from '../db/schema.js';
import { disableReplicationJob } from '../items/disable-job.js';
import { enableReplicationJob } from '../items/enable-job.js';
import { commitJob } from '../recovery/commit-job.js';
import { failbackJob } from '../recovery/failback-job.js';
import { failoverJob } from '../recovery/failover-job.js';
import { PLAN_JOBS } from '../recovery/plan-job.js';
import { reprotectJob } from '../recovery/reprotect-job.js';
import { cleanupTestFailoverJob, testFailoverJob } from '../recovery/test-failover-job.js';
import { JobRegistry } from './definitions.js';
import { createJob, type JobWithSteps } from './job-store.js';

export const jobKinds = new JobRegistry();
jobKinds.register(enableReplicationJob);
jobKinds.register(disableReplicationJob);
jobKinds.register(testFailoverJob);
jobKinds.register(cleanupTestFailoverJob);
jobKinds.register(failoverJob);
jobKinds.register(commitJob);
jobKinds.register(reprotectJob);
jobKinds.register(failbackJob);
for (const def of PLAN_JOBS) jobKinds.register(def);

export interface QueueRequest<P> {
  kind: string;
  targetId: string | null;
  params: P;
  requestedBy: string;
}

/**
 * Records a Queued job (inside the caller's transaction when given one). Once that commits,
 * call jobSignals(ctx).wake(job.id) so the runner starts it at once.
 */
export async function queueJob<P>(
  ctx: ServerContext,
  db: Kysely<Database> | Transaction<Database>,
  req: QueueRequest<P>,
  registry: JobRegistry = jobKinds,
): Promise<JobWithSteps> {
  const def = registry.get(req.kind);
  if (!def) throw new Error(`job kind '${req.kind}' is not known`);
  const steps = def.steps(req.params).map((s) => s.name);
  return createJob(
    db,
    { kind: req.kind, targetId: req.targetId, params: req.params, steps, requestedBy: req.requestedBy },
    ctx.now(),
  );
}
