// The job runner as a background service of the configuration server.
import type { BackgroundService } from '../background.js';
import type { ServerContext } from '../context.js';
import { jobKinds } from './kinds.js';
import { JobRunner } from './runner.js';

export async function startJobRunner(ctx: ServerContext): Promise<BackgroundService> {
  const runner = new JobRunner(ctx, jobKinds);
  await runner.start();
  return { name: 'job runner', stop: () => runner.stop() };
}
