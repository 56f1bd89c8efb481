// A site's machine records: <siteDir>/machines/<name>/machine.json, written atomically (a
// temporary file renamed over it) so a crash never leaves half a record; several processes may
// drive one site.
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DiskSource, MachineSpec, PowerState } from './site-adapter.js';

export interface MachineRecord {
  version: 1;
  spec: MachineSpec;
  /** Where the disks come from when the machine boots without an override. */
  disksFrom: DiskSource;
  /** S21: why power-on is refused, while set. */
  heldOffBy?: string;
  createdAt: string;
  /** qemu: the current (or last) boot. */
  boot?: { at: string; disksFrom: DiskSource };
  /** physical: the power state the operator last confirmed. */
  powerState?: PowerState;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Refuses a name that cannot be a directory and an NBD export/certificate name as it is. */
export function checkMachineName(name: string): void {
  if (!NAME.test(name) || name.includes('..')) {
    throw new Error(
      `machine name '${name}' is not valid: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
}

export class MachineStore {
  readonly machinesDir: string;

  constructor(readonly siteDir: string) {
    this.machinesDir = join(siteDir, 'machines');
  }

  dir(name: string): string {
    return join(this.machinesDir, name);
  }

  async init(): Promise<void> {
    await mkdir(this.machinesDir, { recursive: true });
  }

  async read(name: string): Promise<MachineRecord | undefined> {
    checkMachineName(name);
    let text: string;
    try {
      text = await readFile(join(this.dir(name), 'machine.json'), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    try {
      return JSON.parse(text) as MachineRecord;
    } catch (e) {
      throw new Error(`${join(this.dir(name), 'machine.json')} is not JSON: ${(e as Error).message}`);
    }
  }

  /** The record, or an error naming the machine and the site. */
  async must(name: string): Promise<MachineRecord> {
    const r = await this.read(name);
    if (!r) throw new Error(`no machine '${name}' on this site (${this.siteDir})`);
    return r;
  }

  async write(name: string, record: MachineRecord): Promise<void> {
    const dir = this.dir(name);
    await mkdir(dir, { recursive: true });
    const tmp = join(dir, `.machine.json.${process.pid}.tmp`);
    await writeFile(tmp, `${JSON.stringify(record, null, 2)}\n`);
    await rename(tmp, join(dir, 'machine.json'));
  }

  /** Reads, changes and writes a record. */
  async update(name: string, change: (r: MachineRecord) => void): Promise<MachineRecord> {
    const r = await this.must(name);
    change(r);
    await this.write(name, r);
    return r;
  }

  async names(): Promise<string[]> {
    const entries = await readdir(this.machinesDir, { withFileTypes: true }).catch(() => []);
    const names: string[] = [];
    for (const e of entries) {
      if (e.isDirectory() && NAME.test(e.name) && (await this.read(e.name))) names.push(e.name);
    }
    return names.sort();
  }

  async remove(name: string): Promise<void> {
    await rm(this.dir(name), { recursive: true, force: true });
  }
}
