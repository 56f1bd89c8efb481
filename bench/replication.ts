// Sustained end-to-end replication: writes into the agent's NBD export, through the process
// server to the master target, all three real processes on loopback, each hop over mutual
// TLS. Measures what reaches the replica per second in steady state, the RPO of every write
// (acknowledged at the agent -> applied at the master target) and the RSS of each process;
// the same fio jobs through a chain of three nbdkit processes with two TLS hops into a file
// give the ratio. Prints a Markdown report on stdout, progress on stderr.
//
//   npm run build && node dist/bench/replication.js                  # default run, about 3 minutes
//   node dist/bench/replication.js --runtime 5 --rpo-runtime 10 --disk-size 4G   # smoke
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { truncate } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { type FioNbdJob, type FioNbdResult, fioNbd } from './lib/fio-nbd.js';
import { loadAverage, machineInfo, newBlockWriteCeiling, toolVersions } from './lib/machine.js';
import { PeerChain } from './lib/peer-chain.js';
import { killRunning, run, runBench, sleep } from './lib/proc.js';
import { ProgressSampler, tcpBytesSentTo } from './lib/progress.js';
import { type ComponentName, ReboundStack } from './lib/rebound-stack.js';
import { countIn, percentile, SeqTimeline, writeLags } from './lib/rpo.js';
import type { CpuTime, RssPeak } from './lib/rss.js';
import { snapshotRebound } from './lib/servers.js';

const MiB = 2 ** 20;
const MB = 1e6;
const GOAL_MBPS = 216;
/**
 * Writes of each byte that reach the scratch volume: the protected disk image (the
 * workload's own), the agent's change log, the process server's cache and the replica
 * (an overwrite adds its before-image in the undo journal). All four are on one volume here.
 */
const DEVICE_WRITES_PER_BYTE = 4;
const GOAL_RPO_MS = 1000;
const GOAL_RSS = 128 * MiB;
const PHASE_IDS = ['seq', 'rand4k', 'churn', 'seq-off'] as const;
type PhaseId = (typeof PHASE_IDS)[number];

const USAGE = `usage: node dist/bench/replication.js [options]
  --disk-size SIZE     the protected disk (a sparse image; default 16G)
  --runtime SEC        fio runtime of the throughput phases (default 8)
  --rpo-runtime SEC    fio runtime of the churn phase (default 20)
  --churn MBPS         the churn phase's write rate, MB/s (default 54)
  --compressible PCT   fio buffer_compress_percentage: share of each block lz4 can remove (default 50)
  --phases LIST        comma list of ${PHASE_IDS.join(',')} (default all)
  --no-peer            skip the nbdkit chain
  --dir DIR            where the scratch dir is made (default /var/tmp)
  --log-limit SIZE     agent --log-limit (default 32G: a lagging replica must not turn writes into resync)
  --json FILE          also write the results as JSON`;

interface Options {
  diskSize: number;
  diskSizeText: string;
  runtime: number;
  rpoRuntime: number;
  churn: number;
  compressible: number;
  phases: PhaseId[];
  peer: boolean;
  dir: string;
  logLimit: string;
  json?: string;
}

function parseSize(text: string): number {
  const units: Record<string, number> = { '': 1, K: 1024, M: MiB, G: 2 ** 30, T: 2 ** 40 };
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (!m) throw new Error(`'${text}' is not a size (examples: 4G, 512M)`);
  return Math.floor(Number(m[1]) * units[m[2]!.toUpperCase()]!);
}

function positive(text: string, flag: string, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || n > max)
    throw new Error(`${flag} wants a number in (0, ${max}], not '${text}'`);
  return n;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      'disk-size': { type: 'string', default: '16G' },
      runtime: { type: 'string', default: '8' },
      'rpo-runtime': { type: 'string', default: '20' },
      churn: { type: 'string', default: '54' },
      compressible: { type: 'string', default: '50' },
      phases: { type: 'string', default: PHASE_IDS.join(',') },
      'no-peer': { type: 'boolean', default: false },
      dir: { type: 'string', default: '/var/tmp' },
      'log-limit': { type: 'string', default: '32G' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const phases = values.phases.split(',').map((p) => p.trim());
  for (const p of phases) {
    if (!(PHASE_IDS as readonly string[]).includes(p)) throw new Error(`unknown phase '${p}'\n${USAGE}`);
  }
  parseSize(values['log-limit']);
  const compressible = Number(values.compressible);
  if (!Number.isInteger(compressible) || compressible < 0 || compressible > 100) {
    throw new Error(`--compressible wants a percentage 0-100, not '${values.compressible}'`);
  }
  return {
    diskSize: parseSize(values['disk-size']),
    diskSizeText: values['disk-size'],
    runtime: Math.round(positive(values.runtime, '--runtime', 3600)),
    rpoRuntime: Math.round(positive(values['rpo-runtime'], '--rpo-runtime', 3600)),
    churn: positive(values.churn, '--churn', 10_000),
    compressible,
    phases: phases as PhaseId[],
    peer: !values['no-peer'],
    dir: resolve(values.dir),
    logLimit: values['log-limit'],
    json: values.json,
  };
}

interface Phase {
  id: PhaseId;
  label: string;
  compress: 'auto' | 'off';
  job: FioNbdJob;
  /** The nbdkit chain runs the same job (unlimited phases only). */
  peer: boolean;
}

function phases(o: Options): Phase[] {
  const base = { size: o.diskSize, compressible: o.compressible };
  const seq: FioNbdJob = { ...base, rw: 'write', bs: MiB, iodepth: 16, runtimeSec: o.runtime };
  const all: Phase[] = [
    { id: 'seq', label: 'sequential 1M QD16', compress: 'auto', job: seq, peer: true },
    {
      id: 'rand4k',
      label: 'random 4k QD32',
      compress: 'auto',
      job: { ...base, rw: 'randwrite', bs: 4096, iodepth: 32, runtimeSec: o.runtime },
      peer: true,
    },
    {
      id: 'churn',
      label: `sequential 1M at ${o.churn} MB/s`,
      compress: 'auto',
      job: { ...seq, runtimeSec: o.rpoRuntime, rate: Math.round(o.churn * MB) },
      peer: false,
    },
    { id: 'seq-off', label: 'sequential 1M QD16, --compress off', compress: 'off', job: seq, peer: false },
  ];
  return all.filter((p) => o.phases.includes(p.id));
}

interface PhaseResult {
  id: PhaseId;
  label: string;
  compress: 'auto' | 'off';
  fio?: FioNbdResult;
  /** Bytes per second applied at the master target, and acknowledged at the agent, in steady state. */
  appliedRate?: number;
  ackedRate?: number;
  steadySec?: number;
  rpo?: { p50: number; p99: number; max: number; samples: number; missing: number };
  /** Seconds from the end of the writes until the master target had all of them. */
  drainSec?: number;
  /** Bytes on the wire per data byte: agent -> process server, process server -> master target. */
  wireAgentPs?: number;
  wirePsMt?: number;
  dataBytes?: number;
  cpu?: Record<ComponentName, CpuTime>;
  wall?: number;
  peer?: FioNbdResult;
  error?: string;
}

const log = (line: string) =>
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const mbps = (bytesPerSec: number | undefined) =>
  bytesPerSec === undefined ? 'n/a' : (bytesPerSec / MB).toFixed(1);
const mib = (b: number) => `${(b / MiB).toFixed(1)} MiB`;
const ms = (v: number | undefined) =>
  v === undefined ? 'n/a' : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(0)} ms`;

const live: { stack?: ReboundStack; peer?: PeerChain; work?: string } = {};

async function emergencyCleanup(): Promise<void> {
  await killRunning();
  await live.stack?.stop().catch(() => {});
  await live.peer?.stop().catch(() => {});
  if (live.work) rmSync(live.work, { recursive: true, force: true });
}

/** Waits until the master target has applied everything the agent acknowledged. */
async function drained(stack: ReboundStack, timeoutMs: number): Promise<boolean> {
  const target = await stack.agentAcked();
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await stack.mtApplied()) >= target) return true;
    await sleep(25);
  }
  return false;
}

async function runPhase(stack: ReboundStack, sampler: ProgressSampler, p: Phase): Promise<PhaseResult> {
  const r: PhaseResult = { id: p.id, label: p.label, compress: p.compress };
  if (stack.compress !== p.compress) {
    log(`restarting the process server with --compress ${p.compress}`);
    await stack.restartProcessServer(p.compress);
  }
  if (!(await drained(stack, 120_000)))
    throw new Error('the master target did not catch up before the phase');
  const cpu0 = await stack.cpu();
  const wireA0 = await tcpBytesSentTo(stack.port('process server'));
  const wireM0 = await tcpBytesSentTo(stack.port('master target'));
  const seq0 = await stack.agentAcked();
  const t0 = performance.now();
  try {
    r.fio = await fioNbd(stack.nbdUri, p.job);
  } catch (e) {
    r.error = (e as Error).message;
    return r;
  }
  const t1 = performance.now();
  const seq1 = await stack.agentAcked();
  const ok = await drained(stack, 300_000);
  const t2 = performance.now();
  r.drainSec = ok ? (t2 - t1) / 1000 : undefined;
  if (!ok) r.error = 'the master target did not catch up within 300 s of the end of the writes';
  await sleep(3 * sampler.intervalMs); // a last sample of both after the drain
  const cpu1 = await stack.cpu();
  const wireA1 = await tcpBytesSentTo(stack.port('process server'));
  const wireM1 = await tcpBytesSentTo(stack.port('master target'));
  r.wall = (t2 - t0) / 1000;
  r.cpu = {} as Record<ComponentName, CpuTime>;
  for (const k of Object.keys(cpu1) as ComponentName[]) {
    r.cpu[k] = { user: cpu1[k].user - (cpu0[k]?.user ?? 0), sys: cpu1[k].sys - (cpu0[k]?.sys ?? 0) };
  }

  const markers = await stack.markerSeqs();
  const isMarker = new Set(markers);
  const bytes = (a: number, b: number) => (b - a - countIn(markers, a, b)) * p.job.bs;
  const agent = new SeqTimeline(sampler.agent);
  const mt = new SeqTimeline(sampler.mt);
  // Steady state: after the first quarter of the run (at least 2 s), to the end of the writes.
  const warm = Math.max(2000, (t1 - t0) / 4);
  const tw = t0 + warm;
  if (t1 - tw > 1000) {
    r.steadySec = (t1 - tw) / 1000;
    r.appliedRate = bytes(mt.seqAt(tw), mt.seqAt(t1)) / r.steadySec;
    r.ackedRate = bytes(agent.seqAt(tw), agent.seqAt(t1)) / r.steadySec;
    const { lags, missing } = writeLags(agent, mt, agent.seqAt(tw), seq1, (s) => isMarker.has(s));
    if (lags.length) {
      r.rpo = {
        p50: percentile(lags, 50)!,
        p99: percentile(lags, 99)!,
        max: lags[lags.length - 1]!,
        samples: lags.length,
        missing,
      };
    }
  }
  r.dataBytes = bytes(seq0, seq1);
  if (r.dataBytes > 0) {
    r.wireAgentPs = (wireA1 - wireA0) / r.dataBytes;
    r.wirePsMt = (wireM1 - wireM0) / r.dataBytes;
  }
  return r;
}

async function runPeer(o: Options, work: string, ps: Phase[], results: PhaseResult[]): Promise<RssPeak[]> {
  const image = join(work, 'peer.img');
  writeFileSync(image, '');
  await truncate(image, o.diskSize);
  const chain = await PeerChain.start(work, image);
  live.peer = chain;
  try {
    for (const p of ps.filter((x) => x.peer)) {
      log(`peer (nbdkit chain): ${p.label}`);
      const r = results.find((x) => x.id === p.id)!;
      try {
        r.peer = await fioNbd(chain.uri, p.job);
      } catch (e) {
        r.error = `${r.error ? `${r.error}; ` : ''}peer: ${(e as Error).message}`;
      }
    }
  } finally {
    live.peer = undefined;
  }
  return chain.stop();
}

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  for (const t of ['fio', 'nbdkit', 'nbdinfo', 'ss']) {
    const r = await run('sh', ['-c', `command -v ${t}`], { okCodes: [0, 1, 127] });
    if (r.code !== 0) throw new Error(`missing tool: ${t}`);
  }
  mkdirSync(o.dir, { recursive: true });
  const work = mkdtempSync(join(o.dir, 'rebound-repl-'));
  live.work = work;
  const say = (line = '') => console.log(line);
  const started = performance.now();
  try {
    const [machine, versions] = await Promise.all([machineInfo(work), toolVersions()]);
    log('measuring the scratch volume: sequential write of new blocks with fdatasync');
    await run('sync', []); // no dirty pages of earlier work in this measurement
    const ceiling = await newBlockWriteCeiling(work);
    const cli = snapshotRebound(join(work, 'rebound'));
    const ps = phases(o);
    const disk = join(work, 'disk.img');
    writeFileSync(disk, '');
    await truncate(disk, o.diskSize);
    log(`starting master target, process server and agent (from a copy of dist/src: ${cli})`);
    const stack = await ReboundStack.start({
      cli,
      work,
      diskPath: disk,
      compress: 'auto',
      logLimit: o.logLimit,
    });
    live.stack = stack;
    const initialCopySec = stack.initialCopySec;
    const sampler = new ProgressSampler(
      () => stack.agentAcked(),
      () => stack.mtApplied(),
    ).start();
    const results: PhaseResult[] = [];
    let resync = 0;
    let rss: Record<ComponentName, RssPeak | undefined>;
    try {
      for (const p of ps) {
        log(`rebound: ${p.label} (${p.job.runtimeSec} s)`);
        let r: PhaseResult;
        try {
          r = await runPhase(stack, sampler, p);
        } catch (e) {
          r = { id: p.id, label: p.label, compress: p.compress, error: (e as Error).message };
        }
        if (r.error) r.error += stack.warnings();
        results.push(r);
        log(
          r.error
            ? `  FAILED: ${r.error}`
            : `  fio ${mbps(r.fio?.bw)} MB/s, applied ${mbps(r.appliedRate)} MB/s, ` +
                `RPO p99 ${ms(r.rpo?.p99)}, drain ${r.drainSec?.toFixed(1)} s`,
        );
      }
      resync = await stack.agentResyncRegions();
    } finally {
      sampler.stop();
      rss = await stack.stop();
      live.stack = undefined;
    }
    const peerRss = o.peer && ps.some((p) => p.peer) ? await runPeer(o, work, ps, results) : [];
    const totalSec = (performance.now() - started) / 1000;

    say('# End-to-end replication: agent -> process server -> master target, over mutual TLS');
    say();
    say(`- machine: ${machine.nproc} CPUs, ${machine.cpu}, ${machine.memGiB.toFixed(1)} GiB RAM`);
    say(`- kernel: ${machine.kernel}; scratch: ${work} (${machine.workFs})`);
    say(`- load average at start: ${machine.loadAvg}; at end: ${loadAverage()}`);
    say(`- rebound ${versions.rebound}, node ${versions.node}, ${versions.fio}, ${versions.nbdkit}`);
    say(
      `- the initial replication of the empty ${o.diskSizeText} disk ended ${initialCopySec.toFixed(1)} s after the agent started; phases start after it`,
    );
    say(
      `- settings: --disk-size ${o.diskSizeText} --runtime ${o.runtime} --rpo-runtime ${o.rpoRuntime} ` +
        `--churn ${o.churn} --compressible ${o.compressible} --phases ${o.phases.join(',')}` +
        `${o.peer ? '' : ' --no-peer'} --log-limit ${o.logLimit}; whole run ${totalSec.toFixed(0)} s`,
    );
    say(
      `- scratch volume, sequential write of new blocks with fdatasync (\`dd bs=1M count=1024 conv=fdatasync\`, before the phases): ` +
        `${ceiling.toFixed(0)} MB/s. Each byte written reaches it ${DEVICE_WRITES_PER_BYTE} times (disk image, agent log, ` +
        `process-server cache, replica), so no chain of durable hops on this one volume applies more than ` +
        `${(ceiling / DEVICE_WRITES_PER_BYTE).toFixed(0)} MB/s`,
    );
    say(
      `- writer: \`fio --ioengine=nbd --uri=nbd://127.0.0.1:PORT/d --time_based --buffer_compress_percentage=${o.compressible} --refill_buffers\`` +
        ' into the agent; rebound components are real processes (`rebound master-target start`, ' +
        '`rebound process-server start --compress auto|off`, `rebound agent serve --process-server`)',
    );
    say(
      '- peer: the same fio job into `nbdkit nbd` (plain in, TLS out) -> `nbdkit --tls=require --tls-verify-peer nbd` ' +
        '(TLS in and out) -> `nbdkit --tls=require --tls-verify-peer file`: three processes, two mutual-TLS hops, into a file',
    );
    say();
    say(
      '| phase | fio MB/s (acked at agent) | applied at master target MB/s (steady) | peer MB/s | ratio | ' +
        'RPO p50 | RPO p99 | RPO max | drain | wire/data agent→PS | wire/data PS→MT |',
    );
    say('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of results) {
      const ratio =
        r.appliedRate !== undefined && r.peer ? `${(r.appliedRate / r.peer.bw).toFixed(2)}x` : 'n/a';
      say(
        `| ${r.label} | ${mbps(r.fio?.bw)} | ${mbps(r.appliedRate)} | ${mbps(r.peer?.bw)} | ${ratio} | ` +
          `${ms(r.rpo?.p50)} | ${ms(r.rpo?.p99)} | ${ms(r.rpo?.max)} | ` +
          `${r.drainSec === undefined ? 'n/a' : `${r.drainSec.toFixed(1)} s`} | ` +
          `${r.wireAgentPs?.toFixed(2) ?? 'n/a'} | ${r.wirePsMt?.toFixed(2) ?? 'n/a'} |`,
      );
    }
    say();
    say('| process | peak VmRSS | VmHWM | ≤ 128 MiB |');
    say('|---|---:|---:|:-:|');
    for (const [name, peak] of Object.entries(rss)) {
      if (!peak) continue;
      const top = Math.max(peak.sampledPeak, peak.hwm);
      say(`| ${name} | ${mib(peak.sampledPeak)} | ${mib(peak.hwm)} | ${top <= GOAL_RSS ? 'yes' : 'NO'} |`);
    }
    for (const [i, peak] of peerRss.entries()) {
      say(
        `| peer nbdkit ${['file', 'middle', 'front'][i]} | ${mib(peak.sampledPeak)} | ${mib(peak.hwm)} | (reference) |`,
      );
    }
    say();
    const seq = results.find((r) => r.id === 'seq');
    const churn = results.find((r) => r.id === 'churn');
    say('Goals:');
    if (seq) {
      say(
        `- throughput ≥ ${GOAL_MBPS} MB/s (sequential, applied at the master target): ${mbps(seq.appliedRate)} MB/s: ` +
          `${seq.appliedRate !== undefined && seq.appliedRate / MB >= GOAL_MBPS ? 'met' : 'NOT met'}` +
          ` (this volume's ceiling for ${DEVICE_WRITES_PER_BYTE} writes per byte: ${(ceiling / DEVICE_WRITES_PER_BYTE).toFixed(0)} MB/s)`,
      );
    }
    if (churn) {
      say(
        `- p99 RPO ≤ 1 s at ${o.churn} MB/s churn: ${ms(churn.rpo?.p99)}: ` +
          `${churn.rpo && churn.rpo.p99 <= GOAL_RPO_MS ? 'met' : 'NOT met'}`,
      );
    }
    const over = Object.values(rss).some((p) => p && Math.max(p.sampledPeak, p.hwm) > GOAL_RSS);
    say(`- RSS ≤ 128 MiB for each process (disk ${o.diskSizeText}): ${over ? 'NOT met' : 'met'}`);
    if (resync) say(`- WARNING: the agent marked ${resync} regions resync required (its log limit was hit)`);
    say();
    say(
      'MB/s are 10^6 bytes/s. Steady state: from a quarter into each run (at least 2 s) to the end of the writes. ' +
        `RPO: for every write acknowledged in the steady window, from its acknowledgement at the agent (the agent's ` +
        `completion watermark, polled every ${sampler.intervalMs} ms through agent.sock, interpolated) to the first poll of the ` +
        `master target's replica-state.json that shows it applied (so up to ${sampler.intervalMs} ms pessimistic). ` +
        'wire/data: TCP bytes sent on the hop (kernel TCP_INFO via ss: TLS records and frame headers included) per data byte written.',
    );
    say();
    say('Every phase:');
    say();
    for (const r of results) {
      const parts: string[] = [];
      if (r.fio) {
        parts.push(
          `fio ${mbps(r.fio.bw)} MB/s, ${r.fio.iops.toFixed(0)} IOPS, ${mib(r.fio.ioBytes)} in ${r.fio.runtimeSec.toFixed(1)} s` +
            (r.fio.p99LatMs !== undefined ? `, p99 latency ${r.fio.p99LatMs.toFixed(2)} ms` : ''),
        );
      }
      if (r.ackedRate !== undefined)
        parts.push(`agent acked ${mbps(r.ackedRate)} MB/s over ${r.steadySec?.toFixed(1)} s`);
      if (r.rpo)
        parts.push(
          `${r.rpo.samples} RPO samples${r.rpo.missing ? ` (${r.rpo.missing} never seen applied)` : ''}`,
        );
      if (r.dataBytes !== undefined) parts.push(`${mib(r.dataBytes)} of data`);
      if (r.cpu && r.wall) {
        parts.push(
          `CPU over ${r.wall.toFixed(1)} s: ` +
            Object.entries(r.cpu)
              .map(
                ([k, c]) =>
                  `${k} ${(c.user + c.sys).toFixed(1)} s (${(((c.user + c.sys) / r.wall!) * 100).toFixed(0)}%)`,
              )
              .join(', '),
        );
      }
      if (r.peer) parts.push(`peer fio ${mbps(r.peer.bw)} MB/s, ${r.peer.iops.toFixed(0)} IOPS`);
      if (r.error) parts.push(`ERROR: ${r.error}`);
      say(`- ${r.id}: ${parts.join('; ')}`);
    }
    if (o.json) {
      writeFileSync(
        o.json,
        `${JSON.stringify({ machine, versions, options: o, results, rss, peerRss }, null, 2)}\n`,
      );
    }
    return results.some((r) => r.error) ? 1 : 0;
  } finally {
    live.work = undefined;
    const t = performance.now();
    rmSync(work, { recursive: true, force: true });
    log(`scratch dir removed in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  }
}

runBench(main, emergencyCleanup, log);
