#!/usr/bin/env node
// The `rebound` binary: one entry point, one subcommand per part.
import './threadpool.js';
import { Command } from 'commander';
import { registerAgentCommands } from './agent-commands.js';
import { registerAlertCommands } from './alert-commands.js';
import { registerCaCommands } from './ca-commands.js';
import { registerDrillCommand } from './drill-command.js';
import { exitCodeFor } from './exit-codes.js';
import { registerMachineCommands } from './machine-commands.js';
import { registerMasterTargetCommands } from './master-target-commands.js';
import { registerProcessServerCommands } from './process-server-commands.js';
import { registerServerCommands } from './server-commands.js';
import { registerSiteCommands } from './site-commands.js';

const program = new Command();
program
  .name('rebound')
  .description('Rebound: open-source disaster recovery for Linux servers and QEMU/KVM virtual machines')
  .version('0.1.0')
  .showHelpAfterError();

registerAgentCommands(program);
registerDrillCommand(program);
registerCaCommands(program);
registerProcessServerCommands(program);
registerMasterTargetCommands(program);
registerServerCommands(program);
registerSiteCommands(program);
registerMachineCommands(program);
registerAlertCommands(program);

program.parseAsync(process.argv).catch((e: Error) => {
  console.error(`rebound: error: ${e.message}`);
  process.exit(exitCodeFor(e));
});
