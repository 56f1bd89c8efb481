// Rebound's agent (capture on) against `nbdkit file`, side by side, same clients,
// same kind of backing file. Prints a Markdown report on stdout, progress on stderr.
//
//   npm run bench                                  # full run (1 GiB, fio 20 s, best of 2)
//   node dist/bench/nbd-vs-nbdkit.js --size 128M --fio-size 64M --fio-runtime 5 --runs 1   # smoke
//
// Every workload runs in child processes; this process only starts servers and
// clients, samples the agent's RSS, and cleans up (mounts, FUSE, servers, files).
import { randomFill } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open, truncate } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadAverage, machineInfo, newBlockWriteCeiling, toolVersions } from './lib/machine.js';
import { killRunning, run, runBench } from './lib/proc.js';
import { type CpuTime, cpuTime, maxPeak, type RssPeak } from './lib/rss.js';
import {
  type BenchServer,
  type CaptureSummary,
  captureSummary,
  exportFlags,
  type ServerKind,
  snapshotRebound,
  startFloor,
  startNbdkit,
  startPlain,
  startRebound,
} from './lib/servers.js';
import { fioOnExt4, type Measurement, nbdcopyInto, qemuImgConvertInto } from './lib/workloads.js';

const MiB = 2 ** 20;
const GOAL_RATIO = 0.8;
const GOAL_RSS = 128 * MiB;
const WORKLOAD_IDS = ['nbdcopy', 'qemu-img', 'fio-4k', 'fio-1m'] as const;
type WorkloadId = (typeof WORKLOAD_IDS)[number];

const USAGE = `usage: node dist/bench/nbd-vs-nbdkit.js [options]   (run as root: fio mounts ext4 via loop + FUSE)
  --size SIZE          source size for nbdcopy/qemu-img, and the image size (default 1G)
  --fio-size SIZE      fio file size on ext4 (default 256M); the fio image is max(--size, 2x this + 64M)
  --fio-runtime SEC    fio time-based runtime (default 20)
  --fio-iodepth N      fio iodepth (default 16)
  --runs N             runs per workload and server; best is reported (default 2)
  --workloads LIST     comma list of ${WORKLOAD_IDS.join(',')} (default all)
  --dir DIR            where the scratch dir is made (default /var/tmp); images and source live there
  --log-limit SIZE     agent --log-limit, large enough that capture stays in the log (default 32G)
  --no-flush           run nbdcopy without --flush (the issue's exact command; measures page cache)
  --plain              also run Rebound's NBD server without capture (bench/plain-nbd-server.ts):
                       what the NBD layer in Node costs before any capture
  --floor              also run the least NBD server Node can be (bench/minimal-nbd-server.ts: a
                       synchronous pread/pwrite and one socket write per request): about the
                       most a data path on a JavaScript event loop reaches here
  --json FILE          also write the results as JSON`;

interface Options {
  size: number;
  sizeText: string;
  fioSize: number;
  fioSizeText: string;
  fioRuntime: number;
  fioIodepth: number;
  runs: number;
  workloads: WorkloadId[];
  dir: string;
  logLimit: string;
  flush: boolean;
  plain: boolean;
  floor: boolean;
  json?: string;
}

function parseSize(text: string): number {
  const units: Record<string, number> = { '': 1, K: 1024, M: MiB, G: 2 ** 30, T: 2 ** 40 };
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (!m) throw new Error(`'${text}' is not a size (examples: 128M, 1G)`);
  return Math.floor(Number(m[1]) * units[m[2]!.toUpperCase()]!);
}

function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} wants a positive integer, not '${text}'`);
  return n;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      size: { type: 'string', default: '1G' },
      'fio-size': { type: 'string', default: '256M' },
      'fio-runtime': { type: 'string', default: '20' },
      'fio-iodepth': { type: 'string', default: '16' },
      runs: { type: 'string', default: '2' },
      workloads: { type: 'string', default: WORKLOAD_IDS.join(',') },
      dir: { type: 'string', default: '/var/tmp' },
      'log-limit': { type: 'string', default: '32G' },
      'no-flush': { type: 'boolean', default: false },
      plain: { type: 'boolean', default: false },
      floor: { type: 'boolean', default: false },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const workloads = values.workloads.split(',').map((w) => w.trim());
  for (const w of workloads) {
    if (!(WORKLOAD_IDS as readonly string[]).includes(w))
      throw new Error(`unknown workload '${w}'\n${USAGE}`);
  }
  parseSize(values['log-limit']); // validate early
  return {
    size: parseSize(values.size),
    sizeText: values.size,
    fioSize: parseSize(values['fio-size']),
    fioSizeText: values['fio-size'],
    fioRuntime: positiveInt(values['fio-runtime'], '--fio-runtime'),
    fioIodepth: positiveInt(values['fio-iodepth'], '--fio-iodepth'),
    runs: positiveInt(values.runs, '--runs'),
    workloads: workloads as WorkloadId[],
    dir: resolve(values.dir),
    logLimit: values['log-limit'],
    flush: !values['no-flush'],
    plain: values.plain,
    floor: values.floor,
    json: values.json,
  };
}

interface Workload {
  id: WorkloadId;
  label: string;
  unit: 'MB/s' | 'IOPS';
  imageBytes: number;
  /** Compare the image with the source after the run. */
  verify: boolean;
  run: (url: string, runDir: string) => Promise<Measurement>;
}

function workloads(o: Options, src: string): Workload[] {
  const fioImage = Math.max(o.size, 2 * o.fioSize + 64 * MiB);
  const fio =
    (rw: 'randwrite' | 'write', bs: string, report: 'iops' | 'mbps') => (url: string, dir: string) =>
      fioOnExt4(url, dir, {
        rw,
        bs,
        size: o.fioSizeText,
        runtimeSec: o.fioRuntime,
        iodepth: o.fioIodepth,
        report,
      });
  const all: Workload[] = [
    {
      id: 'nbdcopy',
      label: `nbdcopy${o.flush ? ' --flush' : ''} ${o.sizeText} file → export`,
      unit: 'MB/s',
      imageBytes: o.size,
      verify: true,
      run: (url) => nbdcopyInto(src, o.size, url, o.flush),
    },
    {
      id: 'qemu-img',
      label: `qemu-img convert -n ${o.sizeText} file → export`,
      unit: 'MB/s',
      imageBytes: o.size,
      verify: true,
      run: (url) => qemuImgConvertInto(src, o.size, url),
    },
    {
      id: 'fio-4k',
      label: `fio 4k randwrite QD${o.fioIodepth}, ext4 via nbdfuse+loop`,
      unit: 'IOPS',
      imageBytes: fioImage,
      verify: false,
      run: fio('randwrite', '4k', 'iops'),
    },
    {
      id: 'fio-1m',
      label: `fio 1M seq write QD${o.fioIodepth}, ext4 via nbdfuse+loop`,
      unit: 'MB/s',
      imageBytes: fioImage,
      verify: false,
      run: fio('write', '1M', 'mbps'),
    },
  ];
  return all.filter((w) => o.workloads.includes(w.id));
}

interface RunRecord {
  workload: WorkloadId;
  server: ServerKind;
  run: number;
  value?: number;
  detail?: string;
  error?: string;
  rss?: RssPeak;
  stoppedCleanly?: boolean;
  exit?: string;
  verified?: boolean;
  capture?: CaptureSummary;
  /** Server CPU seconds during the workload (for fio: mkfs, mount, fio, umount), and its wall time. */
  cpu?: CpuTime & { wall: number };
}

const log = (line: string) =>
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const mib = (b: number) => `${(b / MiB).toFixed(1)} MiB`;

/** Non-zero, incompressible data: random bytes, written in 4 MiB chunks. */
async function makeSource(path: string, bytes: number): Promise<void> {
  const fh = await open(path, 'w');
  try {
    const buf = Buffer.alloc(4 * MiB);
    for (let off = 0; off < bytes; off += buf.length) {
      const n = Math.min(buf.length, bytes - off);
      await new Promise<void>((res, rej) => randomFill(buf, 0, n, (e) => (e ? rej(e) : res())));
      await fh.write(buf, 0, n, off);
    }
  } finally {
    await fh.close();
  }
}

// What a signal handler must undo if the bench is interrupted mid-run.
const live: { runDir?: string; server?: BenchServer; workDir?: string } = {};

async function emergencyCleanup(): Promise<void> {
  await killRunning(); // the workload's clients (fio, nbdcopy...) first
  if (live.runDir) {
    await run('umount', ['-l', join(live.runDir, 'mnt')], { okCodes: [0, 1, 32], timeoutMs: 30_000 }).catch(
      () => {},
    );
    await run('fusermount3', ['-u', '-z', join(live.runDir, 'fuse')], {
      okCodes: [0, 1],
      timeoutMs: 30_000,
    }).catch(() => {});
  }
  if (live.server) await live.server.stop().catch(() => {});
  if (live.workDir) rmSync(live.workDir, { recursive: true, force: true });
}

async function oneRun(o: Options, w: Workload, kind: ServerKind, n: number, work: string, src: string) {
  const rec: RunRecord = { workload: w.id, server: kind, run: n };
  const runDir = join(work, `${w.id}-${kind}-${n}`);
  const image = join(runDir, 'disk.img');
  const dataDir = join(runDir, 'agent');
  mkdirSync(runDir, { recursive: true });
  live.runDir = runDir;
  try {
    writeFileSync(image, '');
    await truncate(image, w.imageBytes); // fresh sparse image
    await run('sync', []); // no dirty pages of earlier runs in this measurement
    const server =
      kind === 'nbdkit'
        ? await startNbdkit(image)
        : kind === 'plain'
          ? await startPlain(image)
          : kind === 'floor'
            ? await startFloor(image)
            : await startRebound(image, dataDir, o.logLimit);
    live.server = server;
    try {
      if (!flags[kind]) flags[kind] = await exportFlags(server.url);
      const cpu0 = await cpuTime(server.pid);
      const t0 = process.hrtime.bigint();
      const m = await w.run(server.url, runDir);
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      const cpu1 = await cpuTime(server.pid);
      if (cpu0 && cpu1) rec.cpu = { user: cpu1.user - cpu0.user, sys: cpu1.sys - cpu0.sys, wall };
      rec.value = m.value;
      rec.detail = m.detail;
    } catch (e) {
      rec.error = (e as Error).message;
      if (kind === 'rebound') rec.error += `\n  agent stderr tail: ${server.stderr().trim().slice(-2000)}`;
    } finally {
      const s = await server.stop();
      live.server = undefined;
      rec.rss = s.rss;
      rec.stoppedCleanly = s.clean;
      rec.exit = s.exit;
    }
    if (kind === 'rebound') rec.capture = await captureSummary(dataDir);
    if (w.verify && rec.value !== undefined) {
      const c = await run('cmp', ['-n', String(o.size), src, image], { okCodes: [0, 1], timeoutMs: 600_000 });
      rec.verified = c.code === 0;
      if (!rec.verified) rec.error = `image differs from the source: ${c.stdout.trim()}`;
    }
  } catch (e) {
    rec.error ??= (e as Error).message;
  } finally {
    await run('umount', ['-l', join(runDir, 'mnt')], { okCodes: [0, 1, 32] }).catch(() => {});
    live.runDir = undefined;
    rmSync(runDir, { recursive: true, force: true });
  }
  return rec;
}

const flags: Partial<Record<ServerKind, string>> = {};

function fmt(v: number | undefined, unit: string): string {
  if (v === undefined) return 'failed';
  return unit === 'IOPS' ? v.toFixed(0) : v.toFixed(1);
}

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  const missing: string[] = [];
  for (const t of [
    'nbdkit',
    'nbdinfo',
    'nbdcopy',
    'qemu-img',
    'fio',
    'nbdfuse',
    'fusermount3',
    'mkfs.ext4',
    'cmp',
  ]) {
    const r = await run('sh', ['-c', `command -v ${t}`], { okCodes: [0, 1, 127] });
    if (r.code !== 0) missing.push(t);
  }
  if (missing.length) throw new Error(`missing tools: ${missing.join(', ')} (scripts/install-deps.sh)`);
  if (o.workloads.some((w) => w.startsWith('fio')) && process.getuid?.() !== 0) {
    throw new Error(
      'the fio workloads mount ext4 through loop + FUSE: run as root (or --workloads nbdcopy,qemu-img)',
    );
  }

  mkdirSync(o.dir, { recursive: true });
  const work = mkdtempSync(join(o.dir, 'rebound-bench-'));
  live.workDir = work;
  const records: RunRecord[] = [];
  const say = (line = '') => console.log(line);
  try {
    const [machine, versions] = await Promise.all([machineInfo(work), toolVersions()]);
    say('# Rebound agent (capture on) vs nbdkit file');
    say();
    say(`- machine: ${machine.nproc} CPUs, ${machine.cpu}, ${machine.memGiB.toFixed(1)} GiB RAM`);
    say(`- kernel: ${machine.kernel}; scratch: ${work} (${machine.workFs})`);
    say(`- load average at start: ${machine.loadAvg}`);
    const ceiling = await newBlockWriteCeiling(work);
    say(
      `- scratch volume, sequential write of new blocks with fdatasync (\`dd bs=1M count=1024 conv=fdatasync\`): ` +
        `${ceiling.toFixed(0)} MB/s — the rate a change log can sustain once a workload flushes`,
    );
    say('- tools:');
    for (const [k, v] of Object.entries(versions)) say(`  - ${k}: ${v}`);
    say(
      `- settings: --size ${o.sizeText} --fio-size ${o.fioSizeText} --fio-runtime ${o.fioRuntime} ` +
        `--fio-iodepth ${o.fioIodepth} --runs ${o.runs} --log-limit ${o.logLimit}${o.flush ? '' : ' --no-flush'}`,
    );
    say(
      '- servers: `nbdkit -f -i 127.0.0.1 -p PORT file disk.img` and ' +
        `\`rebound agent serve --disk disk0=disk.img --listen 127.0.0.1:0 --log-limit ${o.logLimit}\`` +
        ' (capture on; run from a copy of dist/src taken at start)' +
        (o.plain
          ? ', `node dist/bench/plain-nbd-server.js disk.img` (the same NBD server, no capture)'
          : '') +
        (o.floor
          ? ', `node dist/bench/minimal-nbd-server.js disk.img` (the least NBD server in Node: sync pread/pwrite, one socket write per request)'
          : '') +
        ', each on a fresh sparse image',
    );
    say(
      `- clients: \`nbdcopy${o.flush ? ' --flush' : ''} src.raw URL\`, \`qemu-img convert -n -f raw -O raw src.raw URL\`, ` +
        '`nbdfuse DIR URL` + `mkfs.ext4` + `mount -o loop` + `fio --ioengine=libaio --direct=1 --time_based --end_fsync=1`',
    );
    say();

    const cli = snapshotRebound(join(work, 'rebound'));
    log(`agents run from a copy of dist/src: ${cli}`);
    const src = join(work, 'src.raw');
    log(`writing ${mib(o.size)} of random data to ${src}`);
    await makeSource(src, o.size);
    const ws = workloads(o, src);
    const kinds = serverKinds(o);
    const total = ws.length * o.runs * kinds.length;
    let done = 0;
    for (let n = 1; n <= o.runs; n++) {
      for (const [i, w] of ws.entries()) {
        // Alternate which server goes first, across workloads and across runs.
        const order = (n - 1 + i) % 2 === 0 ? kinds : [...kinds].reverse();
        for (const kind of order) {
          log(`[${++done}/${total}] ${w.id} on ${kind}, run ${n}/${o.runs}`);
          const rec = await oneRun(o, w, kind, n, work, src);
          records.push(rec);
          log(
            rec.error
              ? `  FAILED: ${rec.error}`
              : `  ${fmt(rec.value, w.unit)} ${w.unit} (${rec.detail}); peak RSS ${mib(rec.rss?.sampledPeak ?? 0)}`,
          );
        }
      }
    }
    report(o, ws, records, say);
    say();
    say(`- load average at end: ${loadAverage()}`);
    if (o.json) {
      writeFileSync(
        o.json,
        `${JSON.stringify({ machine, versions, options: o, flags, records }, null, 2)}\n`,
      );
    }
    return records.some((r) => r.error) ? 1 : 0;
  } finally {
    live.workDir = undefined;
    rmSync(work, { recursive: true, force: true });
  }
}

/** nbdkit and the agent always; the NBD-layer-only and Node-floor servers when asked for. */
function serverKinds(o: Options): ServerKind[] {
  return [
    'nbdkit',
    'rebound',
    ...(o.plain ? (['plain'] as const) : []),
    ...(o.floor ? (['floor'] as const) : []),
  ];
}

function report(o: Options, ws: Workload[], records: RunRecord[], say: (l?: string) => void): void {
  const best = (w: WorkloadId, k: ServerKind) => {
    const vs = records.filter((r) => r.workload === w && r.server === k && r.value !== undefined && !r.error);
    return vs.length ? Math.max(...vs.map((r) => r.value!)) : undefined;
  };
  const peakOf = (rs: RunRecord[]) => rs.reduce<RssPeak | undefined>((p, r) => maxPeak(p, r.rss), undefined);
  const ratioText = (x: number | undefined, y: number | undefined) =>
    x && y !== undefined ? `${(y / x).toFixed(2)}x` : 'n/a';
  const extra = serverKinds(o).slice(2) as ('plain' | 'floor')[];
  const extraTitle = { plain: 'rebound NBD server without capture', floor: 'least NBD server in Node' };
  say(
    `| workload | nbdkit | rebound | ratio (rebound/nbdkit) | ≥ ${GOAL_RATIO}x | rebound peak RSS |` +
      extra.map((k) => ` ${extraTitle[k]} | its ratio |`).join(''),
  );
  say(`|---|---:|---:|---:|:-:|---:|${extra.map(() => '---:|---:|').join('')}`);
  for (const w of ws) {
    const a = best(w.id, 'nbdkit');
    const b = best(w.id, 'rebound');
    const ratio = a && b !== undefined ? b / a : undefined;
    const rss = peakOf(records.filter((r) => r.workload === w.id && r.server === 'rebound'));
    say(
      `| ${w.label} (${w.unit}) | ${fmt(a, w.unit)} | ${fmt(b, w.unit)} | ` +
        `${ratioText(a, b)} | ${ratio === undefined ? '?' : ratio >= GOAL_RATIO ? 'yes' : 'NO'} | ` +
        `${rss ? mib(rss.sampledPeak) : 'n/a'} |` +
        extra.map((k) => ` ${fmt(best(w.id, k), w.unit)} | ${ratioText(a, best(w.id, k))} |`).join(''),
    );
  }
  say();
  const agent = peakOf(records.filter((r) => r.server === 'rebound'));
  const nbdkit = peakOf(records.filter((r) => r.server === 'nbdkit'));
  if (agent) {
    say(
      `Agent peak RSS over the whole run: **${mib(agent.sampledPeak)}** (VmRSS sampled every 100 ms, ` +
        `${agent.samples} samples; kernel VmHWM ${mib(agent.hwm)}); goal ≤ 128 MiB: ` +
        `${Math.max(agent.sampledPeak, agent.hwm) <= GOAL_RSS ? 'met' : 'NOT met'}.` +
        (nbdkit ? ` nbdkit peak RSS ${mib(nbdkit.sampledPeak)} for reference.` : ''),
    );
  }
  say(`Best of ${o.runs} run(s) each; MB/s are 10^6 bytes per second; higher is better everywhere.`);
  say();
  say('Export flags as nbdinfo sees them:');
  for (const k of serverKinds(o)) say(`- ${k}: ${flags[k] ?? 'n/a'}`);
  say();
  say('Every run:');
  say();
  for (const r of records) {
    const w = ws.find((x) => x.id === r.workload)!;
    const parts: string[] = [];
    if (r.value !== undefined) parts.push(`${fmt(r.value, w.unit)} ${w.unit} (${r.detail})`);
    if (r.verified !== undefined) parts.push(r.verified ? 'image = source' : 'IMAGE DIFFERS');
    if (r.rss) parts.push(`peak RSS ${mib(r.rss.sampledPeak)}`);
    if (r.cpu) {
      const busy = (r.cpu.user + r.cpu.sys) / r.cpu.wall;
      parts.push(
        `server CPU ${r.cpu.user.toFixed(1)} s user + ${r.cpu.sys.toFixed(1)} s sys (${(busy * 100).toFixed(0)}% of one CPU)`,
      );
    }
    if (r.stoppedCleanly === false) parts.push(`did not stop cleanly (${r.exit})`);
    const c = r.capture;
    if (c) {
      parts.push(
        `log: ${c.records} records, ${c.writes} writes ${mib(c.writeBytes)}, ${c.zeroes} zeroes, ${c.trims} trims, ` +
          `${c.flushMarkers} flush markers, ${mib(c.logBytes)} on disk` +
          (c.resyncRegions ? `, ${c.resyncRegions} RESYNC-REQUIRED regions (log limit hit)` : ''),
      );
    }
    if (r.error) parts.push(`ERROR: ${r.error}`);
    say(`- ${r.workload} ${r.server} #${r.run}: ${parts.join('; ')}`);
  }
}

runBench(main, emergencyCleanup, log);
