// Stops every VM and agent a qemu site started, from their pid files (checked against the
// process's command line, so a reused pid is never hit): for whoever ends a drill or a test
// without asking each machine to shut down, e.g. after a failure halfway.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { livePid, signal } from './processes.js';
import { agentMarkers, machinePaths, qemuMarkers } from './qemu-command.js';

/** `sitesDir` holds one directory per site, each with machines/NAME/. */
export async function killSiteProcesses(sitesDir: string, sig: NodeJS.Signals = 'SIGKILL'): Promise<number> {
  let killed = 0;
  if (!existsSync(sitesDir)) return killed;
  for (const site of readdirSync(sitesDir)) {
    const machines = join(sitesDir, site, 'machines');
    if (!existsSync(machines)) continue;
    for (const m of readdirSync(machines)) {
      const p = machinePaths(join(machines, m));
      for (const [file, markers] of [
        [p.qemuPid, qemuMarkers(p)],
        [p.agentPid, agentMarkers(p)],
      ] as const) {
        const pid = await livePid(file, markers);
        if (pid) {
          signal(pid, sig);
          killed++;
        }
      }
    }
  }
  return killed;
}
