#!/usr/bin/env -S node --max-semi-space-size=2
// The `rebound` binary: one entry point, one subcommand per part (see command-table.ts).
// The shebang's flag is SERVICE_NODE_FLAGS (service-memory.ts): keep them the same.
import './threadpool.js';
import { Command } from 'commander';
import { registrarsFor } from './command-table.js';
import { exitCodeFor } from './exit-codes.js';

const program = new Command();
program
  .name('rebound')
  .description('Rebound: open-source disaster recovery for Linux servers and QEMU/KVM virtual machines')
  .version('0.1.0')
  .showHelpAfterError();

registrarsFor(process.argv.slice(2))
  .then((registrars) => {
    for (const register of registrars) register(program);
    return program.parseAsync(process.argv);
  })
  .catch((e: Error) => {
    console.error(`rebound: error: ${e.message}`);
    process.exit(exitCodeFor(e));
  });
