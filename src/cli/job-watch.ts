// `rebound jobs watch ID` and `rebound jobs --watch`: polls the API and prints a line each time
// a step changes (state, whole percent, message), then the job's end. Returns the final states.
import type { ApiClient } from '../control-plane/client/api-client.js';
import { endLine, isEnded, type JobJson, stepKey, stepLine } from './job-format.js';

export interface WatchOptions {
  intervalMs?: number;
  print?: (line: string) => void;
}

class Watcher {
  private readonly seen = new Map<string, string>();
  private readonly ended = new Set<string>();

  constructor(private readonly print: (line: string) => void) {}

  /** Prints what changed in this job since last time; true once it has ended (and said so). */
  update(j: JobJson): boolean {
    if (this.ended.has(j.id)) return true;
    for (const s of j.steps) {
      const key = stepKey(s);
      const id = `${j.id}/${s.ordinal}`;
      if (this.seen.get(id) === key) continue;
      // A step never started has nothing to say yet.
      if (!this.seen.has(id) && s.state === 'Pending') continue;
      this.seen.set(id, key);
      this.print(stepLine(j, s));
    }
    if (isEnded(j)) {
      this.ended.add(j.id);
      this.print(endLine(j));
      return true;
    }
    return false;
  }
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Watches one job until it ends; its final state. */
export async function watchJob(client: ApiClient, id: string, o: WatchOptions = {}): Promise<string> {
  const w = new Watcher(o.print ?? console.log);
  for (;;) {
    const j = await client.get<JobJson>(`/api/v1/jobs/${encodeURIComponent(id)}`);
    if (w.update(j)) return j.state;
    await wait(o.intervalMs ?? 500);
  }
}

/**
 * Watches every job active now, and any started while watching, until none is active; the
 * final states of those watched.
 */
export async function watchActiveJobs(client: ApiClient, o: WatchOptions = {}): Promise<string[]> {
  const print = o.print ?? console.log;
  const w = new Watcher(print);
  const watched = new Map<string, string>();
  for (;;) {
    const jobs = await client.get<JobJson[]>('/api/v1/jobs?state=Queued,Running');
    for (const j of jobs) watched.set(j.id, j.state);
    if (watched.size === 0) {
      print('no job is running');
      return [];
    }
    // Jobs that left the active list: read them once more for their end.
    for (const [id, state] of watched) {
      if (isEnded({ state })) continue;
      const j = jobs.find((x) => x.id === id) ?? (await client.get<JobJson>(`/api/v1/jobs/${id}`));
      w.update(j);
      watched.set(id, j.state);
    }
    if ([...watched.values()].every((s) => isEnded({ state: s }))) return [...watched.values()];
    await wait(o.intervalMs ?? 500);
  }
}
