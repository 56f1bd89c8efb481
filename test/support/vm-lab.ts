// What the tests with real VMs start from: a configuration server (built-in process server and
// master target, a loop-mounted ext4 retention volume as S24 asks), the given sites, policy
// gold (no app-consistent points), heartbeats every second, the test guest; and the CLI
// helpers they drive it with. stop() removes every VM process, the volume and the scratch.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { JobJson } from '../../src/cli/job-format.js';
import { buildGuest, type GuestImage } from '../../src/sites/guest/build.js';
import { killSiteProcesses } from '../../src/sites/qemu/stop-all.js';
import { type RunningConfigServer, startConfigServer } from './config-server.js';
import { LoopVolumes } from './loop-volumes.js';
import { scratchDir } from './tmp.js';

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
      async watched(id, state = 'Succeeded') {
        const w = await server.cli(['jobs', 'watch', id]);
        const j = await job(id);
        assert.equal(j.state, state, `${w.stdout}${w.stderr}\n${JSON.stringify(j.steps, null, 1)}`);
        return j;
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
