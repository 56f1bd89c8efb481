// Which module defines each top-level command. main.ts loads only the module of the command
// given, so `rebound sites` does not load the agent, the master target or the database
// drivers (about 1 s of start-up otherwise); help and unknown commands load them all.
// test/unit/command-table.test.ts checks this table against what the modules register.
import type { Command } from 'commander';

export type Registrar = (program: Command) => void;

export const COMMAND_MODULES: { names: readonly string[]; load: () => Promise<Registrar> }[] = [
  { names: ['agent', 'log'], load: async () => (await import('./agent-commands.js')).registerAgentCommands },
  { names: ['drill'], load: async () => (await import('./drill-command.js')).registerDrillCommand },
  { names: ['ca'], load: async () => (await import('./ca-commands.js')).registerCaCommands },
  {
    names: ['process-server'],
    load: async () => (await import('./process-server-commands.js')).registerProcessServerCommands,
  },
  {
    names: ['master-target'],
    load: async () => (await import('./master-target-commands.js')).registerMasterTargetCommands,
  },
  { names: ['server'], load: async () => (await import('./server-commands.js')).registerServerCommands },
  { names: ['sites'], load: async () => (await import('./site-commands.js')).registerSiteCommands },
  {
    names: ['protect', 'items', 'unprotect', 'recovery-points'],
    load: async () => (await import('./item-commands.js')).registerItemCommands,
  },
  {
    names: ['test-failover', 'cleanup-test-failover', 'failover', 'commit', 'reprotect', 'failback'],
    load: async () => (await import('./recovery-commands.js')).registerRecoveryCommands,
  },
  { names: ['groups'], load: async () => (await import('./group-commands.js')).registerGroupCommands },
  { names: ['plans'], load: async () => (await import('./plan-commands.js')).registerPlanCommands },
  { names: ['vm'], load: async () => (await import('./vm-commands.js')).registerVmCommands },
  { names: ['jobs'], load: async () => (await import('./job-commands.js')).registerJobCommands },
  {
    names: ['process-servers', 'master-targets'],
    load: async () => (await import('./component-commands.js')).registerComponentCommands,
  },
  {
    names: ['datastores', 'retention-volumes'],
    load: async () => (await import('./storage-commands.js')).registerStorageCommands,
  },
  { names: ['policies'], load: async () => (await import('./policy-commands.js')).registerPolicyCommands },
  { names: ['machines'], load: async () => (await import('./machine-commands.js')).registerMachineCommands },
  { names: ['guest'], load: async () => (await import('./guest-commands.js')).registerGuestCommands },
  { names: ['alerts'], load: async () => (await import('./alert-commands.js')).registerAlertCommands },
];

/** The registrars needed for argv: the named command's module, or all of them. */
export async function registrarsFor(argv: readonly string[]): Promise<Registrar[]> {
  const first = argv.find((a) => !a.startsWith('-'));
  const match = COMMAND_MODULES.find((m) => first !== undefined && m.names.includes(first));
  return Promise.all((match ? [match] : COMMAND_MODULES).map((m) => m.load()));
}
