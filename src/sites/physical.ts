// The physical site: Rebound cannot press a server's power button, so every power and agent
// action becomes a manual step (the job shows it and waits for `rebound jobs confirm`). The
// machines, their holds (S21) and the power state the operator last confirmed are recorded in
// the site's state directory.
import type { Logger } from 'pino';
import { checkMachineName, type MachineRecord, MachineStore } from './machine-store.js';
import type {
  AgentRegistration,
  DiskSource,
  MachineSpec,
  ManualAction,
  PowerState,
  SiteAdapter,
  SiteMachine,
} from './site-adapter.js';

export class PhysicalSite implements SiteAdapter {
  readonly kind = 'physical' as const;
  private readonly store: MachineStore;
  private readonly log: Logger;

  private constructor(opts: { dir: string; logger: Logger }) {
    this.store = new MachineStore(opts.dir);
    this.log = opts.logger.child({ site: opts.dir, adapter: 'physical' });
  }

  static async open(opts: { dir: string; logger: Logger }): Promise<PhysicalSite> {
    const site = new PhysicalSite(opts);
    await site.store.init();
    return site;
  }

  /** Records the machine (its disks are the server's own: nothing is created). */
  async create(spec: MachineSpec): Promise<SiteMachine> {
    checkMachineName(spec.name);
    if (await this.store.read(spec.name))
      throw new Error(`machine '${spec.name}' already exists on this site`);
    if (!spec.disks.length) throw new Error(`machine '${spec.name}' needs at least one disk`);
    const record: MachineRecord = {
      version: 1,
      spec,
      disksFrom: spec.disksFrom ?? { kind: 'agent' },
      createdAt: new Date().toISOString(),
      powerState: 'off',
    };
    await this.store.write(spec.name, record);
    this.log.info({ machine: spec.name }, 'machine recorded');
    return view(record);
  }

  async get(name: string): Promise<SiteMachine | undefined> {
    const r = await this.store.read(name);
    return r ? view(r) : undefined;
  }

  async list(): Promise<SiteMachine[]> {
    const out: SiteMachine[] = [];
    for (const n of await this.store.names()) out.push(view(await this.store.must(n)));
    return out;
  }

  async startAgent(
    name: string,
    reg: AgentRegistration,
    opts: { resetLog?: boolean } = {},
  ): Promise<ManualAction> {
    const r = await this.store.must(name);
    const disks = r.spec.disks.map((d) => `--disk ${d.name}=${d.path}`).join(' ');
    return {
      manual:
        `On machine '${name}': register its agent with 'rebound agent register -i ${reg.cs} -P ${reg.passphraseFile} --name ${name}', ` +
        `then start 'rebound agent serve ${disks}'` +
        (opts.resetLog ? ' with its change log reset (its disks were rewritten at the other site)' : '') +
        ', and confirm',
    };
  }

  async stopAgent(name: string): Promise<ManualAction> {
    await this.store.must(name);
    return { manual: `Stop the Rebound agent ('rebound agent serve') on machine '${name}' and confirm` };
  }

  async powerOn(name: string, opts: { disksFrom?: DiskSource } = {}): Promise<ManualAction> {
    const r = await this.store.must(name);
    if (r.heldOffBy) {
      throw new Error(
        `machine '${name}' is held off: ${r.heldOffBy}; power-on refused until the hold is released`,
      );
    }
    const from = opts.disksFrom ?? r.disksFrom;
    if (from.kind === 'nbd') {
      if (from.urls.length !== r.spec.disks.length) {
        throw new Error(
          `machine '${name}' has ${r.spec.disks.length} disk(s) but ${from.urls.length} NBD URL(s) were given`,
        );
      }
      const disks = r.spec.disks.map((d, i) => `${d.name} from ${from.urls[i]}`).join(', ');
      return { manual: `Boot machine '${name}' with its disks attached over NBD (${disks}) and confirm` };
    }
    return { manual: `Power on machine '${name}' and confirm` };
  }

  async shutdown(name: string, opts: { timeoutMs?: number } = {}): Promise<'was-off' | ManualAction> {
    const r = await this.store.must(name);
    if (r.powerState === 'off') return 'was-off';
    const force =
      opts.timeoutMs === undefined
        ? ''
        : ` (power it off if it has not stopped after ${Math.ceil(opts.timeoutMs / 1000)} s)`;
    return { manual: `Shut down machine '${name}' cleanly${force} and confirm` };
  }

  /** The operator confirmed a power action: the state get() and list() report from now on. */
  async confirmPowerState(name: string, state: PowerState): Promise<void> {
    await this.store.update(name, (r) => {
      r.powerState = state;
    });
    this.log.info({ machine: name, state }, 'power state confirmed');
  }

  async holdOff(name: string, reason: string): Promise<void> {
    if (!reason.trim()) throw new Error('a hold needs a reason (it is shown when a power-on is refused)');
    await this.store.update(name, (r) => {
      r.heldOffBy = reason;
    });
  }

  async releaseHold(name: string): Promise<void> {
    await this.store.update(name, (r) => {
      delete r.heldOffBy;
    });
  }

  /** Forgets the machine. Its disks are the server's own: deleteDisks is refused. */
  async delete(name: string, opts: { deleteDisks?: boolean } = {}): Promise<void> {
    await this.store.must(name);
    if (opts.deleteDisks) {
      throw new Error(
        `a physical site cannot delete the disks of machine '${name}': wipe them on the server itself`,
      );
    }
    await this.store.remove(name);
    this.log.info({ machine: name }, 'machine record removed');
  }
}

function view(r: MachineRecord): SiteMachine {
  return {
    name: r.spec.name,
    spec: r.spec,
    powerState: r.powerState ?? 'off',
    disks: r.spec.disks,
    disksFrom: r.disksFrom,
    ...(r.heldOffBy ? { heldOffBy: r.heldOffBy } : {}),
  };
}
