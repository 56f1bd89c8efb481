// The configuration server's API under the load of a large deployment, on SQLite and on
// PostgreSQL in the same run (issue #4: 1000 agents heartbeating every 15 s plus API reads;
// goal p99 <= 50 ms):
//
//   npm run build && node dist/bench/config-server-api.js                 # default (~4 min)
//   node dist/bench/config-server-api.js --agents 100 --seconds 15        # smoke run
//
// Each database gets its own `rebound server start` (a child process, built-in process server
// and master target off) on a data dir seeded with N machines (2 disks each), N replicated
// items, N finished jobs (3 steps each) and a few alerts. A separate load process
// (bench/lib/api-load.ts) plays N agents, each with its own certificate from the server's CA and
// its own keep-alive TLS 1.3 connection: a heartbeat every interval (when the server has POST
// /api/v1/heartbeats) and a read of its own machine half an interval later (GET /api/v1/sites
// where the server has no machine route), plus an admin listing machines, items, jobs, sites
// and alerts (those the server has) at a fixed rate. The first interval is warm-up (every agent
// connects once); latencies are measured over the next --seconds.
//
// Prints a Markdown report on stdout, progress on stderr. The goal is printed, never asserted.

import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Kysely } from 'kysely';
import { waitForServerReady } from '../src/cli/server-ready.js';
import { openDatabase } from '../src/control-plane/db/database.js';
import type { Database } from '../src/control-plane/db/schema.js';
import { initCa, issueCert } from '../src/pki/ca.js';
import type { LoadAgent, LoadConfig, LoadResult } from './lib/api-load.js';
import { loadAverage, machineInfo } from './lib/machine.js';
import { type PgCluster, pgVersion, startPgCluster } from './lib/postgres.js';
import { killRunning, output, runBench, stopChild, Tail } from './lib/proc.js';
import { cpuTime, RssSampler } from './lib/rss.js';
import { snapshotRebound } from './lib/servers.js';

const GOAL_P99_MS = 50;
const DATABASES = ['sqlite', 'postgres'] as const;
type DbKind = (typeof DATABASES)[number];
const ADMIN_READS = ['/api/v1/machines', '/api/v1/items', '/api/v1/jobs', '/api/v1/sites', '/api/v1/alerts'];

const USAGE = `usage: node dist/bench/config-server-api.js [options]
  --agents N         simulated agents, each with its own certificate and connection (default 1000)
  --interval SEC     heartbeat interval of each agent (default 15)
  --seconds SEC      measured window per database, after one interval of warm-up (default 60)
  --admin-rps N      admin list requests per second, round robin (default 5)
  --no-heartbeats    agents only read (to tell the cost of the heartbeats' writes apart)
  --db LIST          comma list of ${DATABASES.join(',')} (default both)
  --dir DIR          where the scratch dir is made (default /var/tmp)
  --json FILE        also write the results as JSON`;

interface Options {
  agents: number;
  interval: number;
  seconds: number;
  adminRps: number;
  heartbeats: boolean;
  dbs: DbKind[];
  dir: string;
  json?: string;
  argv: string[];
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      agents: { type: 'string', default: '1000' },
      interval: { type: 'string', default: '15' },
      seconds: { type: 'string', default: '60' },
      'admin-rps': { type: 'string', default: '5' },
      'no-heartbeats': { type: 'boolean', default: false },
      db: { type: 'string', default: DATABASES.join(',') },
      dir: { type: 'string', default: '/var/tmp' },
      json: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const num = (name: string, v: string, min: number) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} ${v} is not a number >= ${min}\n${USAGE}`);
    return n;
  };
  const dbs = values.db.split(',').map((d) => d.trim());
  for (const d of dbs) {
    if (!(DATABASES as readonly string[]).includes(d))
      throw new Error(`--db ${d} is not one of ${DATABASES.join(', ')}`);
  }
  return {
    agents: Math.floor(num('agents', values.agents, 1)),
    interval: num('interval', values.interval, 1),
    seconds: num('seconds', values.seconds, 1),
    adminRps: num('admin-rps', values['admin-rps'], 0),
    heartbeats: !values['no-heartbeats'],
    dbs: dbs as DbKind[],
    dir: values.dir,
    json: values.json,
    argv,
  };
}

const log = (line: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const name4 = (i: number) => String(i + 1).padStart(4, '0');

// What an interrupt or an error must undo.
const live: { pg?: PgCluster; work?: string } = {};

async function emergencyCleanup(): Promise<void> {
  await killRunning();
  live.pg?.stop();
  if (live.work) rmSync(live.work, { recursive: true, force: true });
}

/** N agents' certificates from one CA, shared by both servers (each gets a copy of the CA). */
async function makeAgents(work: string, n: number): Promise<{ caDir: string; agents: LoadAgent[] }> {
  const caDir = join(work, 'ca');
  await initCa(caDir, { commonName: 'Rebound bench CA' });
  const certs = join(work, 'certs');
  const agents: LoadAgent[] = [];
  for (let i = 0; i < n; i++) {
    const issued = await issueCert(caDir, { role: 'agent', name: `agent-${name4(i)}`, outDir: certs });
    agents.push({
      name: `agent-${name4(i)}`,
      machine: `m-${name4(i)}`,
      keyFile: issued.keyPath,
      certFile: issued.certPath,
      disks: [0, 1].map((d) => ({ id: randomUUID(), name: `disk${d}`, sizeBytes: (d + 1) * 32 * 2 ** 30 })),
    });
    if ((i + 1) % 250 === 0) log(`  ${i + 1} certificates issued`);
  }
  return { caDir, agents };
}

async function insertAll<T extends keyof Database>(
  db: Kysely<Database>,
  table: T,
  rows: Record<string, unknown>[],
): Promise<void> {
  // Rows are built to the table's columns by the caller; Kysely cannot check a generic table.
  const into = db.insertInto(table) as unknown as { values(v: unknown): { execute(): Promise<unknown> } };
  for (let i = 0; i < rows.length; i += 100) await into.values(rows.slice(i, i + 100)).execute();
}

/** The records a deployment of N protected machines has, straight into the database. */
async function seed(dbUrl: string, agents: LoadAgent[]): Promise<void> {
  const database = await openDatabase(dbUrl);
  const db = database.db;
  const now = new Date().toISOString();
  try {
    await db.transaction().execute(async (trx) => {
      const ps = {
        id: randomUUID(),
        name: 'bench-ps',
        address: '10.1.0.1:9850',
        builtin: 0 as const,
        registered_at: now,
        last_heartbeat_at: now,
        status_json: null,
      };
      const mt = {
        ...ps,
        id: randomUUID(),
        name: 'bench-mt',
        address: '10.2.0.1:9860',
        max_disks: 60,
        has_snapshots: 0 as const,
      };
      await trx.insertInto('process_servers').values(ps).execute();
      await trx.insertInto('master_targets').values(mt).execute();
      const policy = {
        id: randomUUID(),
        name: 'bench',
        rpo_threshold_minutes: 15,
        retention_hours: 24,
        app_consistent_minutes: 60,
        crash_consistent_minutes: 5,
        ack_mode: 'async',
        is_failback: 0 as const,
        parent_policy_id: null,
        created_at: now,
        updated_at: now,
      };
      await trx.insertInto('policies').values(policy).execute();
      const machines = agents.map((a, i) => ({
        id: randomUUID(),
        name: a.machine,
        site_id: null,
        os_type: 'linux',
        agent_name: a.name,
        address: `10.0.${i >> 8}.${i & 255}:10809`,
        registered_at: now,
        last_heartbeat_at: now,
        status_json: JSON.stringify({ bench: true }),
        created_by_failover_of: null,
        created_at: now,
      }));
      await insertAll(trx, 'machines', machines);
      await insertAll(
        trx,
        'disks',
        agents.flatMap((a, i) =>
          a.disks.map((d) => ({
            id: d.id,
            machine_id: machines[i].id,
            name: d.name,
            size_bytes: d.sizeBytes,
            path: null,
            created_at: now,
          })),
        ),
      );
      await insertAll(
        trx,
        'items',
        machines.map((m) => ({
          id: randomUUID(),
          machine_id: m.id,
          policy_id: policy.id,
          process_server_id: ps.id,
          master_target_id: mt.id,
          datastore_id: null,
          retention_volume_id: null,
          state: 'protected',
          progress_pct: 100,
          rpo_seconds: 12.5,
          health_json: '[]',
          direction: 'forward',
          group_id: null,
          created_at: now,
          updated_at: now,
        })),
      );
      const jobs = machines.map((m) => ({
        id: randomUUID(),
        kind: 'enable-replication',
        target_id: m.id,
        state: 'Succeeded',
        progress_pct: 100,
        params_json: '{}',
        error: null,
        created_at: now,
        started_at: now,
        ended_at: now,
        requested_by: 'admin',
      }));
      await insertAll(trx, 'jobs', jobs);
      await insertAll(
        trx,
        'job_steps',
        jobs.flatMap((j) =>
          ['validate', 'create replica disks', 'initial replication'].map((name, ordinal) => ({
            id: randomUUID(),
            job_id: j.id,
            ordinal,
            name,
            state: 'Succeeded',
            progress_pct: 100,
            message: null,
            error: null,
            started_at: now,
            ended_at: now,
          })),
        ),
      );
      await insertAll(
        trx,
        'alerts',
        machines.slice(0, 10).map((m) => ({
          id: randomUUID(),
          severity: 'warning',
          kind: 'rpo-threshold-exceeded',
          subject_id: m.id,
          message: 'bench',
          raised_at: now,
          cleared_at: null,
        })),
      );
    });
  } finally {
    await database.close();
  }
}

interface DbRun {
  kind: DbKind;
  load?: LoadResult;
  /** Routes the server had: what the load could use. */
  heartbeats: boolean;
  agentRead: 'machine' | 'sites';
  adminReads: string[];
  serverCpuPct?: number;
  serverRssMiB?: number;
  error?: string;
}

async function startServer(cli: string, dataDir: string, dbUrl: string | undefined) {
  // REBOUND_BENCH_CPU_PROF=DIR: the server writes a V8 CPU profile into DIR/<database>/ at exit.
  const prof = process.env.REBOUND_BENCH_CPU_PROF;
  const args = [
    ...(prof ? ['--cpu-prof', '--cpu-prof-dir', join(prof, dataDir.split('/').at(-2) ?? 'server')] : []),
    cli,
    'server',
    'start',
    '--data-dir',
    dataDir,
    '--listen',
    '127.0.0.1:0',
    '--no-process-server',
    '--no-master-target',
  ];
  if (dbUrl) args.push('--db', dbUrl);
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, REBOUND_LOG_LEVEL: 'warn' },
  });
  const err = new Tail();
  child.stderr.on('data', (d) => err.push(d));
  const url = await waitForServerReady(child, 60_000, () => String(err)).url;
  return { child, url };
}

/** The paths the server documents in /openapi.json (GET and POST). */
async function documentedRoutes(url: string): Promise<Set<string>> {
  const text = await new Promise<string>((resolve, reject) => {
    request(`${url}/openapi.json`, { rejectUnauthorized: false }, (r) => {
      let b = '';
      r.on('data', (d) => {
        b += d;
      });
      r.on('end', () => resolve(b));
    })
      .on('error', reject)
      .end();
  });
  const doc = JSON.parse(text) as { paths: Record<string, Record<string, unknown>> };
  const out = new Set<string>();
  for (const [path, methods] of Object.entries(doc.paths))
    for (const m of Object.keys(methods)) out.add(`${m.toUpperCase()} ${path}`);
  return out;
}

async function runOne(
  kind: DbKind,
  o: Options,
  work: string,
  cli: string,
  ca: string,
  agents: LoadAgent[],
): Promise<DbRun> {
  const dataDir = join(work, kind, 'data');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  cpSync(ca, join(dataDir, 'ca'), { recursive: true });
  let dbUrl: string | undefined;
  if (kind === 'postgres') {
    live.pg ??= await startPgCluster();
    dbUrl = live.pg.createDatabase(`rebound_bench_${process.pid}`);
  }
  log(`${kind}: seeding ${agents.length} machines, disks, items, jobs`);
  await seed(dbUrl ?? `sqlite:${join(dataDir, 'rebound.db')}`, agents);
  const { child, url } = await startServer(cli, dataDir, dbUrl);
  const run: DbRun = { kind, heartbeats: false, agentRead: 'sites', adminReads: [] };
  const rss = new RssSampler(child.pid!, 500).start();
  try {
    const routes = await documentedRoutes(url);
    run.heartbeats = o.heartbeats && routes.has('POST /api/v1/heartbeats');
    run.agentRead = routes.has('GET /api/v1/machines/{name}') ? 'machine' : 'sites';
    run.adminReads = ADMIN_READS.filter((p) => routes.has(`GET ${p}`));
    log(
      `${kind}: server at ${url}; heartbeats ${run.heartbeats ? 'on' : o.heartbeats ? 'off (no POST /api/v1/heartbeats on this build)' : 'off (--no-heartbeats)'}, ` +
        `agents read ${run.agentRead === 'machine' ? 'their machine' : 'the sites (no machine route)'}, admin reads ${run.adminReads.join(' ')}`,
    );
    const cfg: LoadConfig = {
      url,
      caFile: join(dataDir, 'ca', 'ca.crt'),
      adminToken: readFileSync(join(dataDir, 'admin.token'), 'utf8').trim(),
      agents,
      intervalSeconds: o.interval,
      warmupSeconds: o.interval + 2,
      measureSeconds: o.seconds,
      heartbeats: run.heartbeats,
      agentRead: run.agentRead,
      adminReads: run.adminReads,
      adminReadsPerSecond: o.adminRps,
    };
    const cfgFile = join(work, kind, 'load.json');
    writeFileSync(cfgFile, JSON.stringify(cfg));
    const loadScript = new URL('./lib/api-load.js', import.meta.url).pathname;
    const load = spawn(process.execPath, [loadScript, cfgFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    load.stdout.on('data', (d) => {
      stdout += d;
    });
    let cpuStart: Awaited<ReturnType<typeof cpuTime>>;
    let cpuEnd: Awaited<ReturnType<typeof cpuTime>>;
    let tStart = 0;
    let tEnd = 0;
    const errText = new Tail();
    load.stderr.on('data', (d: Buffer) => {
      errText.push(d);
      const text = d.toString();
      if (text.includes('api-load: measuring')) {
        tStart = performance.now();
        void cpuTime(child.pid!).then((c) => {
          cpuStart = c;
        });
        log(`${kind}: warm-up done (every agent connected), measuring ${o.seconds} s`);
      }
      if (text.includes('api-load: measured')) {
        tEnd = performance.now();
        void cpuTime(child.pid!).then((c) => {
          cpuEnd = c;
        });
      }
    });
    log(`${kind}: ${agents.length} agents connecting over ${o.interval} s (warm-up)`);
    const code = await new Promise<number | null>((r) => load.once('exit', r));
    if (code !== 0) throw new Error(`load generator exited with ${code}: ${errText}`);
    run.load = JSON.parse(stdout) as LoadResult;
    if (cpuStart && cpuEnd && tEnd > tStart) {
      run.serverCpuPct =
        ((cpuEnd.user + cpuEnd.sys - cpuStart.user - cpuStart.sys) / ((tEnd - tStart) / 1000)) * 100;
    }
  } catch (e) {
    run.error = (e as Error).message;
    log(`${kind}: FAILED: ${run.error}`);
  } finally {
    run.serverRssMiB = (await rss.stop()).sampledPeak / 2 ** 20;
    await stopChild(child, 'SIGTERM', 20_000);
  }
  return run;
}

const ms = (v: number) => (v < 10 ? v.toFixed(2) : v.toFixed(1));

function report(o: Options, runs: DbRun[], say: (l?: string) => void): void {
  say('## Results');
  say();
  say('| database | request | requests | rate /s | p50 ms | p99 ms | max ms | errors |');
  say('|---|---|---:|---:|---:|---:|---:|---|');
  for (const r of runs) {
    if (!r.load) {
      say(`| ${r.kind} | FAILED: ${r.error} | | | | | | |`);
      continue;
    }
    const rows = [...Object.entries(r.load.kinds), ['**all**', r.load.all] as const];
    for (const [kind, s] of rows) {
      const errs = Object.entries(s.errors)
        .map(([k, v]) => `${k}: ${v}`)
        .join(', ');
      say(
        `| ${r.kind} | ${kind} | ${s.count} | ${s.rate.toFixed(1)} | ${ms(s.p50)} | ${ms(s.p99)} | ${ms(s.max)} | ${errs || '0'} |`,
      );
    }
  }
  say();
  say(
    '| database | p99 all (goal <= 50 ms) | server CPU | server RSS peak | TLS connections | load generator loop delay p99 | warm-up errors |',
  );
  say('|---|---|---:|---:|---:|---:|---|');
  for (const r of runs) {
    if (!r.load) continue;
    const met = r.load.all.p99 <= GOAL_P99_MS ? 'met' : 'NOT met';
    const warm = Object.entries(r.load.warmupErrors)
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ');
    say(
      `| ${r.kind} | ${ms(r.load.all.p99)} ms (${met}) | ${r.serverCpuPct?.toFixed(0) ?? '?'} % | ${r.serverRssMiB?.toFixed(0)} MiB | ${r.load.connections} | ${ms(r.load.generatorLoopDelayP99)} ms | ${warm || 'none'} |`,
    );
  }
  for (const r of runs) {
    for (const [k, v] of Object.entries(r.load?.errorSamples ?? {}))
      say(`- ${r.kind}: first error answer of ${k}: ${v}`);
  }
  const first = runs.find((r) => r.load);
  if (first && !first.heartbeats && o.heartbeats) {
    say();
    say(
      'Heartbeats were OFF: this build has no POST /api/v1/heartbeats; they switch on by themselves when it does.',
    );
  }
}

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  mkdirSync(o.dir, { recursive: true });
  const work = mkdtempSync(join(o.dir, 'rebound-api-bench-'));
  live.work = work;
  const say = (line = '') => console.log(line);
  const started = Date.now();
  try {
    const machine = await machineInfo(work);
    const rev = await output('git', ['rev-parse', '--short', 'HEAD'], 'no git');
    say('# Configuration server API under 1000 agents: SQLite vs PostgreSQL');
    say();
    say(
      `- machine: ${machine.nproc} CPUs, ${machine.cpu}, ${machine.memGiB.toFixed(1)} GiB RAM; kernel ${machine.kernel}`,
    );
    say(`- load average at start: ${machine.loadAvg} (uptime: ${await output('uptime', [])})`);
    say(`- rebound git ${rev}, node ${process.version}; ${o.dbs.includes('postgres') ? pgVersion() : ''}`);
    say(`- command: node dist/bench/config-server-api.js ${o.argv.join(' ')}`.trimEnd());
    say(
      `- ${o.agents} agents (own certificate, own keep-alive TLS 1.3 connection each) every ${o.interval} s, ` +
        `${o.interval + 2} s warm-up then ${o.seconds} s measured per database; admin ${o.adminRps} list requests/s; ` +
        'load generator in its own process; server `rebound server start --no-process-server --no-master-target`; ' +
        'SQLite WAL synchronous=FULL, PostgreSQL defaults (fsync on)',
    );
    say();
    const cli = snapshotRebound(join(work, 'rebound'));
    log(`issuing ${o.agents} agent certificates`);
    const { caDir, agents } = await makeAgents(work, o.agents);
    const runs: DbRun[] = [];
    for (const kind of o.dbs) runs.push(await runOne(kind, o, work, cli, caDir, agents));
    report(o, runs, say);
    say();
    say(
      `- load average at end: ${loadAverage()}; bench wall time ${((Date.now() - started) / 1000).toFixed(0)} s`,
    );
    if (o.json) writeFileSync(o.json, `${JSON.stringify({ machine, options: o, runs }, null, 2)}\n`);
    return runs.some((r) => r.error) ? 1 : 0;
  } finally {
    live.pg?.stop();
    live.work = undefined;
    rmSync(work, { recursive: true, force: true });
  }
}

runBench(main, emergencyCleanup, log);
