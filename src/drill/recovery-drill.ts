// `rebound drill`'s second half: the whole recovery cycle with real QEMU VMs on this machine,
// driven through the CLI exactly as an operator would. A configuration server (built-in
// process server and master target, a loop-mounted ext4 retention volume as S24 asks), two
// qemu sites, a VM whose disk its agent serves writing checksummed generations of files;
// protect -> unplanned failover -> commit -> reprotect -> failback -> reprotect, with the
// guest's own verification lines read from the consoles at each boot.

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitForServerReady } from '../cli/server-ready.js';
import { SERVICE_NODE_FLAGS } from '../cli/service-memory.js';
import { buildGuest } from '../sites/guest/build.js';
import { killSiteProcesses } from '../sites/qemu/stop-all.js';
import { run } from '../util/exec.js';

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export interface RecoveryDrillOptions {
  workDir: string;
  say: (line: string) => void;
}

export interface Ctx {
  cliConfig: string;
  say: (line: string) => void;
}

export function cli(c: Ctx, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { ...process.env, REBOUND_CS_CONFIG: c.cliConfig }, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`rebound ${args.join(' ')} failed: ${stderr || err.message}`));
        else resolve(stdout);
      },
    );
  });
}

export async function job(
  c: Ctx,
  what: string,
  args: string[],
): Promise<{ steps: { name: string; message: string | null }[] }> {
  const t = Date.now();
  const r = JSON.parse(await cli(c, [...args, '--json'])) as { job: { id: string } };
  await cli(c, ['jobs', 'watch', r.job.id]).catch(() => undefined);
  const j = JSON.parse(await cli(c, ['jobs', 'show', r.job.id, '--json'])) as {
    state: string;
    error: string | null;
    steps: { name: string; message: string | null }[];
  };
  if (j.state !== 'Succeeded') throw new Error(`${what}: ${j.state}: ${j.error}`);
  c.say(`${what}: done in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  return j;
}

async function consoleLine(
  c: Ctx,
  site: string,
  vm: string,
  line: RegExp,
  timeoutMs = 180_000,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const list = JSON.parse(await cli(c, ['vm', 'list', '--site', site, '--json'])) as {
      name: string;
      console_log: string | null;
    }[];
    const log = list.find((m) => m.name === vm)?.console_log;
    const text = log && existsSync(log) ? readFileSync(log, 'utf8') : '';
    const m = line.exec(text);
    if (m) return m[0];
    if (/FAILED|incomplete/.test(text)) throw new Error(`${vm} reports damaged files:\n${text}`);
    if (Date.now() > deadline)
      throw new Error(`${vm} did not print ${line.source} within ${timeoutMs / 1000} s:\n${text}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * What the drill and the RTO benchmark (bench/rto.ts) run on: `rebound server start` (built-in
 * process server and master target, a loop-mounted ext4 retention volume as S24 asks), qemu sites
 * a and b, policy gold.
 */
export interface RecoveryLab extends Ctx {
  /** The server's data dir; site NAME keeps its machines in csDir/sites/NAME. */
  csDir: string;
  /** Forces every VM off, stops the server and every site process, unmounts the volume. */
  stop(): Promise<void>;
}

export async function startRecoveryLab(workDir: string, say: (line: string) => void): Promise<RecoveryLab> {
  const csDir = join(workDir, 'cs');
  const retention = join(workDir, 'retention');
  const image = join(workDir, 'retention.img');
  mkdirSync(retention, { recursive: true });
  await run('truncate', ['-s', '256M', image]);
  await run('mkfs.ext4', ['-q', '-F', image]);
  await run('mount', ['-o', 'loop', image, retention]);
  let server: ChildProcess | undefined;
  const c: RecoveryLab = {
    cliConfig: join(csDir, 'cli.json'),
    say,
    csDir,
    async stop() {
      for (const site of ['a', 'b']) {
        const list = await cli(c, ['vm', 'list', '--site', site, '--json']).catch(() => '[]');
        for (const m of JSON.parse(list) as { name: string }[]) {
          await cli(c, ['vm', 'shutdown', m.name, '--site', site, '--timeout', '0']).catch(() => undefined);
        }
      }
      server?.kill('SIGTERM');
      if (server && server.exitCode === null && server.signalCode === null)
        await new Promise((r) => server!.once('exit', r));
      await killSiteProcesses(join(csDir, 'sites'), 'SIGTERM');
      await run('umount', [retention], [0, 1, 32]);
    },
  };
  try {
    server = spawn(
      process.execPath,
      [
        ...SERVICE_NODE_FLAGS,
        CLI,
        'server',
        'start',
        '--data-dir',
        csDir,
        '--listen',
        '127.0.0.1:0',
        '--retention-dir',
        retention,
      ],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
        // Its log would drown the drill's lines: errors only, unless asked otherwise.
        env: { REBOUND_LOG_LEVEL: 'error', ...process.env, REBOUND_HEARTBEAT_SECONDS: '1' },
      },
    );
    await waitForServerReady(server, 60_000).url;
    say('configuration server up (built-in process server and master target)');
    await cli(c, ['sites', 'add', 'a', '--adapter', 'qemu']);
    await cli(c, ['sites', 'add', 'b', '--adapter', 'qemu']);
    await cli(c, ['policies', 'create', 'gold', '--app-consistent-minutes', '0']);
    return c;
  } catch (e) {
    await c.stop();
    throw e;
  }
}

/** Runs the cycle; resolves true when every step and every verification passed. */
export async function runRecoveryDrill(o: RecoveryDrillOptions): Promise<boolean> {
  const say = o.say;
  const guest = await buildGuest();
  say(`guest: ${guest.kernel} (${guest.kernelVersion}) + ${guest.initrd}`);
  let c: RecoveryLab | undefined;
  try {
    c = await startRecoveryLab(o.workDir, say);
    await cli(c, [
      ...['vm', 'create', 'web', '--site', 'a', '--disk', 'vda=64M'],
      ...['--kernel', guest.kernel, '--initrd', guest.initrd, '--append', `${guest.append} rebound.files=8`],
    ]);
    await cli(c, ['vm', 'start', 'web', '--site', 'a']);
    say(`site a: web ${await consoleLine(c, 'a', 'web', /REBOUND gen 1 written \d+ files/)}`);
    await job(c, 'protect web', ['protect', 'web', '--policy', 'gold']);
    await job(c, 'unplanned failover to latest', ['failover', 'web']);
    say(`site b: web-recovered ${await consoleLine(c, 'b', 'web-recovered', /REBOUND gen 1 ok \d+ files/)}`);
    say(
      `site b: web-recovered ${await consoleLine(c, 'b', 'web-recovered', /REBOUND gen 2 written \d+ files/)}`,
    );
    await cli(c, ['vm', 'shutdown', 'web', '--site', 'a', '--timeout', '0']);
    await job(c, 'commit', ['commit', 'web']);
    const rp = await job(c, 'reprotect (back to site a)', ['reprotect', 'web', '--datastore', 'default']);
    say(`  ${rp.steps.find((s) => s.name === 'copy the differences')?.message}`);
    await job(c, 'failback', ['failback', 'web']);
    say(`site a: web ${await consoleLine(c, 'a', 'web', /REBOUND gen 2 ok \d+ files/)}`);
    await job(c, 'reprotect (to site b again)', ['reprotect', 'web', '--datastore', 'default']);
    await planDrill(c, o.workDir);
    say(
      'drill OK: every flushed file survived failover and failback; reprotect moved only the differences; ' +
        'the recovery plan ran its scripts and waited for its manual action',
    );
    return true;
  } catch (e) {
    say(`drill FAILED: ${(e as Error).message}`);
    return false;
  } finally {
    await c?.stop();
  }
}

/**
 * A replication group and a recovery plan around the same VM: a common point, then a test
 * failover of the plan (its pre and post scripts run, its manual action is confirmed as an
 * operator would) and its clean-up.
 */
async function planDrill(c: Ctx, workDir: string): Promise<void> {
  const marks = join(workDir, 'plan-scripts.log');
  const planFile = join(workDir, 'plan.json');
  const script = (phase: string) => `echo "${phase} $REBOUND_OPERATION $REBOUND_MACHINES" >> '${marks}'`;
  writeFileSync(
    planFile,
    JSON.stringify({
      groups: [
        {
          name: 'tier',
          machines: ['web'],
          pre: script('pre'),
          post: script('post'),
          manual: ['check that the test machine answers'],
        },
      ],
    }),
  );
  // A common point between two generations: the test machine must find every one of them whole.
  c.say(`site a: web ${await consoleLine(c, 'a', 'web', /REBOUND gen 3 written \d+ files/)}`);
  await cli(c, ['groups', 'create', 'tier', '--machines', 'web']);
  const point = JSON.parse(await cli(c, ['groups', 'point', 'tier', '--json'])) as {
    seqs: Record<string, number>;
  };
  c.say(`replication group tier: common point at seq ${point.seqs.web} (one write barrier over its agents)`);
  await cli(c, ['plans', 'create', 'dr', '--file', planFile]);
  const t = Date.now();
  const started = JSON.parse(await cli(c, ['test-failover', '--plan', 'dr', '--json'])) as {
    job: { id: string };
  };
  const deadline = Date.now() + 180_000;
  for (;;) {
    const j = JSON.parse(await cli(c, ['jobs', 'show', started.job.id, '--json'])) as {
      state: string;
      error: string | null;
      steps: { name: string; state: string }[];
    };
    const waiting = j.steps.find((s) => s.state === 'WaitingForConfirmation');
    if (waiting) {
      c.say(`site b: web-test ${await consoleLine(c, 'b', 'web-test', /REBOUND gen 3 ok \d+ files/)}`);
      c.say(`plan dr waits for '${waiting.name}': confirming it`);
      await cli(c, ['jobs', 'confirm', started.job.id, waiting.name]);
      break;
    }
    if (j.state !== 'Running' && j.state !== 'Queued')
      throw new Error(`plan test failover: ${j.state}: ${j.error}`);
    if (Date.now() > deadline) throw new Error('the plan test failover never reached its manual action');
    await new Promise((r) => setTimeout(r, 500));
  }
  await cli(c, ['jobs', 'watch', started.job.id]).catch(() => undefined);
  const done = JSON.parse(await cli(c, ['jobs', 'show', started.job.id, '--json'])) as {
    state: string;
    error: string | null;
  };
  if (done.state !== 'Succeeded') throw new Error(`plan test failover: ${done.state}: ${done.error}`);
  c.say(`test failover of plan dr: done in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  const ran = readFileSync(marks, 'utf8').trim().split('\n');
  if (ran.join('|') !== 'pre test-failover web|post test-failover web') {
    throw new Error(`the plan's scripts ran as ${JSON.stringify(ran)}`);
  }
  c.say(`plan scripts ran: ${ran.join('; ')}`);
  await job(c, 'clean-up of plan dr', ['cleanup-test-failover', '--plan', 'dr']);
}
