import { join } from 'node:path';
import type { Command } from 'commander';
import { loadState } from '../agent/agent-state.js';
import { callAgent } from '../agent/control-server.js';
import { type AgentLiveStatus, formatLiveStatus } from '../agent/live-status.js';
import { formatSummary, summarizeDataDir } from '../agent/log-summary.js';
import { formatPolicyStatus, type PolicyStatus } from '../agent/policy-status.js';
import { resetAgentDataDir } from '../agent/reset.js';
import { applyLog } from '../changelog/apply.js';
import { ChangeLog } from '../changelog/change-log.js';
import { sparseCopy } from '../storage/sparse-copy.js';
import { collect, parseSeconds, parseSeq } from './parse.js';
import { addRegisterCommand } from './register-command.js';

export function registerAgentCommands(program: Command): void {
  const agent = program
    .command('agent')
    .description('the capture agent (Mobility service) of a protected machine');

  agent
    .command('serve')
    .description('serve disks over NBD and record every change in the change log')
    .requiredOption('--data-dir <dir>', 'agent state, change log and dirty bitmaps')
    .option('--disk <name=path>', 'a protected disk: raw image or block device (repeatable)', collect, [])
    .option('--disk-ro <name=path>', 'a disk served read-only, not captured (repeatable)', collect, [])
    .option('--listen <host:port>', 'TCP listener (default 127.0.0.1:10809 unless --socket is given)')
    .option('--socket <path>', 'Unix-socket listener')
    .option('--log-limit <size>', 'change-log size limit; beyond it changes go to the dirty bitmap', '1G')
    .option('--segment-size <size>', 'change-log segment file size', '64M')
    .option(
      '--checkpoint-interval <seconds>',
      'how often the disks are fsynced behind the log (FLUSH needs only the log)',
      '5',
    )
    .option('--process-server <host:port>', 'ship the change log to this process server (mutual TLS)')
    .option(
      '--tls-dir <dir>',
      'this agent’s key and certificate (rebound ca issue --role agent) and ca.crt; default: its registration’s',
    )
    .option('--name <name>', 'this agent’s component name (the certificate’s); default: its registration’s')
    .option('--metrics-listen <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics')
    .option(
      '--ack-mode <mode>',
      'where a FLUSH must be durable before it is acknowledged: async (agent log), process-server (its cache), sync (master target)',
      'async',
    )
    .option(
      '--ack-timeout <seconds>',
      'how long a FLUSH waits for the remote before degrading to async (and a blocked writer for log room)',
      '10',
    )
    .option(
      '--on-congestion <policy>',
      'when the log is full: pull-ahead (into the dirty bitmap) or block (wait for room up to --ack-timeout)',
      'pull-ahead',
    )
    .option('--app-consistent-minutes <n>', 'minutes between app-consistent points (0 = off, max 720)', '60')
    .option(
      '--freeze-script <cmd>',
      'quiesces the workload for an app-consistent point (run with /bin/sh -c)',
    )
    .option('--thaw-script <cmd>', 'undoes the freeze; always run after a freeze attempt')
    .option('--hook-timeout <seconds>', 'how long each freeze or thaw script may run', '60')
    .option(
      '--reset-log',
      'first discard the change log and dirty bitmaps and mark every disk for a full hash-compared copy (after a failback rewrote the disks: see rebound agent reset)',
    )
    // Loaded only for serve: the NBD server, shipper and metrics cost half a second of start-up
    // that `agent register`, `log` or `bookmark` do not need.
    .action(async (o) => (await import('./agent-serve.js')).runAgentServe(o));

  addRegisterCommand(agent, 'agent');

  agent
    .command('log')
    .description('summarise the change log: disks, sequences, bytes, markers, resync-required regions')
    .requiredOption('--data-dir <dir>', 'the agent data dir')
    .option('--json', 'machine-readable output')
    .action(async (o) => {
      const s = await summarizeDataDir(o.dataDir);
      // A running agent adds its live state: shipper, backlog, health.
      const live = await callAgent(o.dataDir, 'GET', '/status').then(
        (r) => (r.status === 200 ? r.body : undefined),
        () => undefined,
      );
      if (o.json) return console.log(JSON.stringify(live ? { ...s, live } : s, null, 2));
      console.log(formatSummary(s));
      if (live) {
        console.log(formatLiveStatus(live as Partial<AgentLiveStatus>));
        const policy = formatPolicyStatus(live as PolicyStatus);
        if (policy) console.log(policy);
      }
    });

  agent
    .command('bookmark')
    .description('insert a named bookmark into a running agent’s change log')
    .requiredOption('--data-dir <dir>', 'the agent data dir')
    .requiredOption('--tag <tag>', 'bookmark name')
    .option('--json', 'machine-readable output')
    .action(async (o) => {
      const r = await callAgent(o.dataDir, 'POST', `/bookmarks?tag=${encodeURIComponent(o.tag)}`);
      if (r.status !== 201) throw new Error(r.body.error ?? `agent answered ${r.status}`);
      console.log(o.json ? JSON.stringify(r.body) : `bookmark '${r.body.tag}' at seq ${r.body.seq}`);
    });

  agent
    .command('resync')
    .description('mark disks of a running agent resync required: the replica is compared block by block')
    .requiredOption('--data-dir <dir>', 'the agent data dir')
    .option('--disk <name>', 'only this disk (default: every captured disk)')
    .option('--json', 'machine-readable output')
    .action(async (o) => {
      const q = o.disk ? `?disk=${encodeURIComponent(o.disk)}` : '';
      const r = await callAgent(o.dataDir, 'POST', `/resync${q}`);
      if (r.status !== 202) throw new Error(r.body.error ?? `agent answered ${r.status}`);
      console.log(
        o.json ? JSON.stringify(r.body) : `resync requested for ${(r.body.disks as string[]).join(', ')}`,
      );
    });

  agent
    .command('reset')
    .description(
      'after a failback: discard the change log and dirty bitmaps (the disks were rewritten by the master target) and mark every disk for a full hash-compared copy; the agent must be stopped',
    )
    .requiredOption('--data-dir <dir>', 'the agent data dir')
    .option('--json', 'machine-readable output')
    .action(async (o) => {
      const r = await resetAgentDataDir(o.dataDir);
      console.log(
        o.json
          ? JSON.stringify(r)
          : `reset: ${r.discardedRecords} log records discarded; sequence numbers go on after ${r.trimmedThrough}; ` +
              `${r.disks.join(', ')} will be compared block by block with the replica when replication starts`,
      );
    });

  const barrier = agent
    .command('barrier')
    .description('a replication group’s write barrier: hold new writes, take bookmarks, release');
  barrier
    .command('hold')
    .description('hold new writes of a running agent (they wait, unlogged) until release or the timeout')
    .requiredOption('--data-dir <dir>', 'the agent data dir')
    .option('--timeout <seconds>', 'the hold ends by itself after this long (at most 60)', '10')
    .option('--json', 'machine-readable output')
    .action(async (o) => {
      const ms = Math.round(parseSeconds(o.timeout, '--timeout') * 1000);
      const r = await callAgent(o.dataDir, 'POST', `/barrier/hold?timeoutMs=${ms}`);
      if (r.status !== 200) throw new Error(r.body.error ?? `agent answered ${r.status}`);
      console.log(
        o.json
          ? JSON.stringify(r.body)
          : `writes held at seq ${r.body.lastSeq} until ${r.body.releaseAt} (or rebound agent barrier release)`,
      );
    });
  barrier
    .command('release')
    .description('let the held writes of a running agent go')
    .requiredOption('--data-dir <dir>', 'the agent data dir')
    .option('--json', 'machine-readable output')
    .action(async (o) => {
      const r = await callAgent(o.dataDir, 'POST', '/barrier/release');
      if (r.status !== 200) throw new Error(r.body.error ?? `agent answered ${r.status}`);
      console.log(
        o.json ? JSON.stringify(r.body) : r.body.released ? 'writes released' : 'no writes were held',
      );
    });

  agent
    .command('app-point')
    .description('take an app-consistent point now: freeze hook, flush, bookmark, thaw hook')
    .requiredOption('--data-dir <dir>', 'the agent data dir')
    .option('--tag <tag>', 'the bookmark’s tag (default app:<ISO time>)')
    .option('--json', 'machine-readable output')
    .action(async (o) => {
      const q = o.tag === undefined ? '' : `?tag=${encodeURIComponent(o.tag)}`;
      const r = await callAgent(o.dataDir, 'POST', `/app-points${q}`);
      if (r.status !== 201) throw new Error(r.body.error ?? `agent answered ${r.status}`);
      const b = r.body;
      console.log(
        o.json
          ? JSON.stringify(b)
          : `app-consistent point '${b.tag}' at seq ${b.seq} (frozen ${b.frozenMs} ms)` +
              (b.thawError ? `; warning: ${b.thawError}` : ''),
      );
    });

  const log = program.command('log').description('tools over an agent’s change log');
  log
    .command('apply')
    .description('apply a disk’s logged changes to an image of that disk as it was at the first sequence')
    .requiredOption('--data-dir <dir>', 'the agent data dir')
    .requiredOption('--disk <name>', 'disk name')
    .requiredOption('--base <file>', 'image of the disk before --from (changed in place unless --out)')
    .requiredOption('--to <seq>', 'last sequence number to apply')
    .option('--from <seq>', 'first sequence number to apply', '1')
    .option('--out <file>', 'write the result here (a sparse copy of --base), leaving --base untouched')
    .option('--json', 'machine-readable output')
    .action(async (o) => {
      const state = await loadState(o.dataDir);
      if (!state) throw new Error(`${o.dataDir} is not an agent data dir (no agent.json)`);
      const disk = state.disks.find((d) => d.name === o.disk);
      if (!disk)
        throw new Error(
          `no disk named '${o.disk}' in ${o.dataDir} (disks: ${state.disks.map((d) => d.name).join(', ')})`,
        );
      const to = parseSeq(o.to, '--to');
      const from = parseSeq(o.from, '--from');
      const changeLog = await ChangeLog.open(join(o.dataDir, 'log'), {
        maxBytes: 0,
        segmentBytes: 0,
        readOnly: true,
      });
      if (from <= changeLog.trimmedThrough) {
        throw new Error(
          `--from ${from} is already trimmed from the log (trimmed through ${changeLog.trimmedThrough})`,
        );
      }
      let target = o.base;
      if (o.out) {
        await sparseCopy(o.base, o.out);
        target = o.out;
      }
      const r = await applyLog(changeLog, disk.id, target, { from, to });
      if (o.json) console.log(JSON.stringify({ image: target, ...r }));
      else
        console.log(
          `applied ${r.records} records of disk '${disk.name}'` +
            (r.records ? ` (seq ${r.firstSeq}..${r.lastSeq})` : '') +
            ` to ${target}`,
        );
    });
}
