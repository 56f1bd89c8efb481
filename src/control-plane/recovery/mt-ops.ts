// The master target operations the recovery jobs use (built-in master target only, like
// protect): roll a replica back to a point and hand its disks over (failover), forget it
// (commit), take existing disk files as a replica (reprotect, S22), and test views.
import type { MasterTarget } from '../../master-target/master-target.js';
import type { ServerContext } from '../context.js';
import type { MasterTargetRow } from '../db/schema.js';
import { builtinMasterTarget } from '../items/data-plane.js';

export interface HandedDisk {
  id: number;
  name: string;
  size: number;
  path: string;
}

export interface MtRecoveryOps {
  failover(
    machineId: string,
    point: number | 'latest',
    opts?: { moveTo?: string },
  ): Promise<{ point: number; pointTime: number; disks: HandedDisk[] }>;
  release(machineId: string): Promise<void>;
  adopt(machineId: string, disks: HandedDisk[]): Promise<void>;
}

export function recoveryMt(ctx: ServerContext, row: MasterTargetRow): MasterTarget & MtRecoveryOps {
  const mt = builtinMasterTarget(ctx, row);
  if (!mt) {
    throw new Error(
      `master target '${row.name}' is not built into this configuration server: failover through it is not supported yet`,
    );
  }
  return mt as MasterTarget & MtRecoveryOps;
}
