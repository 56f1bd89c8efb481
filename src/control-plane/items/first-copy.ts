// Following a replica's first copy (initial replication, or the hash-compared copy of a
// reprotect): until the master target says the replica is consistent, the agent's reported
// percentage becomes the step's and the item's progress.
import type { StepContext } from '../jobs/definitions.js';
import { sleep } from '../jobs/definitions.js';
import { agentCopyPercent, replicaStatus } from './data-plane.js';
import { loadItem, setItem } from './item-rows.js';

const POLL_MS = 500;

export async function followFirstCopy(
  s: StepContext<{ itemId: string }>,
  o: { doing: string; timeoutMs?: number },
): Promise<void> {
  const deadline = o.timeoutMs === undefined ? undefined : Date.now() + o.timeoutMs;
  for (;;) {
    const r = await loadItem(s.ctx.db, s.params.itemId);
    if (!r) throw new Error(`item ${s.params.itemId} no longer exists`);
    if (replicaStatus(s.ctx, r.masterTarget, r.machine)?.protected) return;
    if (deadline !== undefined && Date.now() > deadline) {
      throw new Error(`${o.doing} did not end within ${o.timeoutMs! / 60_000} min`);
    }
    const pct = agentCopyPercent(r.machine);
    if (pct !== undefined) {
      await s.progress(pct, `${o.doing}: ${Math.floor(pct)} %`);
      await setItem(s.ctx.db, r.item.id, { progress_pct: pct }, s.ctx.now());
    } else {
      await s.message(`${o.doing} (the agent has not reported its progress yet)`);
    }
    await sleep(POLL_MS, s.signal);
  }
}
