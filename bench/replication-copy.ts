// Initial replication and resync over the whole path (agent -> process server -> master
// target, mutual TLS on 127.0.0.1, each its own process), against the tools an operator
// would use instead, run in the same run on the same images:
//
//   1. initial replication of a 4 GiB disk half full  vs  `qemu-img convert -n -O raw`
//      from an NBD export of the same image (`nbdkit file`) into a local file;
//   2. a 100 GiB sparse disk holding 1 GiB  vs  a 2 GiB disk holding 1 GiB (time
//      proportional to the data, not to the disk);
//   3. a resync after 1 % of a 1 GiB disk changed behind the agent's back  vs
//      `rsync --inplace --no-whole-file` of the changed image onto a copy of the old one;
//   4. peak RSS of the agent, the process server and the master target during (1).
//
//   npm run build && node dist/bench/replication-copy.js             # default run (~3 min)
//   node dist/bench/replication-copy.js --size 256M --data 128M --sparse-size 4G \
//     --sparse-data 64M --small-size 128M --resync-size 128M          # smoke run
//
// Prints a Markdown report on stdout, progress on stderr. The goals are printed, never
// asserted: this is a benchmark, not a test.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { truncate } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadAverage, machineInfo } from './lib/machine.js';
import { killRunning, output, run, runBench } from './lib/proc.js';
import {
  type AgentStatus,
  type Component,
  changeBlocks,
  compareImages,
  machineIdOf,
  makeImage,
  type Replicated,
  Stack,
} from './lib/replication.js';
import { type CpuTime, cpuTime, type RssPeak } from './lib/rss.js';
import { type BenchServer, snapshotRebound, startNbdkit, startRebound } from './lib/servers.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const MB = 1e6;
const GOAL_COPY_RATIO = 0.8;
/** "About 1": the 100 GiB disk may take at most this much longer than the small one. */
const GOAL_SPARSE_RATIO = 1.25;
const SCENARIOS = ['initial', 'sparse', 'resync'] as const;
type Scenario = (typeof SCENARIOS)[number];

const USAGE = `usage: node dist/bench/replication-copy.js [options]
  --size SIZE          scenario 1: disk size (default 4G)
  --data SIZE          scenario 1: data in it, random, in extents (default 2G)
  --sparse-size SIZE   scenario 2: the big sparse disk (default 100G)
  --sparse-data SIZE   scenario 2: data in each disk (default 1G)
  --small-size SIZE    scenario 2: the small disk holding the same data (default 2G)
  --resync-size SIZE   scenario 3: disk size (default 1G)
  --resync-data SIZE   scenario 3: data in it (default: half the disk)
  --change PERCENT     scenario 3: share of 64 KiB blocks changed, in runs of 4 (default 1)
  --extent SIZE        average data extent (default 8M; extents are 4 KiB aligned)
  --peer-export KIND   what serves the image to qemu-img: nbdkit (default) or agent
  --scenarios LIST     comma list of ${SCENARIOS.join(',')} (default all)
  --dir DIR            where the scratch dir is made (default /var/tmp)
  --timeout SEC        longest wait for one replication (default 900)
  --no-verify          skip comparing each replica (and each peer's copy) with its source
  --json FILE          also write the results as JSON`;

interface Options {
  size: number;
  data: number;
  sparseSize: number;
  sparseData: number;
  smallSize: number;
  resyncSize: number;
  resyncData: number;
  change: number;
  extent: number;
  peerExport: 'nbdkit' | 'agent';
  scenarios: Scenario[];
  dir: string;
  timeoutMs: number;
  verify: boolean;
  json?: string;
  argv: string[];
}

function parseSize(text: string): number {
  const units: Record<string, number> = { '': 1, K: 1024, M: MiB, G: GiB, T: 2 ** 40 };
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (!m) throw new Error(`'${text}' is not a size (examples: 128M, 1G)`);
  const n = Math.floor(Number(m[1]) * units[m[2]!.toUpperCase()]!);
  if (n % 65536) throw new Error(`${text}: sizes must be multiples of 64 KiB`);
  return n;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      size: { type: 'string', default: '4G' },
      data: { type: 'string', default: '2G' },
      'sparse-size': { type: 'string', default: '100G' },
      'sparse-data': { type: 'string', default: '1G' },
      'small-size': { type: 'string', default: '2G' },
      'resync-size': { type: 'string', default: '1G' },
      'resync-data': { type: 'string' },
      change: { type: 'string', default: '1' },
      extent: { type: 'string', default: '8M' },
      'peer-export': { type: 'string', default: 'nbdkit' },
      scenarios: { type: 'string', default: SCENARIOS.join(',') },
      dir: { type: 'string', default: '/var/tmp' },
      timeout: { type: 'string', default: '900' },
      'no-verify': { type: 'boolean', default: false },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const scenarios = values.scenarios.split(',').map((s) => s.trim());
  for (const s of scenarios) {
    if (!(SCENARIOS as readonly string[]).includes(s)) throw new Error(`unknown scenario '${s}'\n${USAGE}`);
  }
  const peer = values['peer-export'];
  if (peer !== 'nbdkit' && peer !== 'agent')
    throw new Error(`--peer-export is nbdkit or agent, not '${peer}'`);
  const change = Number(values.change);
  if (!(change > 0 && change <= 100)) throw new Error(`--change wants a percentage in (0, 100]`);
  const timeout = Number(values.timeout);
  if (!(timeout > 0)) throw new Error('--timeout wants seconds');
  const resyncSize = parseSize(values['resync-size']);
  return {
    size: parseSize(values.size),
    data: parseSize(values.data),
    sparseSize: parseSize(values['sparse-size']),
    sparseData: parseSize(values['sparse-data']),
    smallSize: parseSize(values['small-size']),
    resyncSize,
    resyncData: values['resync-data'] ? parseSize(values['resync-data']) : resyncSize / 2,
    change,
    extent: parseSize(values.extent),
    peerExport: peer,
    scenarios: scenarios as Scenario[],
    dir: resolve(values.dir),
    timeoutMs: timeout * 1000,
    verify: !values['no-verify'],
    json: values.json,
    argv,
  };
}

const log = (line: string) =>
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const mib = (b: number) => `${(b / MiB).toFixed(1)} MiB`;
const gib = (b: number) => (b >= GiB ? `${+(b / GiB).toFixed(2)} GiB` : `${+(b / MiB).toFixed(1)} MiB`);
const secs = (s: number) => `${s.toFixed(1)} s`;
const mbps = (bytes: number, s: number) => bytes / MB / s;

type Role = Component['name'];

/** One initial replication (or resync) through the whole path. */
interface ReplicationRun {
  label: string;
  diskBytes: number;
  dataBytes: number;
  seconds: number;
  /** The agent's resync counters when it was done (since the agent started). */
  resync: { sentBytes: number; zeroedBytes: number; hashBytes: number; passes: number };
  journalBytes: number;
  /** Peak VmRSS (sampled every 100 ms) and VmHWM of each component when it was done. */
  rss: Partial<Record<Role, RssPeak>>;
  /** CPU seconds each component used during the copy. */
  cpu: Partial<Record<Role, CpuTime>>;
  verified?: string;
}

interface PeerRun {
  command: string;
  seconds: number;
  /** `sync -d` of the target afterwards (qemu-img convert writes with cache=unsafe). */
  syncSeconds?: number;
  verified?: string;
  detail?: string;
}

interface RsyncRun {
  seconds: number;
  literal: number;
  matched: number;
  sent: number;
  received: number;
  verified?: string;
}

interface Results {
  initial?: { rebound?: ReplicationRun; peer?: PeerRun; error?: string };
  sparse?: { big?: ReplicationRun; small?: ReplicationRun; error?: string };
  resync?: {
    initial?: ReplicationRun;
    changedBytes: number;
    restartSeconds?: number;
    rebound?: ReplicationRun;
    rsync?: RsyncRun;
    error?: string;
  };
}

// What an interrupt or an error must undo.
const live: { stack?: Stack; server?: BenchServer; work?: string } = {};

async function emergencyCleanup(): Promise<void> {
  await killRunning();
  await live.stack?.kill().catch(() => {});
  await live.server?.stop().catch(() => {});
  if (live.work) rmSync(live.work, { recursive: true, force: true });
}

/** `sync`, so the next measurement does not pay for an earlier one's dirty pages. */
async function settle(): Promise<void> {
  await run('sync', [], { timeoutMs: 600_000 });
}

function verdict(diff: string | undefined): string {
  return diff === undefined ? 'replica = source' : `REPLICA DIFFERS: ${diff}`;
}

/**
 * Starts an agent on `image` in `stack` and waits until its first copy is in the replica:
 * resync idle after at least one pass, the master target through the agent's last seq.
 * Time runs from the agent's spawn.
 */
async function initialReplication(
  o: Options,
  stack: Stack,
  label: string,
  image: string,
  diskBytes: number,
  dataBytes: number,
  dataDir: string,
): Promise<{ run: ReplicationRun; status: AgentStatus }> {
  const cpu0: Partial<Record<Role, CpuTime>> = {
    'process-server': await cpuTime(stack.ps.pid),
    'master-target': await cpuTime(stack.mt.pid),
  };
  const t0 = process.hrtime.bigint();
  const agent = await stack.startAgent(dataDir, image);
  const machineId = machineIdOf(dataDir);
  const done = await stack.waitReplicated(dataDir, machineId, { minPasses: 1, fromSeq: 1 }, t0, o.timeoutMs);
  const m = await measure(stack, label, diskBytes, dataBytes, done, cpu0, agent);
  if (o.verify) {
    m.verified = verdict(await compareImages(image, stack.replicaPath(machineId, done.agent.disks[0]!.id)));
  }
  return { run: m, status: done.agent };
}

async function measure(
  stack: Stack,
  label: string,
  diskBytes: number,
  dataBytes: number,
  done: Replicated,
  cpu0: Partial<Record<Role, CpuTime>>,
  agent: Component,
): Promise<ReplicationRun> {
  const rs = done.agent.replication!.resync;
  const cpu: Partial<Record<Role, CpuTime>> = {};
  for (const c of [agent, stack.ps, stack.mt]) {
    const now = await cpuTime(c.pid);
    const before = cpu0[c.name] ?? { user: 0, sys: 0 };
    if (now) cpu[c.name] = { user: now.user - before.user, sys: now.sys - before.sys };
  }
  return {
    label,
    diskBytes,
    dataBytes,
    seconds: done.seconds,
    resync: {
      sentBytes: rs.sentBytes,
      zeroedBytes: rs.zeroedBytes,
      hashBytes: rs.hashBytes,
      passes: rs.passes,
    },
    journalBytes: done.mt.journalBytes,
    rss: { agent: agent.rss(), 'process-server': stack.ps.rss(), 'master-target': stack.mt.rss() },
    cpu,
  };
}

async function withStack<T>(dir: string, cli: string, fn: (s: Stack) => Promise<T>): Promise<T> {
  const stack = await Stack.start(dir, cli);
  live.stack = stack;
  try {
    return await fn(stack);
  } catch (e) {
    const tail = (c: Component | undefined) => c?.stderr().trim().slice(-1500) ?? '';
    throw new Error(
      `${(e as Error).message}\n  agent stderr tail: ${tail(stack.agent)}\n  process server stderr tail: ` +
        `${tail(stack.ps)}\n  master target stderr tail: ${tail(stack.mt)}`,
    );
  } finally {
    await stack.stop();
    live.stack = undefined;
  }
}

/** Scenario 1: a disk half full, Rebound's initial replication vs qemu-img convert over NBD. */
async function scenarioInitial(o: Options, work: string, cli: string, res: Results): Promise<void> {
  const dir = join(work, 'initial');
  mkdirSync(dir, { recursive: true });
  const image = join(dir, 'disk.img');
  res.initial = {};
  try {
    log(`initial: writing a ${gib(o.size)} sparse image with ${gib(o.data)} of random data in extents`);
    await makeImage(image, o.size, o.data, o.extent, 1);
    await settle();

    // The peer: the same image served over NBD, copied into a local file by qemu-img.
    log(`initial: qemu-img convert from ${o.peerExport} into a local file`);
    const target = join(dir, 'peer.raw');
    writeFileSync(target, '');
    await truncate(target, o.size);
    const server =
      o.peerExport === 'nbdkit'
        ? await startNbdkit(image)
        : await startRebound(image, join(dir, 'peer-agent'), '32G');
    live.server = server;
    let peer: PeerRun;
    try {
      const r = await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', server.url, target], {
        timeoutMs: o.timeoutMs,
      });
      peer = { command: `qemu-img convert -n -f raw -O raw ${server.url} peer.raw`, seconds: r.seconds };
    } finally {
      await server.stop();
      live.server = undefined;
    }
    const s = await run('sync', ['-d', target], { timeoutMs: 600_000 });
    peer.syncSeconds = s.seconds;
    if (o.verify) peer.verified = (await compareImages(image, target)) ?? 'copy = source';
    res.initial.peer = peer;
    log(`  qemu-img: ${secs(peer.seconds)} (+ ${secs(s.seconds)} sync -d)`);
    rmSync(target);
    rmSync(join(dir, 'peer-agent'), { recursive: true, force: true });
    await settle();

    log('initial: Rebound initial replication (agent -> process server -> master target)');
    res.initial.rebound = await withStack(join(dir, 'stack'), cli, async (stack) => {
      const { run: r } = await initialReplication(
        o,
        stack,
        `${gib(o.size)} disk, ${gib(o.data)} data`,
        image,
        o.size,
        o.data,
        join(dir, 'agent'),
      );
      return r;
    });
    log(`  rebound: ${secs(res.initial.rebound.seconds)}; ${res.initial.rebound.verified ?? ''}`);
  } catch (e) {
    res.initial.error = (e as Error).message;
    log(`  FAILED: ${res.initial.error}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Scenario 2: the same amount of data on a huge sparse disk and on a small one. */
async function scenarioSparse(o: Options, work: string, cli: string, res: Results): Promise<void> {
  res.sparse = {};
  try {
    for (const which of ['small', 'big'] as const) {
      const size = which === 'big' ? o.sparseSize : o.smallSize;
      const dir = join(work, `sparse-${which}`);
      mkdirSync(dir, { recursive: true });
      try {
        const image = join(dir, 'disk.img');
        log(`sparse: ${gib(size)} image holding ${gib(o.sparseData)}`);
        await makeImage(image, size, o.sparseData, o.extent, 2);
        await settle();
        const r = await withStack(join(dir, 'stack'), cli, async (stack) => {
          const { run: x } = await initialReplication(
            o,
            stack,
            `${gib(size)} disk, ${gib(o.sparseData)} data`,
            image,
            size,
            o.sparseData,
            join(dir, 'agent'),
          );
          return x;
        });
        res.sparse[which] = r;
        log(`  ${secs(r.seconds)}; ${r.verified ?? ''}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  } catch (e) {
    res.sparse.error = (e as Error).message;
    log(`  FAILED: ${res.sparse.error}`);
  }
}

function parseRsyncStats(text: string): Omit<RsyncRun, 'seconds'> {
  const num = (label: string) => {
    const m = new RegExp(`^${label}:\\s*([\\d,.]+)`, 'm').exec(text);
    if (!m) throw new Error(`rsync --stats printed no '${label}' line: ${text}`);
    return Number(m[1]!.replace(/,/g, ''));
  };
  return {
    literal: num('Literal data'),
    matched: num('Matched data'),
    sent: num('Total bytes sent'),
    received: num('Total bytes received'),
  };
}

/** Scenario 3: 1 % of a replicated disk changed while the agent was down; resync vs rsync. */
async function scenarioResync(o: Options, work: string, cli: string, res: Results): Promise<void> {
  const dir = join(work, 'resync');
  mkdirSync(dir, { recursive: true });
  res.resync = { changedBytes: 0 };
  const r3 = res.resync;
  try {
    const image = join(dir, 'disk.img');
    const old = join(dir, 'old.img');
    const dataDir = join(dir, 'agent');
    log(`resync: ${gib(o.resyncSize)} image holding ${gib(o.resyncData)}, initial replication first`);
    await makeImage(image, o.resyncSize, o.resyncData, o.extent, 3);
    await settle();
    await withStack(join(dir, 'stack'), cli, async (stack) => {
      const first = await initialReplication(
        o,
        stack,
        `${gib(o.resyncSize)} disk, ${gib(o.resyncData)} data`,
        image,
        o.resyncSize,
        o.resyncData,
        dataDir,
      );
      r3.initial = first.run;
      log(`  initial replication: ${secs(first.run.seconds)}; ${first.run.verified ?? ''}`);
      const stopped = await stack.stopAgent();
      if (!stopped?.clean) throw new Error('the agent did not stop cleanly');

      // rsync's destination: the image as the replica has it.
      await run('cp', ['--sparse=always', image, old], { timeoutMs: 600_000 });
      const blocks = await changeBlocks(image, o.resyncSize, o.change / 100, 4, 99);
      r3.changedBytes = blocks * 64 * 1024;
      log(`resync: changed ${blocks} blocks (${mib(r3.changedBytes)}) behind the agent's back`);
      await settle();

      const tr = process.hrtime.bigint();
      const agent = await stack.startAgent(dataDir, image);
      r3.restartSeconds = Number(process.hrtime.bigint() - tr) / 1e9;
      const machineId = machineIdOf(dataDir);
      const { nextSeq, replication } = await stack.agentStatus(dataDir);
      const before = replication!.resync;
      if (before.state !== 'idle')
        throw new Error(`the restarted agent is already resyncing: ${before.state}`);
      const cpu0: Partial<Record<Role, CpuTime>> = {
        agent: await cpuTime(agent.pid),
        'process-server': await cpuTime(stack.ps.pid),
        'master-target': await cpuTime(stack.mt.pid),
      };
      const t0 = process.hrtime.bigint();
      await run(process.execPath, [cli, 'agent', 'resync', '--data-dir', dataDir], { timeoutMs: 60_000 });
      const done = await stack.waitReplicated(
        dataDir,
        machineId,
        { minPasses: before.passes + 1, fromSeq: nextSeq },
        t0,
        o.timeoutMs,
      );
      const m = await measure(
        stack,
        `resync, ${o.change} % of ${gib(o.resyncSize)} changed`,
        o.resyncSize,
        r3.changedBytes,
        done,
        cpu0,
        agent,
      );
      m.resync = {
        sentBytes: m.resync.sentBytes - before.sentBytes,
        zeroedBytes: m.resync.zeroedBytes - before.zeroedBytes,
        hashBytes: m.resync.hashBytes - before.hashBytes,
        passes: m.resync.passes - before.passes,
      };
      if (o.verify) {
        const disk = done.agent.disks[0]!.id;
        m.verified = verdict(await compareImages(image, stack.replicaPath(machineId, disk)));
      }
      r3.rebound = m;
      log(`  rebound resync: ${secs(m.seconds)}; ${m.resync.sentBytes + m.resync.hashBytes} bytes`);
    });
    await settle();

    log('resync: rsync --inplace --no-whole-file of the changed image onto the old one');
    const rs = await run('rsync', ['--inplace', '--no-whole-file', '--ignore-times', '--stats', image, old], {
      timeoutMs: o.timeoutMs,
    });
    r3.rsync = { seconds: rs.seconds, ...parseRsyncStats(rs.stdout) };
    if (o.verify) r3.rsync.verified = (await compareImages(image, old)) ?? 'copy = source';
    log(`  rsync: ${secs(rs.seconds)}; ${r3.rsync.sent + r3.rsync.received} bytes`);
  } catch (e) {
    r3.error = (e as Error).message;
    log(`  FAILED: ${r3.error}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function ratioCell(r: number | undefined): string {
  return r === undefined || !Number.isFinite(r) ? 'n/a' : `${r.toFixed(2)}x`;
}

function met(ok: boolean | undefined): string {
  return ok === undefined ? '?' : ok ? 'yes' : 'NO';
}

function report(o: Options, res: Results, say: (l?: string) => void): void {
  say('| measurement | Rebound | peer | ratio | goal | met |');
  say('|---|---:|---:|---:|---|:-:|');
  const i = res.initial;
  if (i) {
    const rb = i.rebound;
    const p = i.peer;
    const rRate = rb && mbps(o.data, rb.seconds);
    const pRate = p && mbps(o.data, p.seconds);
    const ratio = rRate && pRate ? rRate / pRate : undefined;
    const label =
      `initial replication, ${gib(o.size)} disk holding ${gib(o.data)}, vs \`qemu-img convert -n\` ` +
      `from ${o.peerExport} into a local file: MB/s of data (time)`;
    say(
      `| ${label} | ${rb ? `${rRate!.toFixed(1)} (${secs(rb.seconds)})` : 'failed'} | ` +
        `${p ? `${pRate!.toFixed(1)} (${secs(p.seconds)})` : 'failed'} | ${ratioCell(ratio)} | ` +
        `≥ ${GOAL_COPY_RATIO}x qemu-img convert | ${met(ratio === undefined ? undefined : ratio >= GOAL_COPY_RATIO)} |`,
    );
    if (p?.syncSeconds !== undefined) {
      const durable = p.seconds + p.syncSeconds;
      const dRatio = rRate ? rRate / mbps(o.data, durable) : undefined;
      say(
        `| same, peer made durable (qemu-img, then \`sync -d\` of its target) | ${rb ? rRate!.toFixed(1) : 'failed'} | ` +
          `${mbps(o.data, durable).toFixed(1)} (${secs(durable)}) | ${ratioCell(dRatio)} | (for reference) | |`,
      );
    }
  }
  const s = res.sparse;
  if (s) {
    const ratio = s.big && s.small ? s.big.seconds / s.small.seconds : undefined;
    say(
      `| initial replication time, ${gib(o.sparseSize)} sparse disk (Rebound) vs ${gib(o.smallSize)} disk (peer), each holding ` +
        `${gib(o.sparseData)} | ${s.big ? secs(s.big.seconds) : 'failed'} | ${s.small ? secs(s.small.seconds) : 'failed'} | ` +
        `${ratioCell(ratio)} | about 1 (≤ ${GOAL_SPARSE_RATIO}x) | ${met(ratio === undefined ? undefined : ratio <= GOAL_SPARSE_RATIO)} |`,
    );
  }
  const r = res.resync;
  if (r) {
    const rb = r.rebound;
    const rs = r.rsync;
    const rBytes = rb ? rb.resync.sentBytes + rb.resync.hashBytes : undefined;
    const pBytes = rs ? rs.sent + rs.received : undefined;
    const bRatio = rBytes !== undefined && pBytes ? rBytes / pBytes : undefined;
    const tRatio = rb && rs ? rb.seconds / rs.seconds : undefined;
    const what = `resync vs \`rsync --inplace --no-whole-file\`, ${o.change} % of a ${gib(o.resyncSize)} disk changed`;
    say(
      `| ${what}: bytes (blocks + hashes / rsync sent + received) | ${rBytes ?? 'failed'} | ${pBytes ?? 'failed'} | ` +
        `${ratioCell(bRatio)} | fewer than rsync (< 1x) | ${met(bRatio === undefined ? undefined : bRatio < 1)} |`,
    );
    say(
      `| ${what}: time | ${rb ? secs(rb.seconds) : 'failed'} | ${rs ? secs(rs.seconds) : 'failed'} | ` +
        `${ratioCell(tRatio)} | faster than rsync (< 1x) | ${met(tRatio === undefined ? undefined : tRatio < 1)} |`,
    );
  }
  say();
  if (i?.rebound) {
    say(`Peak RSS during the initial replication of ${gib(o.size)} (${gib(o.data)} of data):`);
    say();
    say('| component | peak VmRSS (sampled every 100 ms) | VmHWM | CPU during the copy |');
    say('|---|---:|---:|---:|');
    for (const role of ['agent', 'process-server', 'master-target'] as const) {
      const p = i.rebound.rss[role];
      const c = i.rebound.cpu[role];
      say(
        `| ${role} | ${p ? mib(p.sampledPeak) : 'n/a'} | ${p ? mib(p.hwm) : 'n/a'} | ` +
          `${c ? `${c.user.toFixed(1)} s user + ${c.sys.toFixed(1)} s sys` : 'n/a'} |`,
      );
    }
    say();
  }
  say('Details:');
  say();
  const detail = (name: string, x: ReplicationRun | undefined) => {
    if (!x) return;
    const cpu = (['agent', 'process-server', 'master-target'] as const)
      .map((k) => {
        const c = x.cpu[k];
        return c ? `${k} ${(c.user + c.sys).toFixed(1)} s` : undefined;
      })
      .filter(Boolean)
      .join(', ');
    const rss = (['agent', 'process-server', 'master-target'] as const)
      .map((k) => `${k} ${mib(x.rss[k]?.sampledPeak ?? 0)}`)
      .join(', ');
    say(
      `- ${name} (${x.label}): ${secs(x.seconds)}, ${mbps(x.dataBytes, x.seconds).toFixed(1)} MB/s of data; ` +
        `blocks sent ${x.resync.sentBytes} B (${mib(x.resync.sentBytes)}), zeroed without data ${x.resync.zeroedBytes} B, ` +
        `hashes ${x.resync.hashBytes} B, ${x.resync.passes} pass(es); undo journal ${mib(x.journalBytes)}; ` +
        `CPU ${cpu}; peak RSS ${rss}${x.verified ? `; ${x.verified}` : ''}`,
    );
  };
  if (i?.peer) {
    const p = i.peer;
    say(
      `- peer: \`${p.command}\`: ${secs(p.seconds)}, ${mbps(o.data, p.seconds).toFixed(1)} MB/s of data; ` +
        `\`sync -d peer.raw\` after it ${p.syncSeconds === undefined ? 'n/a' : secs(p.syncSeconds)}` +
        `${p.verified ? `; ${p.verified}` : ''}`,
    );
  }
  detail('initial replication', i?.rebound);
  detail('sparse, big disk', s?.big);
  detail('sparse, small disk', s?.small);
  detail('resync scenario, its initial replication', r?.initial);
  if (r?.restartSeconds !== undefined)
    say(`- resync scenario: agent restart to ready ${secs(r.restartSeconds)}`);
  if (r) say(`- resync scenario: ${r.changedBytes} B (${mib(r.changedBytes)}) changed`);
  detail('resync', r?.rebound);
  if (r?.rsync) {
    const x = r.rsync;
    say(
      `- rsync: ${secs(x.seconds)}; Literal data ${x.literal} B, Matched data ${x.matched} B, ` +
        `Total bytes sent ${x.sent} B, Total bytes received ${x.received} B${x.verified ? `; ${x.verified}` : ''}`,
    );
  }
  for (const [k, v] of Object.entries(res) as [string, { error?: string }][]) {
    if (v?.error) say(`- ${k}: ERROR: ${v.error}`);
  }
}

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  const needed = [
    'qemu-img',
    'nbdinfo',
    'rsync',
    'cp',
    'sync',
    ...(o.peerExport === 'nbdkit' ? ['nbdkit'] : []),
  ];
  const missing: string[] = [];
  for (const t of needed) {
    const r = await run('sh', ['-c', `command -v ${t}`], { okCodes: [0, 1, 127] });
    if (r.code !== 0) missing.push(t);
  }
  if (missing.length) throw new Error(`missing tools: ${missing.join(', ')} (scripts/install-deps.sh)`);

  mkdirSync(o.dir, { recursive: true });
  const work = mkdtempSync(join(o.dir, 'rebound-repl-bench-'));
  live.work = work;
  const say = (line = '') => console.log(line);
  const res: Results = {};
  const started = Date.now();
  try {
    const machine = await machineInfo(work);
    const rev = await output('git', ['rev-parse', '--short', 'HEAD'], 'no git');
    say('# Rebound initial replication and resync vs qemu-img convert and rsync');
    say();
    say(`- machine: ${machine.nproc} CPUs, ${machine.cpu}, ${machine.memGiB.toFixed(1)} GiB RAM`);
    say(`- kernel: ${machine.kernel}; scratch: ${work} (${machine.workFs})`);
    say(`- load average at start: ${machine.loadAvg}`);
    say(
      `- rebound git ${rev}, node ${process.version}; ${await output('qemu-img', ['--version'])}; ` +
        `${await output('nbdkit', ['--version'])}; ${await output('rsync', ['--version'])}`,
    );
    say(`- command: node dist/bench/replication-copy.js ${o.argv.join(' ')}`.trimEnd());
    say(
      '- Rebound: `rebound master-target start`, `rebound process-server start --master-target`, ' +
        '`rebound agent serve --process-server` (mutual TLS, 127.0.0.1, each its own process, run from a ' +
        'copy of dist/src); timed from the agent’s spawn until its resync is idle after a pass and the ' +
        'master target has applied its last seq with no resync range open (status polled every 100 ms)',
    );
    say(
      `- images: sparse, random data in extents averaging ${gib(o.extent)} (4 KiB aligned) with holes between; ` +
        'page cache warm for both sides; `sync` between measurements',
    );
    say();
    const cli = snapshotRebound(join(work, 'rebound'));
    log(`components run from a copy of dist/src: ${cli}`);
    if (o.scenarios.includes('initial')) await scenarioInitial(o, work, cli, res);
    if (o.scenarios.includes('sparse')) await scenarioSparse(o, work, cli, res);
    if (o.scenarios.includes('resync')) await scenarioResync(o, work, cli, res);
    report(o, res, say);
    say();
    say(`- load average at end: ${loadAverage()}; bench wall time ${secs((Date.now() - started) / 1000)}`);
    if (o.json) writeFileSync(o.json, `${JSON.stringify({ machine, options: o, results: res }, null, 2)}\n`);
    return Object.values(res).some((v) => v?.error) ? 1 : 0;
  } finally {
    live.work = undefined;
    rmSync(work, { recursive: true, force: true });
  }
}

runBench(main, emergencyCleanup, log);
