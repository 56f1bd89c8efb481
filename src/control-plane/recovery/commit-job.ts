// Commit (`rebound commit ITEM`): the failover is final. The master target forgets the
// replica (its disks are the recovered machine's now) and its undo journal, and the process
// server drops what it still cached of the old source: the item waits for a reprotect.

import { builtinProcessServer, dataPlaneId } from '../items/data-plane.js';
import { loadItem, setItem } from '../items/item-rows.js';
import type { JobDefinition } from '../jobs/definitions.js';
import { recoveryMt } from './mt-ops.js';
import { parseFailover } from './recovery-records.js';

export const COMMIT = 'commit-failover';

export interface CommitParams {
  itemId: string;
}

export const commitJob: JobDefinition<CommitParams> = {
  kind: COMMIT,
  steps: () => [
    {
      name: 'release the replica',
      resumable: true,
      async run(s) {
        const r = await loadItem(s.ctx.db, s.params.itemId);
        if (!r) throw new Error(`item ${s.params.itemId} no longer exists`);
        const rec = parseFailover(r.item.failover_json);
        if (r.item.state !== 'failed-over' || !rec) {
          throw new Error(`machine '${r.machine.name}' is ${r.item.state}: there is no failover to commit`);
        }
        await recoveryMt(s.ctx, r.masterTarget).release(dataPlaneId(r.machine));
        const ps = builtinProcessServer(s.ctx, r.processServer);
        await ps?.removeMachine(dataPlaneId(r.machine));
        await setItem(
          s.ctx.db,
          r.item.id,
          { failover_json: JSON.stringify({ ...rec, committed: true }), rpo_seconds: null },
          s.ctx.now(),
        );
        return {
          message: `the failover of '${r.machine.name}' at point ${rec.point} is committed: reprotect it next`,
        };
      },
    },
  ],
};
