// `rebound jobs ...`: list, show, watch, cancel jobs, and confirm their manual steps.
import type { Command } from 'commander';
import { adminClient } from '../control-plane/client/connection.js';
import { formatJob, JOB_COLUMNS, type JobJson, watchExitCode } from './job-format.js';
import { watchActiveJobs, watchJob } from './job-watch.js';
import { printJson, printRows } from './output.js';

const CS_CONFIG_HELP = 'configuration server connection (default /var/lib/rebound/server/cli.json)';

export function registerJobCommands(program: Command): void {
  const jobs = program
    .command('jobs')
    .description('jobs and their steps (list with no subcommand: active jobs and those of the last 24 h)')
    .option('--json', 'print JSON')
    .option('--all', 'every job, not only the active ones and those of the last 24 h')
    .option('--state <states>', 'only jobs in these states (comma-separated)')
    .option('--kind <kind>', 'only jobs of this kind')
    .option('--watch', 'follow the active jobs until they end (exit code: 0 if they all succeeded)')
    .option('--cs-config <file>', CS_CONFIG_HELP)
    .action(async (o) => {
      const client = await adminClient(o.csConfig);
      if (o.watch) {
        process.exitCode = watchExitCode(await watchActiveJobs(client));
        return;
      }
      const q = new URLSearchParams();
      if (o.all) q.set('all', 'true');
      if (o.state) q.set('state', o.state);
      if (o.kind) q.set('kind', o.kind);
      const rows = await client.get<JobJson[]>(`/api/v1/jobs${q.size ? `?${q}` : ''}`);
      printRows(
        rows,
        JOB_COLUMNS,
        Boolean(o.json),
        o.all ? 'no jobs' : 'no jobs in the last 24 h (--all for every job)',
      );
    });

  const parentOpts = (cmd: Command) => cmd.parent?.opts() ?? {};
  const enc = encodeURIComponent;

  jobs
    .command('show <id>')
    .description('a job and its steps (the id or its first 8 characters)')
    .option('--json', 'print JSON')
    .action(async (id: string, o, cmd: Command) => {
      const parent = parentOpts(cmd);
      const job = await (await adminClient(parent.csConfig)).get<JobJson>(`/api/v1/jobs/${enc(id)}`);
      if (o.json || parent.json) printJson(job);
      else console.log(formatJob(job));
    });

  jobs
    .command('watch <id>')
    .description('follow a job until it ends (exit code 0 Succeeded or Warning, 9 Failed, 10 Cancelled)')
    .action(async (id: string, _o, cmd: Command) => {
      const client = await adminClient(parentOpts(cmd).csConfig);
      process.exitCode = watchExitCode([await watchJob(client, id)]);
    });

  jobs
    .command('cancel <id>')
    .description('cancel a job: a queued one at once, a running one before its next step')
    .option('--json', 'print JSON')
    .action(async (id: string, o, cmd: Command) => {
      const parent = parentOpts(cmd);
      const job = await (await adminClient(parent.csConfig)).post<JobJson>(`/api/v1/jobs/${enc(id)}/cancel`);
      if (o.json || parent.json) printJson(job);
      else if (job.state === 'Cancelled') console.log(`job ${job.id} cancelled`);
      else console.log(`job ${job.id}: cancellation requested (it ends before its next step)`);
    });

  jobs
    .command('confirm <job> <step>')
    .description('confirm a manual step the job waits for (the step’s name or number)')
    .option('--json', 'print JSON')
    .action(async (id: string, step: string, o, cmd: Command) => {
      const parent = parentOpts(cmd);
      const job = await (await adminClient(parent.csConfig)).post<JobJson>(
        `/api/v1/jobs/${enc(id)}/steps/${enc(step)}/confirm`,
      );
      if (o.json || parent.json) printJson(job);
      else console.log(`job ${job.id}: step '${step}' confirmed`);
    });
}
