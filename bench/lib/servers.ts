// The two NBD servers under test, each started as its own child process on a
// fresh sparse image: `nbdkit file` and `rebound agent serve` (capture on).
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SERVICE_NODE_FLAGS } from '../../src/cli/service-memory.js';
import { exited, freePort, run, stopChild, Tail, waitExit, waitFor } from './proc.js';
import { type RssPeak, RssSampler } from './rss.js';

/**
 * `plain` (with --plain): Rebound's NBD server over the file without capture; `floor`
 * (with --floor): the least NBD server Node can be, over the file.
 */
export type ServerKind = 'nbdkit' | 'rebound' | 'plain' | 'floor';

/** The rebound CLI, compiled next to this bench (dist/src/cli/main.js). */
export const REBOUND_CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
let reboundCli = REBOUND_CLI;

/**
 * Runs every agent of this bench from a private copy of dist/src (and the native addon),
 * so a rebuild of the project during a long run cannot change or break the agent under test.
 * node_modules is shared through a symlink. Returns the copied CLI's path.
 */
export function snapshotRebound(dir: string): string {
  const repo = fileURLToPath(new URL('../../../', import.meta.url));
  mkdirSync(join(dir, 'dist'), { recursive: true });
  cpSync(join(repo, 'dist', 'src'), join(dir, 'dist', 'src'), { recursive: true });
  mkdirSync(join(dir, 'build', 'Release'), { recursive: true });
  const addon = join('build', 'Release', 'rebound_fileops.node');
  copyFileSync(join(repo, addon), join(dir, addon));
  copyFileSync(join(repo, 'package.json'), join(dir, 'package.json'));
  symlinkSync(join(repo, 'node_modules'), join(dir, 'node_modules'));
  reboundCli = join(dir, 'dist', 'src', 'cli', 'main.js');
  return reboundCli;
}

export interface StopResult {
  rss: RssPeak;
  /** Exited by itself within the grace period after SIGTERM, with code 0. */
  clean: boolean;
  exit: string;
}

export interface BenchServer {
  kind: ServerKind;
  url: string;
  pid: number;
  child: ChildProcess;
  stderr: () => string;
  /** Last RSS sample, then SIGTERM and wait (SIGKILL after a grace period). */
  stop: () => Promise<StopResult>;
}

function describeExit(child: ChildProcess): string {
  return child.signalCode ? `signal ${child.signalCode}` : `code ${child.exitCode}`;
}

function wrap(kind: ServerKind, child: ChildProcess, url: string, err: Tail): BenchServer {
  const sampler = new RssSampler(child.pid!).start();
  return {
    kind,
    url,
    pid: child.pid!,
    child,
    stderr: () => err.toString(),
    stop: async () => {
      const rss = await sampler.stop();
      const inTime = await stopChild(child, 'SIGTERM', 60_000);
      return { rss, clean: inTime && child.exitCode === 0, exit: describeExit(child) };
    },
  };
}

async function nbdinfoOk(url: string): Promise<boolean> {
  try {
    await run('nbdinfo', ['--size', url], { timeoutMs: 5_000 });
    return true;
  } catch {
    return false;
  }
}

/** `nbdkit file` on `image`, TCP on 127.0.0.1, ready once nbdinfo answers. */
export async function startNbdkit(image: string): Promise<BenchServer> {
  let lastError = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const args = ['--exit-with-parent', '-f', '-i', '127.0.0.1', '-p', String(port), 'file', image];
    const child = spawn('nbdkit', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const err = new Tail();
    child.stderr!.on('data', (d) => err.push(d));
    const url = `nbd://127.0.0.1:${port}`;
    try {
      await waitFor('nbdkit to answer nbdinfo', async () => {
        if (exited(child))
          throw new Error(`nbdkit exited (${describeExit(child)}): ${err.toString().trim()}`);
        return nbdinfoOk(url);
      });
      return wrap('nbdkit', child, url, err);
    } catch (e) {
      lastError = (e as Error).message;
      await stopChild(child, 'SIGKILL', 5_000);
    }
  }
  throw new Error(`cannot start nbdkit: ${lastError}`);
}

/** `rebound agent serve` on `image` with capture into `dataDir`, ready at its "agent ready" line. */
export function startRebound(image: string, dataDir: string, logLimit: string): Promise<BenchServer> {
  // REBOUND_BENCH_CPU_PROF=DIR: the agent writes a V8 CPU profile into DIR at exit.
  const prof = process.env.REBOUND_BENCH_CPU_PROF;
  const args = [
    ...SERVICE_NODE_FLAGS,
    ...(prof ? ['--cpu-prof', '--cpu-prof-dir', prof] : []),
    reboundCli,
    'agent',
    'serve',
    '--data-dir',
    dataDir,
    '--disk',
    `disk0=${image}`,
    '--listen',
    '127.0.0.1:0',
    '--log-limit',
    logLimit,
  ];
  return startNodeServer('rebound', 'the rebound agent', args, /agent ready: nbd:\/\/127\.0\.0\.1:(\d+)/);
}

/** Rebound's NBD server without capture (bench/plain-nbd-server.ts), ready at its "plain ready" line. */
export function startPlain(image: string): Promise<BenchServer> {
  return startBenchScript('plain', 'the plain NBD server', 'plain-nbd-server.js', image);
}

/** The least NBD server in Node (bench/minimal-nbd-server.ts), ready at its "floor ready" line. */
export function startFloor(image: string): Promise<BenchServer> {
  return startBenchScript('floor', 'the least NBD server', 'minimal-nbd-server.js', image);
}

/**
 * One of bench/'s own servers over `image`, with the agent's Node flags (so that they differ
 * from it by what they do per request only), ready at its "KIND ready: nbd://..." line.
 */
function startBenchScript(kind: 'plain' | 'floor', what: string, file: string, image: string) {
  const script = fileURLToPath(new URL(`../${file}`, import.meta.url));
  const ready = new RegExp(`${kind} ready: nbd://127\\.0\\.0\\.1:(\\d+)`);
  return startNodeServer(kind, what, [...SERVICE_NODE_FLAGS, script, image], ready);
}

/** Runs `node ARGS` and waits (30 s at most) for `ready` on its stdout, whose group 1 is the port. */
async function startNodeServer(
  kind: ServerKind,
  what: string,
  args: string[],
  ready: RegExp,
): Promise<BenchServer> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const err = new Tail();
  let out = '';
  child.stderr!.on('data', (d) => err.push(d));
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('not ready after 30 s')), 30_000);
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
        reject(new Error(`exited (${describeExit(child)}) before it was ready`));
      });
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    child.stdout!.resume(); // keep draining stdout
    return wrap(kind, child, `nbd://127.0.0.1:${port}`, err);
  } catch (e) {
    if (!exited(child)) {
      child.kill('SIGKILL');
      await waitExit(child);
    }
    throw new Error(`cannot start ${what}: ${(e as Error).message}: ${err.toString().trim()}`);
  }
}

export interface CaptureSummary {
  records: number;
  logBytes: number;
  writes: number;
  writeBytes: number;
  zeroes: number;
  trims: number;
  flushMarkers: number;
  resyncRegions: number;
  stoppedCleanly: boolean;
}

/** What the agent captured (`rebound agent log --json`, run after the agent stopped). */
export async function captureSummary(dataDir: string): Promise<CaptureSummary> {
  const r = await run(process.execPath, [reboundCli, 'agent', 'log', '--data-dir', dataDir, '--json'], {
    timeoutMs: 600_000,
  });
  const s = JSON.parse(r.stdout) as {
    clean: boolean;
    log: { records: number; bytes: number; flushMarkers: number };
    disks: { writes: number; writeBytes: number; zeroes: number; trims: number; resyncRequired: unknown[] }[];
  };
  const sum = (f: (d: (typeof s.disks)[number]) => number) => s.disks.reduce((a, d) => a + f(d), 0);
  return {
    records: s.log.records,
    logBytes: s.log.bytes,
    writes: sum((d) => d.writes),
    writeBytes: sum((d) => d.writeBytes),
    zeroes: sum((d) => d.zeroes),
    trims: sum((d) => d.trims),
    flushMarkers: s.log.flushMarkers,
    resyncRegions: sum((d) => d.resyncRequired.length),
    stoppedCleanly: s.clean,
  };
}

/** Export flags as a client sees them (nbdinfo --json), for the report header. */
export async function exportFlags(url: string): Promise<string> {
  try {
    const r = await run('nbdinfo', ['--json', url], { timeoutMs: 10_000 });
    const info = JSON.parse(r.stdout) as { exports?: Record<string, unknown>[] };
    const e = info.exports?.[0] ?? {};
    const flags = Object.entries(e)
      .filter(([k, v]) => /^(can_|is_)/.test(k) && v === true)
      .map(([k]) => k);
    const sizes = ['block_size_minimum', 'block_size_preferred', 'block_size_maximum']
      .filter((k) => typeof e[k] === 'number')
      .map((k) => `${k.replace('block_size_', 'bs_')}=${e[k]}`);
    const contexts = Array.isArray(e.contexts) ? [`contexts=${(e.contexts as string[]).join(',')}`] : [];
    return [...flags, ...sizes, ...contexts].join(' ');
  } catch (err) {
    return `nbdinfo --json failed: ${(err as Error).message}`;
  }
}
