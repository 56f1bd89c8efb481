// The peer to beat for end-to-end replication: the same bytes through the same shape of
// path, made of nbdkit. Three processes on loopback, two mutual-TLS hops, into a file:
//
//   fio --ioengine=nbd -> nbdkit nbd (plain NBD in, TLS out)      ~ the agent
//                      -> nbdkit nbd (TLS in, TLS out)             ~ the process server
//                      -> nbdkit file (TLS in, --tls-verify-peer)  ~ the master target
//
// Each nbdkit is handed a socket already listening on a port the kernel chose (socket
// activation: LISTEN_FDS), so no port is guessed. TLS certificates come from our own
// deployment CA, laid out as GnuTLS wants them (ca-cert.pem, server-*.pem, client-*.pem).
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { initCa, issueCert } from '../../src/pki/ca.js';
import { exited, run, stopChild, Tail, waitFor } from './proc.js';
import { type RssPeak, RssSampler } from './rss.js';

interface Hop {
  child: ChildProcess;
  port: number;
  stderr: Tail;
  rss: RssSampler;
}

/** A GnuTLS certificate directory for nbdkit (server) or libnbd (client). */
async function certDir(ca: string, dir: string, name: string, kind: 'server' | 'client'): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const c = await issueCert(ca, { role: 'master-target', name, outDir: dir });
  copyFileSync(c.caPath, join(dir, 'ca-cert.pem'));
  copyFileSync(c.certPath, join(dir, `${kind}-cert.pem`));
  copyFileSync(c.keyPath, join(dir, `${kind}-key.pem`));
  return dir;
}

/** Starts nbdkit on a fresh listening socket of port 0 (socket activation). */
async function startNbdkit(args: string[]): Promise<Hop> {
  const server: Server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  // `_handle.fd` is not documented Node API; it is the listening socket's descriptor.
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
  const quoted = args.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const child = spawn(
    'sh',
    ['-c', `LISTEN_PID=$$ LISTEN_FDS=1 exec nbdkit -f --exit-with-parent ${quoted}`],
    {
      stdio: ['ignore', 'ignore', 'pipe', fd],
    },
  );
  server.close();
  const stderr = new Tail();
  child.stderr!.on('data', (d) => stderr.push(d));
  return { child, port, stderr, rss: new RssSampler(child.pid!).start() };
}

export class PeerChain {
  private constructor(
    private readonly hops: Hop[],
    readonly uri: string,
  ) {}

  static async start(work: string, image: string): Promise<PeerChain> {
    const ca = join(work, 'peer-ca');
    await initCa(ca);
    const fileSrv = await certDir(ca, join(work, 'peer-tls', 'file-server'), 'peer-file', 'server');
    const midSrv = await certDir(ca, join(work, 'peer-tls', 'mid-server'), 'peer-mid-server', 'server');
    const midCli = await certDir(ca, join(work, 'peer-tls', 'mid-client'), 'peer-mid-client', 'client');
    const frontCli = await certDir(ca, join(work, 'peer-tls', 'front-client'), 'peer-front', 'client');
    const hops: Hop[] = [];
    const chain = new PeerChain(hops, '');
    try {
      const tlsServer = (dir: string) => ['--tls=require', `--tls-certificates=${dir}`, '--tls-verify-peer'];
      hops.push(await startNbdkit([...tlsServer(fileSrv), 'file', image]));
      hops.push(
        await startNbdkit([
          ...tlsServer(midSrv),
          'nbd',
          `uri=nbds://127.0.0.1:${hops[0]!.port}/`,
          `tls-certificates=${midCli}`,
        ]),
      );
      hops.push(
        await startNbdkit(['nbd', `uri=nbds://127.0.0.1:${hops[1]!.port}/`, `tls-certificates=${frontCli}`]),
      );
      const uri = `nbd://127.0.0.1:${hops[2]!.port}/`;
      await waitFor('the nbdkit chain to answer nbdinfo', async () => {
        for (const h of hops) {
          if (exited(h.child)) throw new Error(`nbdkit exited: ${h.stderr.toString().trim()}`);
        }
        return run('nbdinfo', ['--size', uri], { timeoutMs: 5_000 }).then(
          () => true,
          () => false,
        );
      });
      return new PeerChain(hops, uri);
    } catch (e) {
      await chain.stop();
      throw e;
    }
  }

  pids(): number[] {
    return this.hops.map((h) => h.child.pid!);
  }

  /** Largest RSS of each hop: file, middle, front. */
  async stop(): Promise<RssPeak[]> {
    const rss: RssPeak[] = [];
    for (const h of this.hops) rss.push(await h.rss.stop());
    for (const h of [...this.hops].reverse()) await stopChild(h.child, 'SIGTERM', 10_000);
    return rss;
  }
}
