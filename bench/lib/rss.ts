// Resident memory of a server process, sampled from /proc/PID/status.
import { readFile } from 'node:fs/promises';

export interface RssPeak {
  /** Largest VmRSS seen by the sampler, bytes. */
  sampledPeak: number;
  /** The kernel's high-water mark (VmHWM) at the last sample, bytes. */
  hwm: number;
  samples: number;
}

async function readStatus(pid: number): Promise<{ rss: number; hwm: number } | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return undefined; // the process is gone
  }
}

/** Samples VmRSS (and VmHWM) of `pid` every `intervalMs` until stopped. */
export class RssSampler {
  private peak: RssPeak = { sampledPeak: 0, hwm: 0, samples: 0 };
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private readonly pid: number,
    private readonly intervalMs = 100,
  ) {}

  start(): this {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
    return this;
  }

  private async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const s = await readStatus(this.pid);
      if (s) {
        this.peak.samples++;
        this.peak.sampledPeak = Math.max(this.peak.sampledPeak, s.rss);
        this.peak.hwm = Math.max(this.peak.hwm, s.hwm);
      }
    } finally {
      this.busy = false;
    }
  }

  /** Takes a last sample (call before the process is told to stop) and stops sampling. */
  async stop(): Promise<RssPeak> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    while (this.busy) await new Promise((r) => setTimeout(r, 5));
    await this.sample();
    return { ...this.peak };
  }

  get current(): RssPeak {
    return { ...this.peak };
  }
}

export function maxPeak(a: RssPeak | undefined, b: RssPeak | undefined): RssPeak | undefined {
  if (!a) return b;
  if (!b) return a;
  return {
    sampledPeak: Math.max(a.sampledPeak, b.sampledPeak),
    hwm: Math.max(a.hwm, b.hwm),
    samples: a.samples + b.samples,
  };
}

export interface CpuTime {
  user: number;
  sys: number;
}

/** User and system CPU seconds a process has used so far (/proc/PID/stat), if it still runs. */
export async function cpuTime(pid: number, ticksPerSecond = 100): Promise<CpuTime | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)": state is field 3, utime field 14, stime field 15.
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { user: Number(f[11]) / ticksPerSecond, sys: Number(f[12]) / ticksPerSecond };
  } catch {
    return undefined;
  }
}
