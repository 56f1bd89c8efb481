// The qemu site: machines are QEMU virtual machines on this host (TCG, or KVM where it works)
// whose disks are NBD exports: of the machine's own agent (a real `rebound agent serve`, which
// captures every write) or of other servers (a master target's view in a test failover).
// Everything lives under <siteDir>/machines/<name>/ (see qemu-command.ts for the files); QEMU
// and agents run detached, so machines keep running when the process that started them exits
// and a new QemuSite on the same directory finds them.

import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { createSparseFile } from '../../storage/sparse-file.js';
import { checkMachineName, type MachineRecord, MachineStore } from '../machine-store.js';
import type {
  AgentRegistration,
  DiskSource,
  MachineSpec,
  SiteAdapter,
  SiteMachine,
} from '../site-adapter.js';
import { firstOutput, readConsole, waitForText } from './console.js';
import { isOurs, livePid, signal, spawnDetached, terminate, waitGone } from './processes.js';
import {
  agentMarkers,
  DEFAULT_APPEND,
  diskUrls,
  MAX_SOCKET_PATH,
  type MachinePaths,
  machinePaths,
  qemuArgs,
  qemuMarkers,
} from './qemu-command.js';
import { GuestAgentClient, QmpClient } from './qmp.js';
import { ensureRegistered, spawnAgent } from './site-agent.js';

export interface QemuSiteOptions {
  /** The site's state directory. */
  dir: string;
  logger: Logger;
  /** Default tcg: KVM cannot boot a normal kernel on the machines this is developed on. */
  accel?: 'tcg' | 'kvm';
  /** The configuration server's site name, given to agents at registration. */
  siteName?: string;
  qemuBinary?: string;
  /** How long a power-on waits for QEMU to come up (its QMP socket answering). */
  startTimeoutMs?: number;
}

export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 60_000;

export class QemuSite implements SiteAdapter {
  readonly kind = 'qemu' as const;
  private readonly store: MachineStore;
  private readonly log: Logger;
  /** First console output of boots this object started (the RTO benchmark's end point). */
  private readonly firstOutputs = new Map<string, Promise<Date>>();

  private constructor(private readonly opts: QemuSiteOptions) {
    this.store = new MachineStore(opts.dir);
    this.log = opts.logger.child({ site: opts.siteName ?? opts.dir, adapter: 'qemu' });
  }

  static async open(opts: QemuSiteOptions): Promise<QemuSite> {
    const site = new QemuSite(opts);
    await site.store.init();
    return site;
  }

  paths(name: string): MachinePaths {
    checkMachineName(name);
    return machinePaths(this.store.dir(name));
  }

  async create(spec: MachineSpec): Promise<SiteMachine> {
    checkMachineName(spec.name);
    if (await this.store.read(spec.name))
      throw new Error(`machine '${spec.name}' already exists on this site`);
    checkSpec(spec);
    const paths = this.paths(spec.name);
    for (const sock of [paths.qmp, paths.qga, paths.nbdSock]) {
      if (sock.length > MAX_SOCKET_PATH) {
        throw new Error(
          `the site directory is too deep: ${sock} is longer than a Unix socket path may be (${MAX_SOCKET_PATH})`,
        );
      }
    }
    for (const d of spec.disks) await createSparseFile(d.path, d.sizeBytes);
    const record: MachineRecord = {
      version: 1,
      spec,
      disksFrom: spec.disksFrom ?? { kind: 'agent' },
      createdAt: new Date().toISOString(),
    };
    await mkdir(paths.agentDir, { recursive: true });
    await this.store.write(spec.name, record);
    this.log.info({ machine: spec.name, disks: spec.disks.length }, 'machine created');
    return this.view(spec.name, record);
  }

  async get(name: string): Promise<SiteMachine | undefined> {
    const r = await this.store.read(name);
    return r ? this.view(name, r) : undefined;
  }

  async list(): Promise<SiteMachine[]> {
    const out: SiteMachine[] = [];
    for (const name of await this.store.names()) {
      const m = await this.get(name);
      if (m) out.push(m);
    }
    return out;
  }

  async startAgent(name: string, reg: AgentRegistration, opts: { resetLog?: boolean } = {}): Promise<void> {
    const r = await this.store.must(name);
    const paths = this.paths(name);
    if (await this.agentPid(paths)) return;
    await ensureRegistered(r.spec, paths, reg, { site: this.opts.siteName, logger: this.log });
    await spawnAgent(r.spec, paths, { resetLog: opts.resetLog, logger: this.log });
  }

  async stopAgent(name: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    await this.store.must(name);
    const paths = this.paths(name);
    const pid = await this.agentPid(paths);
    if (!pid) return;
    const how = await terminate(pid, agentMarkers(paths), opts.timeoutMs ?? 20_000);
    await rm(paths.agentPid, { force: true });
    this.log.info({ machine: name, how }, 'agent stopped');
  }

  /** kernelArgs: added to the kernel command line for this boot only (e.g. rebound.oneshot=1). */
  async powerOn(name: string, opts: { disksFrom?: DiskSource; kernelArgs?: string } = {}): Promise<void> {
    const r = await this.store.must(name);
    if (r.heldOffBy) {
      throw new Error(
        `machine '${name}' is held off: ${r.heldOffBy}; power-on refused until the hold is released`,
      );
    }
    const paths = this.paths(name);
    if (await this.qemuPid(paths)) return;
    const from = opts.disksFrom ?? r.disksFrom;
    const urls = diskUrls(r.spec, paths, from);
    if (from.kind === 'agent' && !(await this.agentPid(paths))) {
      throw new Error(
        `machine '${name}' boots from its agent's disks but its agent is not running (start it first)`,
      );
    }
    for (const f of [r.spec.boot.kernel, r.spec.boot.initrd]) {
      if (!existsSync(f)) throw new Error(`machine '${name}': boot file ${f} does not exist`);
    }
    // Each boot gets a fresh console (the previous one is kept beside it) and fresh sockets.
    if (existsSync(paths.console)) await rename(paths.console, paths.consolePrev);
    await rm(paths.qmp, { force: true });
    await rm(paths.qga, { force: true });
    const spec = opts.kernelArgs
      ? {
          ...r.spec,
          boot: { ...r.spec.boot, append: `${r.spec.boot.append ?? DEFAULT_APPEND} ${opts.kernelArgs}` },
        }
      : r.spec;
    const args = qemuArgs(spec, paths, urls, { accel: this.opts.accel });
    const logFrom = await stat(paths.qemuLog).then(
      (s) => s.size,
      () => 0,
    );
    const at = new Date();
    const pid = await spawnDetached(this.opts.qemuBinary ?? 'qemu-system-x86_64', args, {
      logFile: paths.qemuLog,
      pidFile: paths.qemuPid,
      cwd: paths.dir,
    });
    await this.store.update(name, (rec) => {
      rec.boot = { at: at.toISOString(), disksFrom: from };
    });
    const markers = qemuMarkers(paths);
    // Up means QMP answers; an exit first (a bad disk URL, a missing file) is an error with QEMU's words.
    const deadline = Date.now() + (this.opts.startTimeoutMs ?? 20_000);
    for (;;) {
      if (existsSync(paths.qmp)) {
        const qmp = await QmpClient.connect(paths.qmp, 2000).catch(() => undefined);
        if (qmp) {
          qmp.close();
          break;
        }
      }
      if (await waitGone(pid, markers, 0)) {
        const why = (await readFile(paths.qemuLog, 'utf8').catch(() => '')).slice(logFrom).trim();
        await rm(paths.qemuPid, { force: true });
        throw new Error(`machine '${name}' failed to start: ${why || 'QEMU exited'}`);
      }
      if (Date.now() > deadline) {
        signal(pid, 'SIGKILL');
        throw new Error(`machine '${name}' did not come up within ${this.opts.startTimeoutMs ?? 20_000} ms`);
      }
      await sleep(50);
    }
    const first = firstOutput(paths.console, 600_000, 10, () => isOurs(pid, markers));
    first.catch(() => {});
    this.firstOutputs.set(name, first);
    this.log.info({ machine: name, pid, disksFrom: from.kind }, 'machine powered on');
  }

  async shutdown(name: string, opts: { timeoutMs?: number } = {}): Promise<'clean' | 'forced' | 'was-off'> {
    await this.store.must(name);
    const paths = this.paths(name);
    const pid = await this.qemuPid(paths);
    if (!pid) return 'was-off';
    const markers = qemuMarkers(paths);
    const timeoutMs = opts.timeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS;
    if (timeoutMs > 0) {
      // The ACPI power button: the guest shuts itself down (the test guest unmounts first).
      const sent = await this.qmp(paths, 'system_powerdown').then(
        () => true,
        (e: Error) => {
          this.log.warn({ machine: name, err: e.message }, 'system_powerdown failed');
          return false;
        },
      );
      if (sent && (await waitGone(pid, markers, timeoutMs))) {
        await rm(paths.qemuPid, { force: true });
        this.log.info({ machine: name }, 'machine shut down cleanly');
        return 'clean';
      }
    }
    await this.qmp(paths, 'quit').catch(() => {});
    if (!(await waitGone(pid, markers, 3000))) {
      signal(pid, 'SIGKILL');
      if (!(await waitGone(pid, markers, 10_000)))
        throw new Error(`machine '${name}': QEMU survived SIGKILL`);
    }
    await rm(paths.qemuPid, { force: true });
    this.log.warn({ machine: name, timeoutMs }, 'machine did not shut down in time: stopped by force');
    return 'forced';
  }

  async holdOff(name: string, reason: string): Promise<void> {
    if (!reason.trim()) throw new Error('a hold needs a reason (it is shown when a power-on is refused)');
    await this.store.update(name, (r) => {
      r.heldOffBy = reason;
    });
    this.log.info({ machine: name, reason }, 'machine held off');
  }

  async releaseHold(name: string): Promise<void> {
    await this.store.update(name, (r) => {
      delete r.heldOffBy;
    });
    this.log.info({ machine: name }, 'hold released');
  }

  async delete(
    name: string,
    opts: { deleteDisks?: boolean; shutdownTimeoutMs?: number } = {},
  ): Promise<void> {
    const r = await this.store.must(name);
    await this.shutdown(name, { timeoutMs: opts.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS });
    await this.stopAgent(name);
    if (opts.deleteDisks) for (const d of r.spec.disks) await rm(d.path, { force: true });
    await this.store.remove(name);
    this.firstOutputs.delete(name);
    this.log.info({ machine: name, disksDeleted: Boolean(opts.deleteDisks) }, 'machine deleted');
  }

  async freeze(name: string, opts: { syncTimeoutMs?: number } = {}): Promise<'frozen' | 'no-guest-agent'> {
    const ga = await this.guestAgent(name, opts.syncTimeoutMs);
    if (!ga) return 'no-guest-agent';
    try {
      const count = await ga.execute('guest-fsfreeze-freeze');
      this.log.info({ machine: name, fileSystems: count }, 'guest file systems frozen');
      return 'frozen';
    } finally {
      ga.close();
    }
  }

  async thaw(name: string, opts: { syncTimeoutMs?: number } = {}): Promise<void> {
    const ga = await this.guestAgent(name, opts.syncTimeoutMs);
    if (!ga) throw new Error(`machine '${name}' has no guest agent answering: nothing to thaw`);
    try {
      await ga.execute('guest-fsfreeze-thaw');
    } finally {
      ga.close();
    }
  }

  // --- beyond SiteAdapter: what tests, the drill and the RTO benchmark need ---

  /** When the current (or last) boot was started. */
  async poweredOnAt(name: string): Promise<Date | undefined> {
    const r = await this.store.must(name);
    return r.boot ? new Date(r.boot.at) : undefined;
  }

  /**
   * When the guest's console first showed output in the current boot: watched from the power-on
   * when this object powered it on, else observed now by polling.
   */
  async firstOutputAt(name: string, opts: { timeoutMs?: number } = {}): Promise<Date> {
    const watched = this.firstOutputs.get(name);
    if (watched) return watched;
    const paths = this.paths(name);
    const pid = await this.qemuPid(paths);
    return firstOutput(paths.console, opts.timeoutMs ?? 120_000, 10, () =>
      pid ? isOurs(pid, qemuMarkers(paths)) : false,
    );
  }

  /** The guest's console of the current (or last) boot. */
  async console(name: string): Promise<string> {
    return readConsole(this.paths(name).console);
  }

  /** Waits until the console matches pattern (an error if the machine stops first); the console text. */
  async waitForConsole(name: string, pattern: RegExp, timeoutMs = 120_000): Promise<string> {
    const paths = this.paths(name);
    const pid = await this.qemuPid(paths);
    return waitForText(paths.console, pattern, timeoutMs, () =>
      pid ? isOurs(pid, qemuMarkers(paths)) : false,
    );
  }

  /** Waits until the machine is off by itself (a guest that powers off); false after timeoutMs. */
  async waitForPowerOff(name: string, timeoutMs = 120_000): Promise<boolean> {
    const paths = this.paths(name);
    const pid = await this.qemuPid(paths);
    if (!pid) return true;
    const gone = await waitGone(pid, qemuMarkers(paths), timeoutMs);
    if (gone) await rm(paths.qemuPid, { force: true });
    return gone;
  }

  // --- internals ---

  private async view(name: string, r: MachineRecord): Promise<SiteMachine> {
    const paths = this.paths(name);
    const running = Boolean(await this.qemuPid(paths));
    return {
      name,
      spec: r.spec,
      powerState: running ? 'running' : 'off',
      disks: r.spec.disks,
      disksFrom: running && r.boot ? r.boot.disksFrom : r.disksFrom,
      agent: {
        dataDir: paths.agentDir,
        nbdSocket: paths.nbdSock,
        running: Boolean(await this.agentPid(paths)),
      },
      consoleLog: paths.console,
      ...(r.heldOffBy ? { heldOffBy: r.heldOffBy } : {}),
    };
  }

  private qemuPid(paths: MachinePaths): Promise<number | undefined> {
    return livePid(paths.qemuPid, qemuMarkers(paths));
  }

  private agentPid(paths: MachinePaths): Promise<number | undefined> {
    return livePid(paths.agentPid, agentMarkers(paths));
  }

  private async qmp(paths: MachinePaths, command: string): Promise<unknown> {
    const c = await QmpClient.connect(paths.qmp);
    try {
      return await c.execute(command);
    } finally {
      c.close();
    }
  }

  private async guestAgent(name: string, syncTimeoutMs = 3000): Promise<GuestAgentClient | undefined> {
    await this.store.must(name);
    const paths = this.paths(name);
    if (!(await this.qemuPid(paths)))
      throw new Error(`machine '${name}' is off: there is no guest to freeze or thaw`);
    return GuestAgentClient.connect(paths.qga, syncTimeoutMs);
  }
}

function checkSpec(spec: MachineSpec): void {
  if (!spec.disks.length) throw new Error(`machine '${spec.name}' needs at least one disk`);
  const seen = new Set<string>();
  for (const d of spec.disks) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/.test(d.name)) {
      throw new Error(
        `disk name '${d.name}' of machine '${spec.name}' is not valid: letters, digits, '_', '-'`,
      );
    }
    if (seen.has(d.name)) throw new Error(`machine '${spec.name}' names disk '${d.name}' twice`);
    seen.add(d.name);
    if (!Number.isSafeInteger(d.sizeBytes) || d.sizeBytes <= 0 || d.sizeBytes % 512) {
      throw new Error(
        `disk '${d.name}' of machine '${spec.name}': size must be a positive multiple of 512 bytes`,
      );
    }
    if (!d.path.startsWith('/'))
      throw new Error(`disk '${d.name}' of machine '${spec.name}': path must be absolute`);
  }
  if (spec.memoryMiB !== undefined && (!Number.isInteger(spec.memoryMiB) || spec.memoryMiB < 64)) {
    throw new Error(`machine '${spec.name}': memoryMiB must be an integer of at least 64`);
  }
  if (spec.disksFrom?.kind === 'nbd' && spec.disksFrom.urls.length !== spec.disks.length) {
    throw new Error(
      `machine '${spec.name}' has ${spec.disks.length} disk(s) but disksFrom gives ${spec.disksFrom.urls.length} URL(s)`,
    );
  }
}
