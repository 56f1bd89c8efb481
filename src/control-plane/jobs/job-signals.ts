// In-process nudges from the API to the job runner of the same server: a new job, a
// cancellation, a confirmation. The database is the truth (the runner also polls it); these
// only make the runner react at once. One emitter per server context, not a global.
import { EventEmitter } from 'node:events';
import type { ServerContext } from '../context.js';

export interface JobSignals {
  /** A job was queued, cancelled or confirmed: look at it now. */
  wake(jobId: string): void;
  onWake(fn: (jobId: string) => void): () => void;
}

const byContext = new WeakMap<ServerContext, JobSignals>();

export function jobSignals(ctx: ServerContext): JobSignals {
  let s = byContext.get(ctx);
  if (!s) {
    const e = new EventEmitter();
    e.setMaxListeners(0);
    s = {
      wake: (jobId) => e.emit('wake', jobId),
      onWake: (fn) => {
        e.on('wake', fn);
        return () => e.off('wake', fn);
      },
    };
    byContext.set(ctx, s);
  }
  return s;
}
