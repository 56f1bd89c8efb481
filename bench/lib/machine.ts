// Where a benchmark ran: machine, kernel, file system and tool versions.
import { readFileSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { output, run } from './proc.js';

export interface MachineInfo {
  nproc: number;
  cpu: string;
  kernel: string;
  memGiB: number;
  workFs: string;
  loadAvg: string;
}

export function loadAverage(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}

export async function machineInfo(workDir: string): Promise<MachineInfo> {
  let cpu = 'unknown';
  try {
    cpu = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpu;
  } catch {
    // not Linux
  }
  const nproc = Number(await output('nproc', [], String(availableParallelism())));
  const fsType = await output('stat', ['-f', '-c', '%T', workDir]);
  const device = await output('sh', ['-c', `df --output=source '${workDir}' | tail -1`]);
  return {
    nproc,
    cpu,
    kernel: release(),
    memGiB: totalmem() / 2 ** 30,
    workFs: `${fsType} on ${device}`,
    loadAvg: loadAverage(),
  };
}

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

export async function toolVersions(): Promise<Record<string, string>> {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  const rev = await output('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'], 'no git');
  const dirty = await output('sh', ['-c', `git -C '${REPO}' status --porcelain -- src | head -1`], '');
  return {
    rebound: `${pkg.version} (git ${rev}${dirty && dirty !== 'unavailable' ? ', src modified' : ''})`,
    node: process.version,
    nbdkit: await output('nbdkit', ['--version']),
    nbdcopy: await output('nbdcopy', ['--version']),
    nbdfuse: await output('nbdfuse', ['--version']),
    'qemu-img': await output('qemu-img', ['--version']),
    fio: await output('fio', ['--version']),
    'mkfs.ext4': await output('sh', ['-c', 'mkfs.ext4 -V 2>&1 | head -1']),
  };
}

/**
 * Sequential write of new blocks with fdatasync on the scratch volume (`dd bs=1M
 * conv=fdatasync`), MB/s: what a change log can sustain when every byte must reach the
 * device, as it must once the workload flushes. A server without a journal can beat it
 * when a workload overwrites the same blocks (the page cache absorbs them).
 */
export async function newBlockWriteCeiling(dir: string, mib = 1024): Promise<number> {
  const file = join(dir, 'ceiling.tmp');
  try {
    const r = await run('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${mib}`, 'conv=fdatasync'], {
      timeoutMs: 600_000,
    });
    return (mib * 2 ** 20) / r.seconds / 1e6;
  } finally {
    rmSync(file, { force: true });
  }
}
