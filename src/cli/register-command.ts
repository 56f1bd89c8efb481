// `rebound agent|process-server|master-target register`: the command-line configurator (S9,
// the original's `UnifiedAgentConfigurator.sh -i <CS address> -P <passphrase file>`).
import type { Command } from 'commander';
import { type RegisterOptions, registerWithServer } from '../control-plane/registration/client.js';
import { CONFIGURATOR_LOG, ConfiguratorLog } from '../control-plane/registration/configurator-log.js';
import type { RegisteringRole } from '../control-plane/registration/protocol.js';
import { printJson } from './output.js';

export const DEFAULT_AGENT_DIR = '/var/lib/rebound/agent';

export function addRegisterCommand(parent: Command, role: RegisteringRole): void {
  const what = role === 'agent' ? 'this agent' : `this ${role.replace('-', ' ')}`;
  const cmd = parent
    .command('register')
    .description(
      `register ${what} with a configuration server (passphrase), receiving its certificate; ` +
        `every step is logged to ${CONFIGURATOR_LOG}`,
    )
    .requiredOption('-i, --cs <host:port>', 'the configuration server’s address (port 9443 if omitted)')
    .requiredOption('-P, --passphrase-file <file>', 'a file holding the registration passphrase')
    .option('--name <name>', 'the component’s name (its certificate’s); default this host’s name');
  if (role === 'agent') {
    cmd
      .option(
        '--data-dir <dir>',
        'the agent data dir (registration and certificate go here)',
        DEFAULT_AGENT_DIR,
      )
      .option('--os-type <type>', 'the machine’s OS: linux or windows', 'linux')
      .option('--site <name>', 'the site the machine belongs to');
  } else {
    cmd
      .requiredOption(
        '--tls-dir <dir>',
        `where its key, certificate and registration go (${role} start --tls-dir)`,
      )
      .option('--address <host:port>', 'its data-plane listener, as others should reach it');
  }
  cmd.option('--json', 'print JSON').action(async (o) => {
    const log = new ConfiguratorLog(`register ${role} '${o.name ?? '(host name)'}' with ${o.cs}`);
    const opts: RegisterOptions = {
      role,
      server: o.cs,
      passphraseFile: o.passphraseFile,
      name: o.name,
      dataDir: o.dataDir,
      osType: o.osType,
      site: o.site,
      tlsDir: o.tlsDir,
      address: o.address,
      log,
    };
    log.step(`start (${role === 'agent' ? `data dir ${o.dataDir}` : `TLS dir ${o.tlsDir}`})`);
    try {
      const r = await registerWithServer(opts);
      log.step(`${r.reregistered ? 're-registered' : 'registered'} as ${role} '${r.name}'`);
      if (o.json) return printJson(r);
      console.log(
        `${role} ${r.name} ${r.reregistered ? 're-registered' : 'registered'} with ${r.server}` +
          (r.machineId ? ` (machine id ${r.machineId})` : '') +
          `; certificate ${r.certFile} valid until ${r.certNotAfter}`,
      );
    } catch (e) {
      log.failed((e as Error).message);
      throw e;
    }
  });
}
