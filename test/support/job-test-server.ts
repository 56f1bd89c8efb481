// `rebound server start` with one more job kind, `test-steps`, whose steps the job's own
// parameters describe: the job engine's tests drive the real runner in a real server process
// (killed with SIGKILL and restarted) through steps whose timing they control.
//   node dist/test/support/job-test-server.js server start ...   (the CLI's arguments)
import { existsSync } from 'node:fs';
import type { StepDefinition } from '../../src/control-plane/jobs/definitions.js';
import { sleep } from '../../src/control-plane/jobs/definitions.js';
import { jobKinds } from '../../src/control-plane/jobs/kinds.js';

export interface TestStep {
  name: string;
  /** ok: succeeds; warn: ends Warning; fail: throws; wait-file: until `file` exists; confirm: manual. */
  action: 'ok' | 'warn' | 'fail' | 'wait-file' | 'confirm';
  resumable?: boolean;
  file?: string;
}

export interface TestParams {
  steps: TestStep[];
}

jobKinds.register<TestParams>({
  kind: 'test-steps',
  steps: (p) =>
    p.steps.map((t): StepDefinition<TestParams> => {
      if (t.action === 'confirm') return { name: t.name, confirmation: () => `confirm '${t.name}' to go on` };
      return {
        name: t.name,
        resumable: t.resumable ?? false,
        async run(s) {
          if (t.action === 'warn') return { warning: `step '${t.name}' warns` };
          if (t.action === 'fail') throw new Error(`step '${t.name}' fails`);
          if (t.action === 'wait-file') {
            await s.progress(10, `waiting for ${t.file}${s.resumed ? ' (resumed)' : ''}`);
            while (!existsSync(t.file!)) await sleep(100, s.signal);
          }
          await s.progress(50);
          return undefined;
        },
      };
    }),
});

await import('../../src/cli/main.js');
