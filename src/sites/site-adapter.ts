// What a site can do with its machines. The configuration server's failover, reprotect and
// failback jobs drive machines only through this interface; `qemu` runs real QEMU VMs on this
// host, `physical` turns every power action into a manual step the job waits on.

/** One disk of a machine: an image file on the site's host, served to the machine over NBD. */
export interface MachineDiskSpec {
  /** The disk's name inside the machine (also its NBD export name), e.g. `vda`. */
  name: string;
  /** The image file (created sparse at sizeBytes when missing). */
  path: string;
  sizeBytes: number;
}

/** Where a machine's disks come from when it powers on. */
export type DiskSource =
  /** Its own agent, which serves (and captures) the disk images (protected, or recovered by failover). */
  | { kind: 'agent' }
  /** Other NBD exports, one URL per disk in order (a test failover boots from a master target's view). */
  | { kind: 'nbd'; urls: string[] };

export interface MachineSpec {
  name: string;
  memoryMiB?: number;
  disks: MachineDiskSpec[];
  /** Direct kernel boot (the tests' and the drill's tiny Linux). */
  boot: { kernel: string; initrd: string; append?: string };
  /** 'isolated': a NIC on a network that reaches nothing (test failover); 'none': no NIC. */
  network?: 'none' | 'isolated';
  disksFrom?: DiskSource;
}

export type PowerState = 'running' | 'off';

/** A power action a person must do (physical sites): the job shows it and waits for confirmation. */
export interface ManualAction {
  manual: string;
}

export interface SiteMachine {
  name: string;
  /** How it was defined (a failover recovers it with the same boot and memory). */
  spec?: MachineSpec;
  powerState: PowerState;
  disks: MachineDiskSpec[];
  disksFrom: DiskSource;
  /** The machine's agent (qemu sites run one per machine on the host). */
  agent?: { dataDir: string; nbdSocket: string; running: boolean };
  /** The guest's serial console, as a file (qemu). */
  consoleLog?: string;
  /** Set while a reprotect keeps this machine off (S21): powering on is refused with the reason. */
  heldOffBy?: string;
}

/** How the adapter registers the agents it installs: the configuration server's address and passphrase. */
export interface AgentRegistration {
  /** host:port of the configuration server. */
  cs: string;
  passphraseFile: string;
}

// Power actions answer nothing (done) or what a person must do: `void` keeps implementations
// that never ask for manual steps (qemu) plain `Promise<void>`.
export interface SiteAdapter {
  readonly kind: 'qemu' | 'physical';
  /** Defines a machine (its disk images are created sparse when missing); it stays off. */
  create(spec: MachineSpec): Promise<SiteMachine>;
  get(name: string): Promise<SiteMachine | undefined>;
  list(): Promise<SiteMachine[]>;
  /** Installs (registers) and starts the machine's agent; idempotent. `resetLog`: its disks were rewritten elsewhere. */
  startAgent(
    name: string,
    reg: AgentRegistration,
    opts?: { resetLog?: boolean },
    // biome-ignore lint/suspicious/noConfusingVoidType: qemu implements these as Promise<void>
  ): Promise<void | ManualAction>;
  // biome-ignore lint/suspicious/noConfusingVoidType: qemu implements these as Promise<void>
  stopAgent(name: string): Promise<void | ManualAction>;
  /** Boots the machine (optionally from other disks, e.g. a test view). Refused while held off. */
  // biome-ignore lint/suspicious/noConfusingVoidType: qemu implements these as Promise<void>
  powerOn(name: string, opts?: { disksFrom?: DiskSource }): Promise<void | ManualAction>;
  /** Clean shutdown, forced stop after timeoutMs. */
  shutdown(
    name: string,
    opts?: { timeoutMs?: number },
  ): Promise<'clean' | 'forced' | 'was-off' | ManualAction>;
  /** S21: keeps the machine off (reason shown on a refused power-on) until released. */
  holdOff(name: string, reason: string): Promise<void>;
  releaseHold(name: string): Promise<void>;
  /** Removes the machine (stopped first); its disk images only when `deleteDisks`. */
  delete(name: string, opts?: { deleteDisks?: boolean }): Promise<void>;
  /** Application-consistent points through the QEMU guest agent, when the guest has one. */
  freeze?(name: string): Promise<'frozen' | 'no-guest-agent'>;
  thaw?(name: string): Promise<void>;
}
