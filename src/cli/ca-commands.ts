// `rebound ca init` and `rebound ca issue`: the deployment's certificate authority.
import type { Command } from 'commander';
import { DEFAULT_CA_DAYS, DEFAULT_LEAF_DAYS, initCa, issueCert } from '../pki/ca.js';
import { ROLES } from '../pki/roles.js';

function parseDays(text: string): number {
  if (!/^\d+$/.test(text)) throw new Error(`--days '${text}' is not a whole number of days`);
  return Number(text);
}

export function registerCaCommands(program: Command): void {
  const ca = program
    .command('ca')
    .description('the deployment’s certificate authority: one certificate per component, for mutual TLS');

  ca.command('init')
    .description('create a new CA (ca.key, ca.crt) in a directory; never overwrites an existing one')
    .requiredOption('--dir <dir>', 'CA directory (created if missing; keep it private)')
    .option('--name <cn>', 'the CA’s common name (default: "Rebound deployment CA <random>")')
    .option('--days <n>', 'validity in days', String(DEFAULT_CA_DAYS))
    .option('--json', 'machine-readable output')
    .action(async (o) => {
      const info = await initCa(o.dir, { commonName: o.name, days: parseDays(o.days) });
      if (o.json) console.log(JSON.stringify({ ...info, notAfter: info.notAfter.toISOString() }));
      else {
        console.log(`created CA '${info.subject}' in ${info.dir}`);
        console.log(`  key ${info.keyPath} (keep it secret), certificate ${info.certPath}`);
        console.log(`  valid until ${info.notAfter.toISOString()}, SHA-256 ${info.fingerprint}`);
      }
    });

  ca.command('issue')
    .description('issue a certificate for one component, signed by the CA')
    .requiredOption('--dir <dir>', 'CA directory (from `rebound ca init`)')
    .requiredOption('--role <role>', `component role: ${ROLES.join(' | ')}`)
    .requiredOption('--name <name>', 'component name (certificate CN and DNS name)')
    .option('--out <dir>', 'write the key, certificate and a copy of ca.crt here (default: --dir)')
    .option('--days <n>', 'validity in days (never beyond the CA’s)', String(DEFAULT_LEAF_DAYS))
    .option('--force', 'replace an existing key and certificate of the same role and name')
    .option('--json', 'machine-readable output')
    .action(async (o) => {
      const r = await issueCert(o.dir, {
        role: o.role,
        name: o.name,
        outDir: o.out,
        days: parseDays(o.days),
        force: o.force ?? false,
      });
      if (o.json) console.log(JSON.stringify({ ...r, notAfter: r.notAfter.toISOString() }));
      else {
        console.log(`issued ${r.role} certificate for '${r.name}' (serial ${r.serialNumber})`);
        console.log(`  key ${r.keyPath}, certificate ${r.certPath}, CA ${r.caPath}`);
        console.log(`  valid until ${r.notAfter.toISOString()}`);
      }
    });
}
