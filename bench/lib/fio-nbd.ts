// fio writing straight into an NBD export through its nbd engine (libnbd): no kernel
// client, no file system, so what is measured is the export and what stands behind it.
import { run } from './proc.js';

export interface FioNbdJob {
  rw: 'write' | 'randwrite';
  /** Block size in bytes. */
  bs: number;
  iodepth: number;
  /** Bytes of the export fio writes over (from offset 0). */
  size: number;
  runtimeSec: number;
  /** Bytes per second fio may write (fio's rate=); unlimited when undefined. */
  rate?: number;
  /** fio's buffer_compress_percentage: how much of each block lz4 can remove. */
  compressible: number;
}

export interface FioNbdResult {
  /** Bytes per second and I/Os per second fio saw acknowledged. */
  bw: number;
  iops: number;
  ioBytes: number;
  runtimeSec: number;
  p99LatMs: number | undefined;
  /** Wall time of the fio process, seconds. */
  wall: number;
}

export function fioNbdArgs(uri: string, j: FioNbdJob): string[] {
  return [
    '--name=bench',
    '--ioengine=nbd',
    `--uri=${uri}`,
    `--rw=${j.rw}`,
    `--bs=${j.bs}`,
    `--iodepth=${j.iodepth}`,
    `--size=${j.size}`,
    `--runtime=${j.runtimeSec}`,
    '--time_based',
    `--buffer_compress_percentage=${j.compressible}`,
    '--refill_buffers',
    ...(j.rate ? [`--rate=${j.rate}`] : []),
    '--output-format=json',
  ];
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

export async function fioNbd(uri: string, j: FioNbdJob): Promise<FioNbdResult> {
  const r = await run('fio', fioNbdArgs(uri, j), { timeoutMs: (j.runtimeSec + 300) * 1000 });
  const json = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as FioJson;
  const w = json.jobs[0]!.write;
  const p99 = w.clat_ns?.percentile?.['99.000000'];
  return {
    bw: w.bw_bytes,
    iops: w.iops,
    ioBytes: w.io_bytes,
    runtimeSec: w.runtime / 1000,
    p99LatMs: p99 === undefined ? undefined : p99 / 1e6,
    wall: r.seconds,
  };
}
