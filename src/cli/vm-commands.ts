// `rebound vm create|list|start|shutdown|delete --site SITE`: machines at a site, through its
// adapter. On a qemu site `vm create` defines a VM, makes its sparse disks and installs its
// agent, registered with the configuration server: the machine is ready to protect.
import type { Command } from 'commander';
import type { SiteMachineJson } from '../control-plane/api/routes/site-machines.js';
import { adminClient } from '../control-plane/client/connection.js';
import { parseSize } from '../util/size.js';
import { printJson, printRows } from './output.js';

const CS_CONFIG_HELP = 'configuration server connection (default /var/lib/rebound/server/cli.json)';
const enc = encodeURIComponent;

const collect = (v: string, prev: string[]) => [...prev, v];

export function registerVmCommands(program: Command): void {
  const vm = program.command('vm').description('machines at a site (qemu VMs, or physical machines)');
  const common = (c: Command) =>
    c
      .requiredOption('--site <site>', 'the site')
      .option('--json', 'print JSON')
      .option('--cs-config <file>', CS_CONFIG_HELP);
  const say = (m: SiteMachineJson, o: { json?: boolean }, what: string) => {
    if (o.json) printJson(m);
    else
      console.log(m.manual ? `${what}: manual step: ${m.manual}` : `${what}: ${m.name} is ${m.power_state}`);
  };

  common(
    vm
      .command('create <name>')
      .description('define a machine (qemu: a VM with its own agent, registered and ready to protect)')
      .option('--disk <name=size>', 'a disk, e.g. vda=1G (repeatable)', collect, [])
      .option('--memory <MiB>', 'memory', '256')
      .requiredOption('--kernel <file>', 'the kernel to boot')
      .requiredOption('--initrd <file>', 'the initramfs')
      .option('--append <cmdline>', 'kernel command line'),
  ).action(async (name: string, o) => {
    const disks = (o.disk as string[]).map((d) => {
      const [n, size] = d.split('=');
      if (!n || !size) throw new Error(`--disk '${d}' is not NAME=SIZE (e.g. vda=1G)`);
      return { name: n, sizeBytes: parseSize(size) };
    });
    if (disks.length === 0) throw new Error('give at least one --disk NAME=SIZE');
    const m = await (await adminClient(o.csConfig)).post<SiteMachineJson>(
      `/api/v1/sites/${enc(o.site)}/machines`,
      {
        name,
        disks,
        memoryMiB: Number(o.memory),
        kernel: o.kernel,
        initrd: o.initrd,
        ...(o.append ? { append: o.append } : {}),
      },
    );
    say(m, o, 'created');
  });

  common(vm.command('list').description('machines at the site')).action(async (o) => {
    const rows = await (await adminClient(o.csConfig)).get<SiteMachineJson[]>(
      `/api/v1/sites/${enc(o.site)}/machines`,
    );
    printRows(
      rows,
      [
        { header: 'name', value: (m) => m.name },
        { header: 'power', value: (m) => m.power_state },
        { header: 'disks', value: (m) => m.disks.map((d) => d.name).join(',') },
        {
          header: 'agent',
          value: (m) => (m.agent_running === null ? '-' : m.agent_running ? 'running' : 'stopped'),
        },
        { header: 'held off', value: (m) => m.held_off_by ?? '' },
      ],
      Boolean(o.json),
      'no machines',
    );
  });

  common(vm.command('start <name>').description('power the machine on')).action(async (name: string, o) => {
    const m = await (await adminClient(o.csConfig)).post<SiteMachineJson>(
      `/api/v1/sites/${enc(o.site)}/machines/${enc(name)}/power-on`,
      {},
    );
    say(m, o, 'started');
  });

  common(
    vm
      .command('shutdown <name>')
      .description('clean shutdown, forced after a timeout')
      .option('--timeout <seconds>', 'force it off after this long', '120'),
  ).action(async (name: string, o) => {
    const r = await (await adminClient(o.csConfig)).post<{ machine: SiteMachineJson; outcome: string }>(
      `/api/v1/sites/${enc(o.site)}/machines/${enc(name)}/shutdown`,
      { timeoutSeconds: Number(o.timeout) },
    );
    if (o.json) printJson(r);
    else console.log(r.machine.manual ? `manual step: ${r.machine.manual}` : `${name}: ${r.outcome}`);
  });

  common(
    vm
      .command('delete <name>')
      .description('remove the machine (its disks only with --delete-disks)')
      .option('--delete-disks', 'delete its disk images too'),
  ).action(async (name: string, o) => {
    await (await adminClient(o.csConfig)).delete(
      `/api/v1/sites/${enc(o.site)}/machines/${enc(name)}${o.deleteDisks ? '?deleteDisks=true' : ''}`,
    );
    if (!o.json) console.log(`${name} deleted`);
  });
}
