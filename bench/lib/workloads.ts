// The client workloads, each run in child processes against an NBD URL.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { exited, run, stopChild, Tail, waitExit, waitFor } from './proc.js';

export interface Measurement {
  /** The headline number: MB/s (1 MB = 10^6 bytes) or IOPS. */
  value: number;
  seconds: number;
  /** Free-form details for the per-run log. */
  detail: string;
}

const MB = 1e6;

/** `nbdcopy [--flush] SRC nbd://...`: MB/s of the source size over nbdcopy's wall time. */
export async function nbdcopyInto(
  src: string,
  bytes: number,
  url: string,
  flush: boolean,
): Promise<Measurement> {
  const r = await run('nbdcopy', [...(flush ? ['--flush'] : []), src, url]);
  return { value: bytes / MB / r.seconds, seconds: r.seconds, detail: `${r.seconds.toFixed(2)} s` };
}

/** `qemu-img convert -n -f raw -O raw SRC nbd://...` (qemu-img flushes at close). */
export async function qemuImgConvertInto(src: string, bytes: number, url: string): Promise<Measurement> {
  const r = await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, url]);
  return { value: bytes / MB / r.seconds, seconds: r.seconds, detail: `${r.seconds.toFixed(2)} s` };
}

export interface FioJob {
  rw: 'randwrite' | 'write';
  bs: string;
  size: string;
  runtimeSec: number;
  iodepth: number;
  /** Headline: 'iops' or 'mbps'. */
  report: 'iops' | 'mbps';
}

interface FioJson {
  jobs: {
    write: {
      iops: number;
      bw_bytes: number;
      io_bytes: number;
      runtime: number;
      clat_ns?: { percentile?: Record<string, number> };
    };
  }[];
}

/**
 * ext4 through nbdfuse + loop: `nbdfuse DIR URL &`, mkfs.ext4 on DIR/nbd, mount -o loop,
 * one fio job on it, then umount and `fusermount3 -u`. Everything is undone in `finally`.
 */
export async function fioOnExt4(url: string, workDir: string, job: FioJob): Promise<Measurement> {
  const fuseDir = join(workDir, 'fuse');
  const mnt = join(workDir, 'mnt');
  mkdirSync(fuseDir, { recursive: true });
  mkdirSync(mnt, { recursive: true });
  const fuse = spawn('nbdfuse', [fuseDir, url], { stdio: ['ignore', 'ignore', 'pipe'] });
  const fuseErr = new Tail();
  fuse.stderr!.on('data', (d) => fuseErr.push(d));
  let mounted = false;
  try {
    await waitFor('nbdfuse to expose DIR/nbd', () => {
      if (exited(fuse)) throw new Error(`nbdfuse exited early: ${fuseErr.toString().trim()}`);
      return existsSync(join(fuseDir, 'nbd'));
    });
    await run('mkfs.ext4', ['-q', '-F', join(fuseDir, 'nbd')], { timeoutMs: 600_000 });
    await run('mount', ['-o', 'loop', join(fuseDir, 'nbd'), mnt], { timeoutMs: 60_000 });
    mounted = true;
    const args = [
      '--name=bench',
      `--directory=${mnt}`,
      `--size=${job.size}`,
      `--runtime=${job.runtimeSec}`,
      '--time_based',
      '--ioengine=libaio',
      '--direct=1',
      `--iodepth=${job.iodepth}`,
      `--rw=${job.rw}`,
      `--bs=${job.bs}`,
      '--end_fsync=1',
      '--output-format=json',
    ];
    const r = await run('fio', args, { timeoutMs: (job.runtimeSec + 600) * 1000 });
    const json = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as FioJson;
    const w = json.jobs[0]!.write;
    const p99 = w.clat_ns?.percentile?.['99.000000'];
    const value = job.report === 'iops' ? w.iops : w.bw_bytes / MB;
    const detail =
      `${w.iops.toFixed(0)} IOPS, ${(w.bw_bytes / MB).toFixed(1)} MB/s, ` +
      `${(w.io_bytes / 2 ** 20).toFixed(0)} MiB in ${(w.runtime / 1000).toFixed(1)} s` +
      (p99 !== undefined ? `, p99 clat ${(p99 / 1e6).toFixed(2)} ms` : '') +
      `, fio wall ${r.seconds.toFixed(1)} s`;
    await run('umount', [mnt], { timeoutMs: 300_000 });
    mounted = false;
    await run('fusermount3', ['-u', fuseDir], { timeoutMs: 60_000 });
    const gone = await Promise.race([waitExit(fuse).then(() => true), sleepFalse(60_000)]);
    if (!gone) throw new Error('nbdfuse did not exit within 60 s of fusermount3 -u');
    return { value, seconds: w.runtime / 1000, detail };
  } finally {
    if (mounted) await run('umount', ['-l', mnt], { okCodes: [0, 1, 32], timeoutMs: 60_000 }).catch(() => {});
    if (!exited(fuse)) {
      await run('fusermount3', ['-u', '-z', fuseDir], { okCodes: [0, 1], timeoutMs: 30_000 }).catch(() => {});
      await stopChild(fuse, 'SIGTERM', 10_000);
    }
  }
}

function sleepFalse(ms: number): Promise<false> {
  return new Promise((r) => setTimeout(() => r(false), ms));
}
