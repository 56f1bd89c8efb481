// The whole replication path as three real processes on loopback: `rebound master-target
// start`, `rebound process-server start` and `rebound agent serve` shipping to it, each hop
// over mutual TLS with certificates from a fresh deployment CA, each sampled for RSS and CPU.
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { controlSocketPath } from '../../src/agent/control-server.js';
import { SERVICE_NODE_FLAGS } from '../../src/cli/service-memory.js';
import { mtSocketPath } from '../../src/master-target/control-server.js';
import { initCa, issueCert } from '../../src/pki/ca.js';
import { callUnixJson } from '../../src/util/unix-http.js';
import { exited, stopChild, Tail, waitExit } from './proc.js';
import { type CpuTime, cpuTime, maxPeak, type RssPeak, RssSampler } from './rss.js';

export type ComponentName = 'agent' | 'process server' | 'master target';

interface Component {
  name: ComponentName;
  child: ChildProcess;
  port: number;
  stderr: Tail;
  rss: RssSampler;
  /** RSS of earlier processes of this component (the process server is restarted). */
  pastRss: RssPeak | undefined;
  pastCpu: CpuTime;
}

/** REBOUND_BENCH_CPU_PROF=DIR: each component writes a V8 CPU profile into DIR/<component>/ at exit. */
function cpuProfileArgs(name: ComponentName): string[] {
  const dir = process.env.REBOUND_BENCH_CPU_PROF;
  return dir ? ['--cpu-prof', '--cpu-prof-dir', join(dir, name.replace(' ', '-'))] : [];
}

/** Starts `node CLI ...args` and waits for `ready` on stdout; returns the port it names. */
async function startReady(
  name: ComponentName,
  cli: string,
  args: string[],
  ready: RegExp,
  logFile: string,
  nodeArgs: string[],
): Promise<{ child: ChildProcess; port: number; stderr: Tail }> {
  const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, ...nodeArgs, cli, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, REBOUND_LOG_LEVEL: process.env.REBOUND_LOG_LEVEL ?? 'info' },
  });
  const stderr = new Tail();
  child.stderr!.on('data', (d) => stderr.push(d));
  child.stderr!.pipe(createWriteStream(logFile, { flags: 'a' }));
  let out = '';
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} not ready after 30 s`)), 30_000);
      child.stdout!.on('data', (d) => {
        out += d;
        const m = ready.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      child.once('exit', () => {
        clearTimeout(timer);
        reject(new Error(`${name} exited before it was ready`));
      });
    });
    child.stdout!.resume();
    return { child, port, stderr };
  } catch (e) {
    if (!exited(child)) {
      child.kill('SIGKILL');
      await waitExit(child);
    }
    throw new Error(
      `cannot start the ${name}: ${(e as Error).message}: ${stderr.toString().trim().slice(-2000)}`,
    );
  }
}

export interface StackOptions {
  /** The rebound CLI to run (a snapshot of dist/src/cli/main.js). */
  cli: string;
  work: string;
  diskPath: string;
  compress: 'auto' | 'off';
  /** Agent --log-limit: large, so that a lagging replica never turns changes into resync. */
  logLimit: string;
  /** Extra node options for every component (e.g. --cpu-prof, for profiling). */
  nodeArgs?: string[];
}

export class ReboundStack {
  private readonly components = new Map<ComponentName, Component>();
  machineId = '';
  compress: 'auto' | 'off';

  private constructor(private readonly o: StackOptions) {
    this.compress = o.compress;
  }

  static async start(o: StackOptions): Promise<ReboundStack> {
    const s = new ReboundStack(o);
    try {
      await s.init();
    } catch (e) {
      await s.stop();
      throw e;
    }
    return s;
  }

  private get tls(): string {
    return join(this.o.work, 'tls');
  }

  get agentDataDir(): string {
    return join(this.o.work, 'agent');
  }

  get mtDataDir(): string {
    return join(this.o.work, 'mt');
  }

  /** The agent's NBD export of the disk. */
  get nbdUri(): string {
    return `nbd://127.0.0.1:${this.port('agent')}/d`;
  }

  port(name: ComponentName): number {
    return this.components.get(name)!.port;
  }

  pid(name: ComponentName): number {
    return this.components.get(name)!.child.pid!;
  }

  private async init(): Promise<void> {
    const ca = join(this.o.work, 'ca');
    await initCa(ca);
    await issueCert(ca, { role: 'agent', name: 'bench-agent', outDir: this.tls });
    await issueCert(ca, { role: 'process-server', name: 'bench-ps', outDir: this.tls });
    await issueCert(ca, { role: 'master-target', name: 'bench-mt', outDir: this.tls });
    const w = this.o.work;
    await this.add(
      'master target',
      [
        'master-target',
        'start',
        '--data-dir',
        this.mtDataDir,
        '--retention-dir',
        join(w, 'retention'),
        '--tls-dir',
        this.tls,
        '--name',
        'bench-mt',
        '--listen',
        '127.0.0.1:0',
      ],
      /master target ready: 127\.0\.0\.1:(\d+)/,
    );
    await this.startProcessServer(0);
    await this.add(
      'agent',
      [
        'agent',
        'serve',
        '--data-dir',
        this.agentDataDir,
        '--disk',
        `d=${this.o.diskPath}`,
        '--listen',
        '127.0.0.1:0',
        '--log-limit',
        this.o.logLimit,
        '--process-server',
        `127.0.0.1:${this.port('process server')}`,
        '--tls-dir',
        this.tls,
        '--name',
        'bench-agent',
      ],
      /agent ready: nbd:\/\/127\.0\.0\.1:(\d+)/,
    );
    this.machineId = JSON.parse(readFileSync(join(this.agentDataDir, 'agent.json'), 'utf8')).machineId;
    // A new disk is first copied whole (initial replication); measure once that is over.
    const t0 = Date.now();
    while (!(await this.initialCopyDone())) {
      if (Date.now() - t0 > 600_000) throw new Error('the initial replication did not end within 600 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    this.initialCopySec = (Date.now() - t0) / 1000;
  }

  /** Seconds the initial replication of the (empty, sparse) disk took after the agent started. */
  initialCopySec = 0;

  private async startProcessServer(port: number): Promise<void> {
    await this.add(
      'process server',
      [
        'process-server',
        'start',
        '--data-dir',
        join(this.o.work, 'ps'),
        '--tls-dir',
        this.tls,
        '--name',
        'bench-ps',
        '--listen',
        `127.0.0.1:${port}`,
        '--master-target',
        `127.0.0.1:${this.port('master target')}`,
        '--compress',
        this.compress,
      ],
      /process server ready: 127\.0\.0\.1:(\d+)/,
    );
  }

  private async add(name: ComponentName, args: string[], ready: RegExp): Promise<void> {
    // A restarted component keeps the peaks and CPU time of its earlier processes.
    const before = this.components.get(name);
    const logs = join(this.o.work, 'logs');
    mkdirSync(logs, { recursive: true });
    const { child, port, stderr } = await startReady(
      name,
      this.o.cli,
      args,
      ready,
      join(logs, `${name.replace(' ', '-')}.log`),
      [...(this.o.nodeArgs ?? []), ...cpuProfileArgs(name)],
    );
    this.components.set(name, {
      name,
      child,
      port,
      stderr,
      rss: new RssSampler(child.pid!).start(),
      pastRss: before?.pastRss,
      pastCpu: before?.pastCpu ?? { user: 0, sys: 0 },
    });
  }

  /** Restarts the process server on its port with another --compress (its cache stays). */
  async restartProcessServer(compress: 'auto' | 'off'): Promise<void> {
    const ps = this.components.get('process server')!;
    const cpu = await cpuTime(ps.child.pid!);
    await ps.rss.stop();
    await stopChild(ps.child, 'SIGTERM', 30_000);
    ps.pastRss = maxPeak(ps.pastRss, ps.rss.current);
    if (cpu) ps.pastCpu = { user: ps.pastCpu.user + cpu.user, sys: ps.pastCpu.sys + cpu.sys };
    this.compress = compress;
    await this.startProcessServer(ps.port);
  }

  /** The agent's acknowledged-through seq (its completion watermark), from agent.sock. */
  async agentAcked(): Promise<number> {
    const r = await callUnixJson(controlSocketPath(this.agentDataDir), 'GET', '/status', 'agent');
    return r.body.appliedThrough as number;
  }

  /** The initial copy has run (a resync pass ended) and nothing is left to resync. */
  private async initialCopyDone(): Promise<boolean> {
    const r = await callUnixJson(controlSocketPath(this.agentDataDir), 'GET', '/status', 'agent');
    const resync = (r.body.replication as { resync?: { state: string; passes: number } } | undefined)?.resync;
    if (resync && !(resync.state === 'idle' && resync.passes > 0)) return false;
    return (await this.agentResyncRegions()) === 0;
  }

  /** The agent's disks marked resync required (the log limit was hit): should be none. */
  async agentResyncRegions(): Promise<number> {
    const r = await callUnixJson(controlSocketPath(this.agentDataDir), 'GET', '/status', 'agent');
    const disks = r.body.disks as { resyncRequired: unknown[] }[];
    return disks.reduce((a, d) => a + d.resyncRequired.length, 0);
  }

  /** The master target's applied-through seq: its replica state file, written after each batch. */
  async mtApplied(): Promise<number> {
    try {
      const path = join(this.mtDataDir, 'machines', this.machineId, 'replica-state.json');
      return (JSON.parse(await readFile(path, 'utf8')) as { appliedThrough: number }).appliedThrough;
    } catch {
      return 0; // not created yet, or replaced right now
    }
  }

  /** Sequence numbers of the markers (flush, bookmark) the master target holds. */
  async markerSeqs(): Promise<number[]> {
    const r = await callUnixJson(
      mtSocketPath(this.mtDataDir),
      'GET',
      `/points?machine=${encodeURIComponent(this.machineId)}`,
      'master target',
    );
    return ((r.body.points as { seq: number }[] | undefined) ?? []).map((p) => p.seq).sort((a, b) => a - b);
  }

  /** CPU seconds used so far per component (restarted processes included). */
  async cpu(): Promise<Record<ComponentName, CpuTime>> {
    const out = {} as Record<ComponentName, CpuTime>;
    for (const c of this.components.values()) {
      const now = (await cpuTime(c.child.pid!)) ?? { user: 0, sys: 0 };
      out[c.name] = { user: c.pastCpu.user + now.user, sys: c.pastCpu.sys + now.sys };
    }
    return out;
  }

  rss(): Record<ComponentName, RssPeak | undefined> {
    const out = {} as Record<ComponentName, RssPeak | undefined>;
    for (const c of this.components.values()) out[c.name] = maxPeak(c.pastRss, c.rss.current);
    return out;
  }

  /** The last warnings and errors each component logged, for a failed phase's report. */
  warnings(): string {
    let out = '';
    for (const c of this.components.values()) {
      const lines = c.stderr
        .toString()
        .split('\n')
        .filter((l) => /"level":[56]\d/.test(l) || /"level":4\d/.test(l));
      if (lines.length) out += `\n  ${c.name} warnings (last 5):\n    ${lines.slice(-5).join('\n    ')}`;
    }
    return out;
  }

  /** Stops the agent first (its clean stop ships nothing more), then the others. */
  async stop(): Promise<Record<ComponentName, RssPeak | undefined>> {
    for (const c of this.components.values()) await c.rss.stop();
    const rss = this.rss();
    for (const name of ['agent', 'process server', 'master target'] as const) {
      const c = this.components.get(name);
      if (c) await stopChild(c.child, 'SIGTERM', 30_000);
    }
    return rss;
  }
}
