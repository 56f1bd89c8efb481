// RTO (issue #5): the time from an unplanned failover request to the recovered VM's first guest
// output, for a 1 GiB and a 100 GiB sparse disk, against the plain boot of the same VM. Goal: at
// most 5 s of Rebound's own time on top of the VM's boot, not growing with the disk size.
//
//   npm run build && node dist/bench/rto.js            # default: 1G,100G x 3 runs (~4 min)
//   node dist/bench/rto.js --sizes 64M --runs 1        # smoke run (~40 s)
//
// Everything is the real product driven through the CLI, as `rebound drill` does
// (src/drill/recovery-drill.ts: startRecoveryLab): `rebound server start` with its built-in
// process server and master target and a loop-mounted ext4 retention volume, qemu sites a and
// b, policy gold. For each disk size and run:
//   1. `rebound vm create NAME --site a --disk vda=SIZE` (a sparse image, its agent installed),
//      `rebound protect NAME` (a job, followed with `rebound jobs watch`) until the item is
//      `protected`; `rebound vm start`, until the guest's console shows `REBOUND gen 1 written`.
//   2. The disaster: `rebound vm shutdown NAME --site a --timeout 0` (QEMU stopped at once, like
//      a power loss; --keep-source leaves the source running instead), then a wait until the
//      master target has applied everything (appliedThrough unchanged for 2 s).
//   3. t0 = just before `rebound failover NAME --json` is spawned (unplanned, point latest). The
//      job creates NAME-recovered at site b and powers it on. The bench only watches the
//      recovered VM's console file (a stat every 10 ms, nothing else runs in the meantime): RTO =
//      its first byte - t0. Then `rebound jobs watch` / `jobs show --json` give the job's and
//      its steps' times (server clock = this host's), and machine.json the time QEMU was
//      spawned (QemuSite.poweredOnAt). The recovered guest must then print `REBOUND gen 1 ok`.
//   4. The peer, the VM's plain boot: the same recovered VM (same site, same disk, its agent
//      already running) is stopped (`vm shutdown --timeout 0`) and started again with
//      `rebound vm start`: plain boot = its first console byte of that boot - just before
//      `vm start` was spawned. Both are timed from the spawn of a CLI command, so the CLI's
//      start and the API call are in both, and Rebound's own time = RTO - plain boot.
//   5. The VMs of the run are deleted (with their disks) before the next.
// Everything started is stopped at the end, on an error or on Ctrl-C (VMs and agents from their
// pid files, the server, the loop mount); the scratch dir is removed.
//
// Prints a Markdown report on stdout, progress on stderr. The goal is printed, never asserted.

import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { cli, job, type RecoveryLab, startRecoveryLab } from '../src/drill/recovery-drill.js';
import { loadGuest } from '../src/sites/guest/build.js';
import { QemuSite } from '../src/sites/qemu/qemu-site.js';
import { killSiteProcesses } from '../src/sites/qemu/stop-all.js';
import { parseSize } from '../src/util/size.js';
import { loadAverage, machineInfo } from './lib/machine.js';
import { killRunning, output, run, runBench, sleep } from './lib/proc.js';
import { REBOUND_CLI } from './lib/servers.js';

const GOAL_OWN_S = 5;

const USAGE = `usage: node dist/bench/rto.js [options]
  --sizes LIST     disk sizes, comma list (default 1G,100G; sparse images)
  --runs N         failovers per size (default 3)
  --keep-source    leave the source VM running through the failover and the plain boot
                   (default: it is stopped at once before the failover, like a power loss)
  --dir DIR        where the scratch dir is made (default /var/tmp)
  --json FILE      also write every measurement as JSON
  -h, --help       this text
Run as root (loop mount), with the guest built (rebound guest build).`;

interface Options {
  sizes: string[];
  runs: number;
  keepSource: boolean;
  dir: string;
  json?: string;
  argv: string[];
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      sizes: { type: 'string', default: '1G,100G' },
      runs: { type: 'string', default: '3' },
      'keep-source': { type: 'boolean', default: false },
      dir: { type: 'string', default: '/var/tmp' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const sizes = values.sizes.split(',').map((s) => s.trim());
  for (const s of sizes) parseSize(s);
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 100)
    throw new Error(`--runs wants 1-100, not '${values.runs}'`);
  return {
    sizes,
    runs,
    keepSource: values['keep-source'],
    dir: resolve(values.dir),
    json: values.json,
    argv,
  };
}

const log = (line: string) =>
  process.stderr.write(`[rto ${new Date().toISOString().slice(11, 23)}] ${line}\n`);

interface StepJson {
  name: string;
  state: string;
  message: string | null;
  started_at: string | null;
  ended_at: string | null;
}
interface JobJson {
  id: string;
  state: string;
  error: string | null;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  steps: StepJson[];
}

/** One failover and the plain boot after it; times in ms since the epoch (this host's clock). */
interface RunResult {
  size: string;
  run: number;
  machine: string;
  loadAtT0: string;
  protectS?: number;
  gen1S?: number;
  t0?: number;
  failoverJob?: JobJson;
  /** QEMU spawned (machine.json boot.at), first console byte, `REBOUND ready` seen. */
  recovered?: BootTimes;
  /** The agent step's parts, from file times: registration.json written, agent.pid written (serve spawned). */
  agentFiles?: { registered?: number; serveSpawned?: number };
  /** CPU-seconds from t0 to the first output, of the failover and of the plain boot. */
  cpu?: CpuWindow;
  plainCpu?: CpuWindow;
  verified?: string;
  plainT0?: number;
  plain?: BootTimes;
  error?: string;
}

interface BootTimes {
  qemuAt: number;
  firstOutput: number;
  ready?: number;
}

// --- the console file, watched without starting any process ---

/**
 * Polls `file` every 10 ms: the first time a new file (another inode than now, if one exists)
 * holds a byte, then the first time it shows `REBOUND ready` (20 ms).
 */
function watchConsole(file: string, timeoutMs: number): { first: Promise<number>; ready: Promise<number> } {
  const oldIno = statSync(file, { throwIfNoEntry: false })?.ino;
  const deadline = Date.now() + timeoutMs;
  const first = (async () => {
    for (;;) {
      const s = await stat(file).catch(() => undefined);
      if (s && s.size > 0 && s.ino !== oldIno) return Date.now();
      if (Date.now() > deadline) throw new Error(`no console output in ${file} within ${timeoutMs / 1000} s`);
      await sleep(10);
    }
  })();
  const ready = first.then(async () => {
    for (;;) {
      if ((await readFile(file, 'utf8').catch(() => '')).includes('REBOUND ready')) return Date.now();
      if (Date.now() > deadline)
        throw new Error(`no 'REBOUND ready' in ${file} within ${timeoutMs / 1000} s`);
      await sleep(20);
    }
  });
  ready.catch(() => {});
  return { first, ready };
}

// --- CPU over a window: the whole machine (/proc/stat) and each process of the scratch dir ---

interface CpuSnap {
  /** Busy clock ticks of all CPUs. */
  busy: number;
  /** Ticks (utime + stime + reaped children) of each process of the scratch dir, by label. */
  procs: Map<string, number>;
}

const TICK_S = 0.01; // USER_HZ = 100 on Linux
const NPROC = availableParallelism();

/** server, `agent serve` of MACHINE, QEMU of MACHINE: from each process's command line. */
function label(argv: string[]): string {
  const joined = argv.join(' ');
  const m = /\/machines\/([^/]+)\//.exec(joined)?.[1];
  if (/qemu-system/.test(argv[0] ?? '')) return `qemu ${m}`;
  if (argv.includes('serve') && argv.includes('agent')) return `agent ${m}`;
  if (argv.includes('server') && argv.includes('start')) return 'server';
  if (argv.includes('register')) return 'agent register';
  return argv.map((a) => basename(a)).join(' ');
}

function cpuSnapshot(work: string): CpuSnap {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  const busy = cpu[0]! + cpu[1]! + cpu[2]! + cpu[5]! + cpu[6]! + (cpu[7] ?? 0);
  const procs = new Map<string, number>();
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      if (!argv.some((a) => a.includes(work))) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat
        .slice(stat.lastIndexOf(')') + 2)
        .split(' ')
        .map(Number);
      // fields 14-17 of proc(5), counted from state (field 3) at index 0
      const ticks = f[11]! + f[12]! + f[13]! + f[14]!;
      const l = label(argv);
      procs.set(l, (procs.get(l) ?? 0) + ticks);
    } catch {
      // gone meanwhile
    }
  }
  return { busy, procs };
}

/** CPU-seconds between two snapshots: the machine's, each label's, and the rest (not this bench's). */
interface CpuWindow {
  seconds: number;
  machine: number;
  byLabel: Record<string, number>;
  others: number;
}

function cpuWindow(a: CpuSnap, b: CpuSnap, seconds: number, benchTicks: number): CpuWindow {
  const byLabel: Record<string, number> = { 'bench + its CLI commands': benchTicks * TICK_S };
  let ours = benchTicks;
  for (const [l, t] of b.procs) {
    const d = t - (a.procs.get(l) ?? 0);
    if (d <= 0) continue;
    byLabel[l] = d * TICK_S;
    ours += d;
  }
  const machine = (b.busy - a.busy) * TICK_S;
  return { seconds, machine, byLabel, others: Math.max(0, machine - ours * TICK_S) };
}

/** This process and the CLI commands it ran and reaped (utime, stime, cutime, cstime). */
function benchCpuTicks(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  return f[11]! + f[12]! + f[13]! + f[14]!;
}

// --- the scenario ---

const live: { lab?: RecoveryLab; work?: string } = {};

/** Stops the lab (VMs, agents, server, loop mount), then removes the scratch dir if nothing is mounted in it. */
async function teardown(): Promise<void> {
  const lab = live.lab;
  live.lab = undefined;
  if (lab) {
    log('stopping the VMs, the server and every site process; unmounting the retention volume');
    await lab.stop().catch((e: Error) => log(`cleanup: ${e.message}`));
  }
  const work = live.work;
  live.work = undefined;
  if (!work) return;
  const retention = join(work, 'retention');
  const m = await run('mountpoint', ['-q', retention], { okCodes: [0, 1, 32] }).catch(() => undefined);
  if (m?.code === 0) log(`${retention} is still mounted: scratch dir ${work} left in place`);
  else rmSync(work, { recursive: true, force: true });
}

async function emergencyCleanup(): Promise<void> {
  await killRunning();
  if (live.lab) await killSiteProcesses(join(live.lab.csDir, 'sites'), 'SIGKILL');
  await teardown();
}

async function itemState(lab: RecoveryLab, name: string): Promise<{ state: string; applied: number }> {
  const r = JSON.parse(await cli(lab, ['items', 'show', name, '--json'])) as {
    item: { state: string };
    replication: { appliedThrough?: number } | null;
  };
  return { state: r.item.state, applied: r.replication?.appliedThrough ?? -1 };
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(250);
  }
}

/**
 * The first output; nothing else is asked while the failover runs, unless 30 s pass without it:
 * then the job is looked at every 3 s, and its failure ends the wait.
 */
async function untilOutputOrJobFailed(
  lab: RecoveryLab,
  jobId: string,
  first: Promise<number>,
): Promise<number> {
  let seen = false;
  first.then(
    () => {
      seen = true;
    },
    () => {},
  );
  const deadline = Date.now() + 30_000;
  while (!seen && Date.now() < deadline) await Promise.race([first, sleep(250)]);
  while (!seen) {
    const j = JSON.parse(await cli(lab, ['jobs', 'show', jobId, '--json'])) as JobJson;
    if (j.state === 'Failed' || j.state === 'Cancelled')
      throw new Error(`failover job ${j.state}: ${j.error}`);
    // An ended job has powered the VM on: its output is awaited on the watch's own timeout.
    if (j.state === 'Succeeded' || j.state === 'Warning') break;
    await Promise.race([first, sleep(3000)]);
  }
  return first;
}

async function oneRun(
  lab: RecoveryLab,
  o: Options,
  guest: { kernel: string; initrd: string; append: string },
  size: string,
  n: number,
): Promise<RunResult> {
  const name = `rto-${size.toLowerCase().replace(/[^a-z0-9]/g, '')}-${n}`;
  const rec = `${name}-recovered`;
  const r: RunResult = { size, run: n, machine: name, loadAtT0: '' };
  const siteA = await QemuSite.open({
    dir: join(lab.csDir, 'sites', 'a'),
    logger: pino({ level: 'silent' }),
  });
  const siteB = await QemuSite.open({
    dir: join(lab.csDir, 'sites', 'b'),
    logger: pino({ level: 'silent' }),
  });
  try {
    log(`${size} run ${n}: vm create ${name} (vda=${size}, sparse) at site a`);
    await cli(lab, [
      ...['vm', 'create', name, '--site', 'a', '--disk', `vda=${size}`],
      ...['--kernel', guest.kernel, '--initrd', guest.initrd, '--append', `${guest.append} rebound.files=8`],
    ]);
    let t = Date.now();
    await job(lab, `${size} run ${n}: protect ${name}`, ['protect', name, '--policy', 'gold']);
    await waitFor(`${name} protected`, 120_000, async () =>
      (await itemState(lab, name)).state === 'protected' ? true : undefined,
    );
    r.protectS = (Date.now() - t) / 1000;
    t = Date.now();
    await cli(lab, ['vm', 'start', name, '--site', 'a']);
    const gen1 = await siteA.waitForConsole(name, /REBOUND gen 1 written \d+ files/, 300_000);
    r.gen1S = (Date.now() - t) / 1000;
    log(
      `${size} run ${n}: ${name} ${/REBOUND gen 1 written \d+ files/.exec(gen1)?.[0]} after ${r.gen1S.toFixed(1)} s`,
    );
    if (!o.keepSource) {
      await cli(lab, ['vm', 'shutdown', name, '--site', 'a', '--timeout', '0']);
      log(
        `${size} run ${n}: ${name} stopped at once (the disaster); waiting for the master target to settle`,
      );
    }
    // Everything that reached the process server applied: appliedThrough unchanged for 2 s.
    let last = -2;
    let since = Date.now();
    await waitFor('replication settled', 120_000, async () => {
      const { applied } = await itemState(lab, name);
      if (applied !== last) {
        last = applied;
        since = Date.now();
      }
      return o.keepSource || Date.now() - since >= 2000 ? true : undefined;
    });

    // --- the failover: nothing but a stat every 10 ms runs here until the first output ---
    const recPaths = siteB.paths(rec);
    const watch = watchConsole(recPaths.console, 300_000);
    r.loadAtT0 = loadAverage();
    log(`${size} run ${n}: failover ${name} (unplanned, latest); load ${r.loadAtT0}`);
    const cpu0 = cpuSnapshot(lab.csDir);
    const bench0 = benchCpuTicks();
    r.t0 = Date.now();
    const started = JSON.parse(await cli(lab, ['failover', name, '--json'])) as { job: { id: string } };
    const firstOutput = await untilOutputOrJobFailed(lab, started.job.id, watch.first);
    r.cpu = cpuWindow(cpu0, cpuSnapshot(lab.csDir), (firstOutput - r.t0) / 1000, benchCpuTicks() - bench0);
    const ready = await watch.ready.catch(() => undefined);
    await cli(lab, ['jobs', 'watch', started.job.id]).catch(() => undefined);
    r.failoverJob = JSON.parse(await cli(lab, ['jobs', 'show', started.job.id, '--json'])) as JobJson;
    const qemuAt = (await siteB.poweredOnAt(rec))?.getTime();
    if (qemuAt === undefined) throw new Error(`${rec} has no boot recorded`);
    r.recovered = { qemuAt, firstOutput, ready };
    const mtime = (f: string) => statSync(f, { throwIfNoEntry: false })?.mtimeMs;
    r.agentFiles = {
      registered: mtime(join(recPaths.agentDir, 'registration.json')),
      serveSpawned: mtime(recPaths.agentPid),
    };
    log(
      `${size} run ${n}: RTO ${((firstOutput - r.t0) / 1000).toFixed(2)} s (job ${r.failoverJob.state}, ` +
        `QEMU spawned at +${((qemuAt - r.t0) / 1000).toFixed(2)} s)`,
    );
    if (r.failoverJob.state !== 'Succeeded')
      throw new Error(`failover job ${r.failoverJob.state}: ${r.failoverJob.error}`);
    const verified = await siteB.waitForConsole(
      rec,
      /REBOUND gen 1 (ok \d+ files|FAILED.*|incomplete|missing)/,
      300_000,
    );
    r.verified = /REBOUND gen 1 (ok \d+ files|FAILED.*|incomplete|missing)/.exec(verified)?.[0];
    log(`${size} run ${n}: ${rec}: ${r.verified}`);
    if (!r.verified?.includes(' ok ')) throw new Error(`the recovered VM reports: ${r.verified}`);

    // --- the peer: the same VM's plain boot through the same site adapter ---
    await cli(lab, ['vm', 'shutdown', rec, '--site', 'b', '--timeout', '0']);
    await sleep(1000);
    const plainWatch = watchConsole(recPaths.console, 300_000);
    const plainCpu0 = cpuSnapshot(lab.csDir);
    const plainBench0 = benchCpuTicks();
    r.plainT0 = Date.now();
    await cli(lab, ['vm', 'start', rec, '--site', 'b']);
    const plainFirst = await plainWatch.first;
    r.plainCpu = cpuWindow(
      plainCpu0,
      cpuSnapshot(lab.csDir),
      (plainFirst - r.plainT0) / 1000,
      benchCpuTicks() - plainBench0,
    );
    const plainReady = await plainWatch.ready.catch(() => undefined);
    const plainQemu = (await siteB.poweredOnAt(rec))!.getTime();
    r.plain = { qemuAt: plainQemu, firstOutput: plainFirst, ready: plainReady };
    log(
      `${size} run ${n}: plain boot ${((plainFirst - r.plainT0) / 1000).toFixed(2)} s (vm start -> first output)`,
    );
  } catch (e) {
    r.error = (e as Error).message;
    log(`${size} run ${n}: FAILED: ${r.error}`);
  } finally {
    for (const [site, m] of [
      ['b', rec],
      ['a', name],
    ] as const) {
      await cli(lab, ['vm', 'shutdown', m, '--site', site, '--timeout', '0']).catch(() => undefined);
      await cli(lab, ['vm', 'delete', m, '--site', site, '--delete-disks']).catch(() => undefined);
    }
  }
  return r;
}

// --- the report ---

const sec = (ms: number | undefined) => (ms === undefined ? 'n/a' : (ms / 1000).toFixed(2));
const at = (iso: string | null | undefined) => (iso ? Date.parse(iso) : undefined);
const diff = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined ? undefined : b - a;

function step(j: JobJson | undefined, name: string): StepJson | undefined {
  return j?.steps.find((s) => s.name === name);
}

interface Row {
  rto?: number;
  plain?: number;
  own?: number;
  toJobStart?: number;
  choose?: number;
  rollback?: number;
  createAgent?: number;
  powerStep?: number;
  toQemu?: number;
  recBoot?: number;
  plainToQemu?: number;
  plainBoot?: number;
  recKernel?: number;
  plainKernel?: number;
}

function row(r: RunResult): Row {
  const j = r.failoverJob;
  const rec = r.recovered;
  const rto = diff(r.t0, rec?.firstOutput);
  const plain = diff(r.plainT0, r.plain?.firstOutput);
  const span = (a: string, b = a) => diff(at(step(j, a)?.started_at), at(step(j, b)?.ended_at));
  return {
    rto,
    plain,
    own: rto !== undefined && plain !== undefined ? rto - plain : undefined,
    toJobStart: diff(r.t0, at(j?.started_at)),
    choose: span('check the item', 'choose the recovery point'),
    rollback: span('roll the replica back to the point'),
    createAgent: span('create the recovered machine', 'install its agent'),
    powerStep: span('power on the recovered machine'),
    toQemu: diff(r.t0, rec?.qemuAt),
    recBoot: diff(rec?.qemuAt, rec?.firstOutput),
    plainToQemu: diff(r.plainT0, r.plain?.qemuAt),
    plainBoot: diff(r.plain?.qemuAt, r.plain?.firstOutput),
    recKernel: diff(rec?.firstOutput, rec?.ready),
    plainKernel: diff(r.plain?.firstOutput, r.plain?.ready),
  };
}

function median(xs: (number | undefined)[]): number | undefined {
  const v = xs.filter((x): x is number => x !== undefined).sort((a, b) => a - b);
  if (!v.length) return undefined;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1]! + v[m]!) / 2;
}

function tableLine(label: string, run: string, x: Row): string {
  const ratio = x.rto !== undefined && x.plain ? `${(x.rto / x.plain).toFixed(2)}x` : 'n/a';
  const met = x.own === undefined ? 'n/a' : x.own <= GOAL_OWN_S * 1000 ? 'yes' : 'NO';
  return (
    `| ${label} | ${run} | ${sec(x.rto)} | ${sec(x.plain)} | ${sec(x.own)} | ${ratio} | ` +
    `${sec(x.toJobStart)} | ${sec(x.choose)} | ${sec(x.rollback)} | ${sec(x.createAgent)} | ${sec(x.powerStep)} | ` +
    `${sec(x.toQemu)} / ${sec(x.plainToQemu)} | ${sec(x.recBoot)} / ${sec(x.plainBoot)} | ${met} |`
  );
}

function cpuLine(w: CpuWindow, machine: string): string {
  const name = (l: string) =>
    l.replace(`${machine}-recovered`, 'recovered VM').replace(` ${machine}`, ' source VM');
  const parts = Object.entries(w.byLabel)
    .sort((a, b) => b[1] - a[1])
    .map(([l, v]) => `${name(l)} ${v.toFixed(2)}`);
  return (
    `machine ${w.machine.toFixed(2)} of ${(NPROC * w.seconds).toFixed(2)} (${NPROC} CPUs × ${w.seconds.toFixed(2)} s): ` +
    `${parts.join(', ')}, everything else ${w.others.toFixed(2)}`
  );
}

function report(o: Options, results: RunResult[], say: (l?: string) => void): void {
  say(
    '| disk | run | RTO s (failover request → first guest output) | plain boot s (`vm start` request → first output) | ' +
      "Rebound's own s (RTO − plain boot) | RTO / plain boot | request → job started s | check + choose point s | " +
      'rollback step s | create + agent steps s | power-on step s | request → QEMU spawned s (failover / plain) | ' +
      `QEMU spawned → first output s (failover / plain) | own ≤ ${GOAL_OWN_S} s |`,
  );
  say('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|');
  const medians = new Map<string, Row>();
  for (const size of o.sizes) {
    const rows = results.filter((r) => r.size === size);
    for (const r of rows) {
      if (r.error && !r.recovered)
        say(`| ${size} | ${r.run} | FAILED: ${r.error.split('\n')[0]} |||||||||||||`);
      else say(tableLine(size, String(r.run), row(r)));
    }
    const xs = rows.map(row);
    const m: Row = {};
    for (const k of Object.keys(row({} as RunResult)) as (keyof Row)[]) m[k] = median(xs.map((x) => x[k]));
    medians.set(size, m);
    say(tableLine(`**${size}**`, '**median**', m));
  }
  say();
  const ms = [...medians.entries()];
  if (ms.length >= 2) {
    const [s0, m0] = ms[0]!;
    const [s1, m1] = ms[ms.length - 1]!;
    const d = diff(m0.own, m1.own);
    say(
      `Rebound's own time, median: ${sec(m0.own)} s at ${s0}, ${sec(m1.own)} s at ${s1} ` +
        `(difference ${sec(d)} s); rollback step ${sec(m0.rollback)} s vs ${sec(m1.rollback)} s.`,
    );
    say();
  }
  say('Every run:');
  say();
  for (const r of results) {
    const x = row(r);
    const j = r.failoverJob;
    const steps = j
      ? j.steps.map((s) => `${s.name} ${sec(diff(at(s.started_at), at(s.ended_at)))} s`).join(', ')
      : 'no job';
    say(
      `- ${r.size} run ${r.run} (${r.machine}): protect → protected ${r.protectS?.toFixed(1) ?? 'n/a'} s, ` +
        `vm start → gen 1 written ${r.gen1S?.toFixed(1) ?? 'n/a'} s; load at t0 ${r.loadAtT0 || 'n/a'}; ` +
        `request → job created ${sec(diff(r.t0, at(j?.created_at)))} s, created → started ${sec(diff(at(j?.created_at), at(j?.started_at)))} s; ` +
        `steps: ${steps}; in 'install its agent': \`agent register\` ${sec(diff(at(step(j, 'install its agent')?.started_at), r.agentFiles?.registered))} s, ` +
        `\`agent serve\` spawned → step end ${sec(diff(r.agentFiles?.serveSpawned, at(step(j, 'install its agent')?.ended_at)))} s; first output → REBOUND ready ${sec(x.recKernel)} s (plain ${sec(x.plainKernel)} s); ` +
        `recovered guest: ${r.verified ?? 'n/a'}${r.error ? `; ERROR: ${r.error.split('\n')[0]}` : ''}`,
    );
    if (r.cpu)
      say(`  - CPU-seconds from the failover request to the first output: ${cpuLine(r.cpu, r.machine)}`);
    if (r.plainCpu)
      say(`  - CPU-seconds from \`vm start\` to the first output: ${cpuLine(r.plainCpu, r.machine)}`);
  }
}

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('run as root: the retention volume is a loop mount');
  const guest = await loadGuest();
  if (!guest) throw new Error('no guest built: run `rebound guest build` first');
  mkdirSync(o.dir, { recursive: true });
  const work = mkdtempSync(join(o.dir, 'rebound-rto-'));
  live.work = work;
  const say = (line = '') => console.log(line);
  const started = Date.now();
  const machine = await machineInfo(work);
  const rev = await output('git', ['rev-parse', '--short', 'HEAD'], 'no git');
  const dirty = await output('sh', ['-c', 'git status --porcelain -- src bench | head -1'], '');
  const qemu = await output('qemu-system-x86_64', ['--version']);
  // What a CLI command costs before it does anything (module loading), for reading the steps.
  const load = async (args: string[]) => {
    const t: number[] = [];
    for (let i = 0; i < 3; i++)
      t.push((await run(process.execPath, [REBOUND_CLI, ...args, '--help'])).seconds);
    return median(t)!;
  };
  const cliStart = { agent: await load(['agent', 'serve']), failover: await load(['failover']) };
  const results: RunResult[] = [];
  try {
    log(`scratch ${work}; starting the configuration server and sites a, b`);
    live.lab = await startRecoveryLab(work, log);
    for (const size of o.sizes) {
      for (let n = 1; n <= o.runs; n++) results.push(await oneRun(live.lab, o, guest, size, n));
    }
  } finally {
    await teardown();
  }
  const totalS = (Date.now() - started) / 1000;
  say('# RTO: unplanned failover request → first output of the recovered VM, vs its plain boot');
  say();
  say(
    `- machine: ${machine.nproc} CPUs, ${machine.cpu}, ${machine.memGiB.toFixed(1)} GiB RAM; kernel ${machine.kernel}`,
  );
  say(`- load average at start: ${machine.loadAvg}; at end: ${loadAverage()}`);
  say(`- rebound git ${rev}${dirty ? ' (working tree modified)' : ''}, node ${process.version}, ${qemu}`);
  say(`- guest: ${guest.kernel} (${guest.kernelVersion}, TCG, 256 MiB, 1 vCPU) + ${guest.initrd}`);
  say(
    `- a CLI command's start (\`rebound … --help\`, median of 3): \`agent serve\` ${cliStart.agent.toFixed(2)} s, ` +
      `\`failover\` ${cliStart.failover.toFixed(2)} s`,
  );
  say(`- command: node dist/bench/rto.js ${o.argv.join(' ')}`.trimEnd());
  say(
    `- source VM ${o.keepSource ? 'kept running' : 'stopped at once before each failover (power loss)'}; ` +
      `scratch on ${machine.workFs}; whole run ${totalS.toFixed(0)} s`,
  );
  say();
  report(o, results, say);
  if (o.json)
    writeFileSync(o.json, `${JSON.stringify({ machine, cliStart, options: o, results }, null, 2)}\n`);
  return results.some((r) => r.error) ? 1 : 0;
}

runBench(main, emergencyCleanup, log);
