// The whole replication path for a benchmark: master target, process server and agent,
// each its own child process on 127.0.0.1 (mutual TLS), started from a private copy of
// dist/src; their resident memory sampled; the agent's and the master target's status
// polled until a copy has reached the replica. Plus the test images: sparse files with
// random data in extents, and changes written behind the agent's back.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomFill } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { open, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { callAgent } from '../../src/agent/control-server.js';
import type { ResyncStatus } from '../../src/agent/resync.js';
import { SERVICE_NODE_FLAGS } from '../../src/cli/service-memory.js';
import { callMasterTarget } from '../../src/master-target/control-server.js';
import type { MachineStatusJson } from '../../src/master-target/replication-status.js';
import { initCa, issueCert } from '../../src/pki/ca.js';
import { BlockStore } from '../../src/storage/block-store.js';
import { exited, stopChild, Tail, waitExit } from './proc.js';
import { type RssPeak, RssSampler } from './rss.js';

const MiB = 2 ** 20;
export const BLOCK = 64 * 1024;

export interface Component {
  name: 'agent' | 'process-server' | 'master-target';
  pid: number;
  child: ChildProcess;
  /** The port it listens on (NBD for the agent). */
  port: number;
  stderr: () => string;
  /** Peak RSS so far, without stopping. */
  rss: () => RssPeak;
  /** Last RSS sample, SIGTERM and wait (SIGKILL after 60 s). */
  stop: () => Promise<{ rss: RssPeak; clean: boolean }>;
}

/** Spawns `node CLI ...args` and waits for the line `ready` matches (its first group is the port). */
async function startProc(
  cli: string,
  name: Component['name'],
  args: string[],
  ready: RegExp,
): Promise<Component> {
  const prof = process.env.REBOUND_BENCH_CPU_PROF;
  // REBOUND_BENCH_CPU_PROF=DIR: each component writes a V8 CPU profile into DIR/<component>/.
  const node = prof ? ['--cpu-prof', '--cpu-prof-dir', join(prof, name)] : [];
  const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, ...node, cli, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, REBOUND_LOG_LEVEL: process.env.REBOUND_LOG_LEVEL ?? 'info' },
  });
  const err = new Tail();
  child.stderr!.on('data', (d) => err.push(d));
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
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited (${signal ?? code}) before it was ready`));
      });
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    child.stdout!.resume();
    const sampler = new RssSampler(child.pid!).start();
    return {
      name,
      pid: child.pid!,
      child,
      port,
      stderr: () => err.toString(),
      rss: () => sampler.current,
      stop: async () => {
        const rss = await sampler.stop();
        const inTime = await stopChild(child, 'SIGTERM', 60_000);
        return { rss, clean: inTime && child.exitCode === 0 };
      },
    };
  } catch (e) {
    if (!exited(child)) {
      child.kill('SIGKILL');
      await waitExit(child);
    }
    throw new Error(
      `cannot start the ${name}: ${(e as Error).message}: ${err.toString().trim().slice(-3000)}`,
    );
  }
}

export interface AgentStatus {
  machineId: string;
  nextSeq: number;
  disks: { id: number; name: string; resyncRequired: unknown[] }[];
  replication?: { resync: ResyncStatus };
}

export interface Replicated {
  agent: AgentStatus;
  mt: MachineStatusJson;
  /** From the start given to waitReplicated until both statuses said so. */
  seconds: number;
}

/**
 * One replication path: a CA and certificates, a master target and a process server
 * (started at once), and agents started on demand. Everything lives under `dir`.
 */
export class Stack {
  private readonly tls: string;
  agent: Component | undefined;
  private constructor(
    readonly dir: string,
    private readonly cli: string,
    readonly mt: Component,
    readonly ps: Component,
    tls: string,
    private readonly agentExtra: string[],
  ) {
    this.tls = tls;
  }

  static async start(dir: string, cli: string, agentExtra: string[] = []): Promise<Stack> {
    mkdirSync(dir, { recursive: true });
    const ca = join(dir, 'ca');
    const tls = join(dir, 'tls');
    await initCa(ca);
    await issueCert(ca, { role: 'agent', name: 'a1', outDir: tls });
    await issueCert(ca, { role: 'process-server', name: 'ps1', outDir: tls });
    await issueCert(ca, { role: 'master-target', name: 'mt1', outDir: tls });
    const mt = await startProc(
      cli,
      'master-target',
      [
        'master-target',
        'start',
        '--listen',
        '127.0.0.1:0',
        '--data-dir',
        join(dir, 'mt'),
        '--retention-dir',
        join(dir, 'retention'),
        '--tls-dir',
        tls,
        '--name',
        'mt1',
      ],
      /master target ready: 127\.0\.0\.1:(\d+)/,
    );
    let ps: Component;
    try {
      ps = await startProc(
        cli,
        'process-server',
        [
          'process-server',
          'start',
          '--listen',
          '127.0.0.1:0',
          '--data-dir',
          join(dir, 'ps'),
          '--tls-dir',
          tls,
          '--name',
          'ps1',
          '--master-target',
          `127.0.0.1:${mt.port}`,
        ],
        /process server ready: 127\.0\.0\.1:(\d+)/,
      );
    } catch (e) {
      await mt.stop();
      throw e;
    }
    return new Stack(dir, cli, mt, ps, tls, agentExtra);
  }

  get mtDataDir(): string {
    return join(this.dir, 'mt');
  }

  /** `rebound agent serve` of one disk, shipping to this stack's process server. */
  async startAgent(dataDir: string, image: string): Promise<Component> {
    if (this.agent) throw new Error('an agent is already running');
    this.agent = await startProc(
      this.cli,
      'agent',
      [
        'agent',
        'serve',
        '--listen',
        '127.0.0.1:0',
        '--data-dir',
        dataDir,
        '--disk',
        `disk0=${image}`,
        '--process-server',
        `127.0.0.1:${this.ps.port}`,
        '--tls-dir',
        this.tls,
        '--name',
        'a1',
        '--app-consistent-minutes',
        '0',
        ...this.agentExtra,
      ],
      /agent ready: nbd:\/\/127\.0\.0\.1:(\d+)/,
    );
    return this.agent;
  }

  async stopAgent(): Promise<{ rss: RssPeak; clean: boolean } | undefined> {
    const a = this.agent;
    this.agent = undefined;
    return a?.stop();
  }

  /** Stops the agent (if any), the process server, then the master target. */
  async stop(): Promise<Record<Component['name'], { rss: RssPeak; clean: boolean } | undefined>> {
    const agent = await this.stopAgent().catch(() => undefined);
    const ps = await this.ps.stop().catch(() => undefined);
    const mt = await this.mt.stop().catch(() => undefined);
    return { agent, 'process-server': ps, 'master-target': mt };
  }

  /** SIGKILLs everything still running (after an error or an interrupt). */
  async kill(): Promise<void> {
    for (const c of [this.agent, this.ps, this.mt]) {
      if (c && !exited(c.child)) {
        c.child.kill('SIGKILL');
        await waitExit(c.child);
      }
    }
  }

  async agentStatus(dataDir: string): Promise<AgentStatus> {
    const r = await callAgent(dataDir, 'GET', '/status');
    if (r.status !== 200) throw new Error(`agent status answered ${r.status}`);
    return r.body as unknown as AgentStatus;
  }

  async mtStatus(machineId: string): Promise<MachineStatusJson | undefined> {
    const r = await callMasterTarget(
      this.mtDataDir,
      'GET',
      `/status?machine=${encodeURIComponent(machineId)}`,
    );
    if (r.status !== 200) return undefined;
    return (r.body.machines as MachineStatusJson[] | undefined)?.[0];
  }

  /** The replica image of the agent's disk `diskId`. */
  replicaPath(machineId: string, diskId: number): string {
    return join(this.mtDataDir, 'machines', machineId, `disk-${diskId}.img`);
  }

  /**
   * Waits until the agent's resync is idle with at least `minPasses` passes and no
   * resync-required region, and the master target has applied the agent's last seq with
   * no resync range open. Returns the statuses and the seconds since `since` (a
   * `process.hrtime.bigint()` value).
   *
   * Only the master target is polled (every `pollMs`) until it looks done: protected, no
   * resync range open, applied through at least `fromSeq` (the agent's next seq before
   * the copy was asked for, so its start marker is in). Then the agent is asked once to
   * confirm. Polling the agent itself would cost it CPU: its status lists the dirty
   * bitmap's regions, a scan of the whole bitmap (1.6 million bits for 100 GiB).
   */
  async waitReplicated(
    dataDir: string,
    machineId: string,
    want: { minPasses: number; fromSeq: number },
    since: bigint,
    timeoutMs: number,
    pollMs = 100,
  ): Promise<Replicated> {
    const deadline = Date.now() + timeoutMs;
    let last = 'the master target has not seen the machine yet';
    for (;;) {
      const m = await this.mtStatus(machineId);
      if (m?.protected && m.resyncOpenSince === null && m.appliedThrough >= want.fromSeq) {
        const a = await this.agentStatus(dataDir);
        const r = a.replication?.resync;
        const idle =
          r?.state === 'idle' &&
          r.passes >= want.minPasses &&
          a.disks.every((d) => d.resyncRequired.length === 0);
        if (idle && m.appliedThrough >= a.nextSeq - 1) {
          return { agent: a, mt: m, seconds: Number(process.hrtime.bigint() - since) / 1e9 };
        }
        last = `agent next seq ${a.nextSeq}, resync ${JSON.stringify(r)}; `;
      }
      if (m) {
        last +=
          `master target applied through ${m.appliedThrough}, protected ${m.protected}, ` +
          `resync open since ${m.resyncOpenSince}`;
      }
      if (Date.now() > deadline) throw new Error(`not replicated after ${timeoutMs / 1000} s: ${last}`);
      await new Promise((res) => setTimeout(res, pollMs));
      last = '';
    }
  }
}

/** The machine id an agent wrote into its data dir. */
export function machineIdOf(dataDir: string): string {
  return (JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8')) as { machineId: string }).machineId;
}

/** A small deterministic generator (mulberry32), so every run lays out the same images. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `total` cut into `parts` random pieces, each a multiple of `align` (total must be one). */
function split(total: number, parts: number, rand: () => number, align: number): number[] {
  const w = Array.from({ length: parts }, () => 0.25 + rand() * 1.5);
  const sum = w.reduce((a, b) => a + b, 0);
  const out = w.map((x) => Math.floor((total * x) / sum / align) * align);
  out[parts - 1]! += total - out.reduce((a, b) => a + b, 0);
  return out;
}

export interface Extent {
  offset: number;
  length: number;
}

async function fillRandom(buf: Buffer, n: number): Promise<void> {
  await new Promise<void>((res, rej) => randomFill(buf, 0, n, (e) => (e ? rej(e) : res())));
}

/**
 * A sparse image of `size` bytes holding `dataBytes` of random (incompressible, never
 * zero) data in extents of about `extentBytes` (between a quarter of it and 1.75x, 4 KiB
 * aligned like a file system's), spread over the whole disk with holes between them.
 */
export async function makeImage(
  path: string,
  size: number,
  dataBytes: number,
  extentBytes: number,
  seed: number,
): Promise<Extent[]> {
  const align = 4096;
  if (dataBytes > size || dataBytes % align || size % align)
    throw new Error(`cannot put ${dataBytes} bytes of data in a ${size}-byte image (4 KiB multiples)`);
  await writeFile(path, '');
  await truncate(path, size);
  if (dataBytes === 0) return [];
  const rand = prng(seed);
  const count = Math.max(1, Math.round(dataBytes / extentBytes));
  const lengths = split(dataBytes, count, rand, align);
  const gaps = split(size - dataBytes, count + 1, rand, align);
  const extents: Extent[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    at += gaps[i]!;
    if (lengths[i]! > 0) extents.push({ offset: at, length: lengths[i]! });
    at += lengths[i]!;
  }
  const fh = await open(path, 'r+');
  try {
    const buf = Buffer.alloc(4 * MiB);
    for (const e of extents) {
      for (let off = 0; off < e.length; off += buf.length) {
        const n = Math.min(buf.length, e.length - off);
        await fillRandom(buf, n);
        await fh.write(buf, 0, n, e.offset + off);
      }
    }
  } finally {
    await fh.close();
  }
  return extents;
}

/**
 * Writes fresh random data over `fraction` of the image's 64 KiB blocks, in runs of
 * `run` blocks at random places (in data and in holes alike). Returns the blocks changed.
 */
export async function changeBlocks(
  path: string,
  size: number,
  fraction: number,
  run: number,
  seed: number,
): Promise<number> {
  const rand = prng(seed);
  const blocks = Math.floor(size / BLOCK);
  const target = Math.ceil(blocks * fraction);
  const changed = new Set<number>();
  const buf = Buffer.alloc(BLOCK);
  const fh = await open(path, 'r+');
  try {
    while (changed.size < target) {
      const first = Math.floor(rand() * Math.max(1, blocks - run));
      for (let b = first; b < first + run && changed.size < target; b++) {
        if (changed.has(b)) continue;
        changed.add(b);
        await fillRandom(buf, BLOCK);
        await fh.write(buf, 0, BLOCK, b * BLOCK);
      }
    }
  } finally {
    await fh.close();
  }
  return changed.size;
}

/** The data extents of a file (SEEK_DATA/SEEK_HOLE), in order. */
function dataExtents(store: BlockStore): Extent[] {
  const out: Extent[] = [];
  let at = 0;
  while (at < store.size) {
    const ext = store.extents(at, store.size - at, 4096);
    if (ext.length === 0) break;
    for (const e of ext) if (!e.hole) out.push({ offset: e.offset, length: e.length });
    const last = ext.at(-1)!;
    at = last.offset + last.length;
  }
  return out;
}

/**
 * Compares two (sparse) images byte for byte, reading only where either holds data:
 * a 100 GiB image with 1 GiB of data is compared in seconds. Returns undefined when
 * equal, else where they first differ.
 */
export async function compareImages(a: string, b: string): Promise<string | undefined> {
  const sa = await BlockStore.open(a, { readOnly: true });
  const sb = await BlockStore.open(b, { readOnly: true });
  try {
    if (sa.size !== sb.size) return `sizes differ: ${sa.size} and ${sb.size} bytes`;
    // The union of both files' data extents.
    const all = [...dataExtents(sa), ...dataExtents(sb)].sort((x, y) => x.offset - y.offset);
    const ranges: Extent[] = [];
    for (const e of all) {
      const last = ranges.at(-1);
      if (last && e.offset <= last.offset + last.length) {
        last.length = Math.max(last.length, e.offset + e.length - last.offset);
      } else ranges.push({ ...e });
    }
    const ba = Buffer.alloc(16 * MiB);
    const bb = Buffer.alloc(16 * MiB);
    for (const r of ranges) {
      for (let at = r.offset; at < r.offset + r.length; at += ba.length) {
        const n = Math.min(ba.length, r.offset + r.length - at);
        await sa.readInto(ba.subarray(0, n), at);
        await sb.readInto(bb.subarray(0, n), at);
        if (!ba.subarray(0, n).equals(bb.subarray(0, n))) return `they differ in [${at}, +${n})`;
      }
    }
    return undefined;
  } finally {
    await sa.close();
    await sb.close();
  }
}
