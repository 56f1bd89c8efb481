// `rebound drill`: the whole job on one machine with the embedded defaults.
import type { Command } from 'commander';
import { runCaptureDrill } from '../drill/capture-drill.js';
import { createLogger } from '../util/logger.js';
import { parseSize } from '../util/size.js';

export function registerDrillCommand(program: Command): void {
  program
    .command('drill')
    .description('run a disaster-recovery drill on this machine (needs root, nbdfuse, e2fsprogs)')
    .option('--work-dir <dir>', 'where images and state go (default: a new temporary dir)')
    .option('--disk-size <size>', 'size of the protected disk', '256M')
    .option('--files <n>', 'files to write into the file system', '300')
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
      process.exitCode = r.ok ? 0 : 1;
    });
}
