// What the tests with real VMs start from: a configuration server (built-in process server and
// master target, a loop-mounted ext4 retention volume as S24 asks), the given sites, policy
// gold (no app-consistent points), heartbeats every second, the test guest; and the CLI
// helpers they drive it with. stop() removes every VM process, the volume and the scratch.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { JobJson } from '../../src/cli/job-format.js';
import type { SiteMachineJson } from '../../src/control-plane/api/routes/site-machines.js';
import { buildGuest, type GuestImage } from '../../src/sites/guest/build.js';
import { killSiteProcesses } from '../../src/sites/qemu/stop-all.js';
import { type RunningConfigServer, startConfigServer } from './config-server.js';
import { LoopVolumes } from './loop-volumes.js';
import { scratchDir } from './tmp.js';
import { until } from './trio.js';

export interface VmLab {
  cs: RunningConfigServer;
  csDir: string;
  scratch: string;
  guest: GuestImage;
  /** `rebound ARGS` as admin; asserts exit 0 and returns stdout. */
  run(args: string[]): Promise<string>;
  /** `rebound ARGS --json`, parsed. */
  json<T>(args: string[]): Promise<T>;
  job(id: string): Promise<JobJson>;
  /** Follows the job to its end and asserts its final state. */
  watched(id: string, state?: string): Promise<JobJson>;
  /** Starts a job with `rebound ARGS --json` and follows it to its end (final state asserted). */
  runJob(args: string[], state?: string): Promise<JobJson>;
  /** Defines a VM of the test guest at a site: one disk vda, `files` checksummed files per boot. */
  createGuestVm(name: string, site: string, diskBytes: number, files: number): Promise<void>;
  /** The machine at the site as `rebound vm list` shows it, if it exists. */
  vm(site: string, name: string): Promise<SiteMachineJson | undefined>;
  /** Everything the VM has printed on its console (over all its boots). */
  consoleOf(site: string, name: string): Promise<string>;
  /** Waits until the VM's console shows the line (the console accumulates over boots). */
  consoleShows(site: string, name: string, line: RegExp, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startVmLab(prefix: string, sites: [name: string, adapter: string][]): Promise<VmLab> {
  const scratch = scratchDir(prefix);
  const csDir = join(scratch.dir, 'cs');
  const volumes = new LoopVolumes();
  const heartbeatEnv = process.env.REBOUND_HEARTBEAT_SECONDS;
  process.env.REBOUND_HEARTBEAT_SECONDS = '1';
  let cs: RunningConfigServer | undefined;
  const stop = async () => {
    if (heartbeatEnv === undefined) delete process.env.REBOUND_HEARTBEAT_SECONDS;
    else process.env.REBOUND_HEARTBEAT_SECONDS = heartbeatEnv;
    await cs?.stop();
    await killSiteProcesses(join(csDir, 'sites'));
    await volumes.cleanup();
    scratch.cleanup();
  };
  try {
    const guest = await buildGuest();
    const retention = await volumes.make('retention', 'ext4', { sizeMiB: 256 });
    const server = await startConfigServer({ dataDir: csDir, args: ['--retention-dir', retention] });
    cs = server;
    const run = async (args: string[]) => {
      const r = await server.cli(args);
      assert.equal(r.code, 0, `rebound ${args.join(' ')}: ${r.stdout}${r.stderr}`);
      return r.stdout;
    };
    const json = async <T>(args: string[]): Promise<T> => JSON.parse(await run([...args, '--json'])) as T;
    const job = (id: string) => json<JobJson>(['jobs', 'show', id]);
    const watched = async (id: string, state = 'Succeeded') => {
      const w = await server.cli(['jobs', 'watch', id]);
      const j = await job(id);
      assert.equal(j.state, state, `${w.stdout}${w.stderr}\n${JSON.stringify(j.steps, null, 1)}`);
      return j;
    };
    const vm = async (site: string, name: string) =>
      (await json<SiteMachineJson[]>(['vm', 'list', '--site', site])).find((m) => m.name === name);
    const consoleOf = async (site: string, name: string) => {
      const m = await vm(site, name);
      return m?.console_log ? readFileSync(m.console_log, 'utf8') : '';
    };
    for (const [name, adapter] of sites) await run(['sites', 'add', name, '--adapter', adapter]);
    await run(['policies', 'create', 'gold', '--app-consistent-minutes', '0']);
    return {
      cs: server,
      csDir,
      scratch: scratch.dir,
      guest,
      run,
      json,
      job,
      watched,
      runJob: async (args, state) => watched((await json<{ job: JobJson }>(args)).job.id, state),
      async createGuestVm(name, site, diskBytes, files) {
        await run([
          ...['vm', 'create', name, '--site', site, '--disk', `vda=${diskBytes}`],
          ...[
            '--kernel',
            guest.kernel,
            '--initrd',
            guest.initrd,
            '--append',
            `${guest.append} rebound.files=${files}`,
          ],
        ]);
      },
      vm,
      consoleOf,
      async consoleShows(site, name, line, timeoutMs = 120_000) {
        await until(
          `'${line.source}' on the console of ${name}`,
          async () => line.test(await consoleOf(site, name)),
          timeoutMs,
        );
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
