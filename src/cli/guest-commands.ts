// `rebound guest build`: the tiny Linux the qemu site's tests, the drill and the RTO benchmark boot.
import type { Command } from 'commander';
import { buildGuest, guestDir } from '../sites/guest/build.js';
import { createLogger } from '../util/logger.js';
import { printJson } from './output.js';

export function registerGuestCommands(program: Command): void {
  const guest = program.command('guest').description('the test guest: Debian kernel + busybox initramfs');
  guest
    .command('build')
    .description('build the guest (kernel, initramfs) unless the directory already holds one')
    .option('--out <dir>', 'where it goes (default $REBOUND_GUEST_DIR or /var/cache/rebound/guest)')
    .option('--force', 'rebuild even when a build is present')
    .option('--json', 'print JSON')
    .action(async (o) => {
      const g = await buildGuest({
        out: o.out ?? guestDir(),
        force: Boolean(o.force),
        logger: createLogger(),
      });
      if (o.json) return printJson(g);
      console.log(
        `guest ${g.built ? 'built' : 'already built'}: kernel ${g.kernel} (${g.kernelVersion}` +
          `${g.uncompressed ? ', uncompressed' : ''}), initrd ${g.initrd}, append '${g.append}'`,
      );
    });
}
