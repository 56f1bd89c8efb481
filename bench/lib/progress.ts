// Polls two sequence numbers while a benchmark runs: the agent's acknowledged-through and
// the master target's applied-through. Each poll is one small read (agent.sock /status, the
// replica's state file), so polling costs the components under test next to nothing.
import { performance } from 'node:perf_hooks';
import { run } from './proc.js';
import type { SeqSample } from './rpo.js';

export class ProgressSampler {
  readonly agent: SeqSample[] = [];
  readonly mt: SeqSample[] = [];
  private timer: NodeJS.Timeout | undefined;
  private busy = { agent: false, mt: false };

  constructor(
    private readonly readAgent: () => Promise<number>,
    private readonly readMt: () => Promise<number>,
    readonly intervalMs = 25,
  ) {}

  start(): this {
    this.timer = setInterval(() => {
      void this.poll('agent', this.readAgent, this.agent);
      void this.poll('mt', this.readMt, this.mt);
    }, this.intervalMs);
    return this;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async poll(which: 'agent' | 'mt', read: () => Promise<number>, into: SeqSample[]) {
    if (this.busy[which]) return;
    this.busy[which] = true;
    try {
      const t0 = performance.now();
      const seq = await read();
      // The value was read somewhere during the call: take the middle.
      into.push({ t: (t0 + performance.now()) / 2, seq });
    } catch {
      // a component restarting: no sample this time
    } finally {
      this.busy[which] = false;
    }
  }
}

/** TCP bytes sent so far on loopback connections to `port` (kernel TCP_INFO, via ss). */
export async function tcpBytesSentTo(port: number): Promise<number> {
  const r = await run('ss', ['-tinH', 'state', 'established', `( dport = :${port} )`], { timeoutMs: 10_000 });
  let sum = 0;
  for (const m of r.stdout.matchAll(/bytes_sent:(\d+)/g)) sum += Number(m[1]);
  return sum;
}
