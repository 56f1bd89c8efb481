// `rebound drill`: the whole job on one machine with the embedded defaults.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { runCaptureDrill } from '../drill/capture-drill.js';
import { runRecoveryDrill } from '../drill/recovery-drill.js';
import { createLogger } from '../util/logger.js';
import { parseSize } from '../util/size.js';

export function registerDrillCommand(program: Command): void {
  program
    .command('drill')
    .description('run a disaster-recovery drill on this machine (needs root, nbdfuse, e2fsprogs)')
    .option('--work-dir <dir>', 'where images and state go (default: a new temporary dir)')
    .option('--disk-size <size>', 'size of the protected disk', '256M')
    .option('--files <n>', 'files to write into the file system', '300')
    .option(
      '--no-vm',
      'skip the recovery cycle with QEMU VMs (failover, reprotect, failback, a recovery plan)',
    )
    .action(async (o) => {
      const files = Number(o.files);
      if (!Number.isInteger(files) || files < 1)
        throw new Error(`--files '${o.files}' is not a positive integer`);
      const r = await runCaptureDrill({
        workDir: o.workDir,
        diskBytes: parseSize(o.diskSize),
        files,
        logger: createLogger(process.env.REBOUND_LOG_LEVEL ?? 'warn'),
        say: (l) => console.log(l),
      });
      if (!r.ok || !o.vm) {
        process.exitCode = r.ok ? 0 : 1;
        return;
      }
      console.log('');
      console.log(
        'recovery cycle with QEMU VMs (TCG): failover, reprotect, failback; a replication group and a recovery plan',
      );
      const work = mkdtempSync(join(o.workDir ?? tmpdir(), 'rebound-recovery-drill-'));
      const ok = await runRecoveryDrill({ workDir: work, say: (l) => console.log(l) });
      if (ok) rmSync(work, { recursive: true, force: true });
      else console.log(`work dir kept for inspection: ${work}`);
      process.exitCode = ok ? 0 : 1;
    });
}
