import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { watchExitCode } from '../../src/cli/job-format.js';
import {
  clampProgress,
  completedJobState,
  interruptedReason,
  isFinalJobState,
  jobProgress,
} from '../../src/control-plane/jobs/job-model.js';

describe('job model', () => {
  it('weights each step’s progress by its share of the work', () => {
    const steps = [
      { state: 'Succeeded', progress_pct: 100, weight: 1 },
      { state: 'Running', progress_pct: 50, weight: 8 },
      { state: 'Pending', progress_pct: 0, weight: 1 },
    ];
    assert.equal(jobProgress(steps), 50);
  });

  it('counts succeeded, warned and skipped steps in full, failed and cancelled ones as far as they got', () => {
    assert.equal(
      jobProgress([
        { state: 'Warning', progress_pct: 0, weight: 1 },
        { state: 'Skipped', progress_pct: 0, weight: 1 },
        { state: 'Failed', progress_pct: 40, weight: 1 },
        { state: 'Cancelled', progress_pct: 20, weight: 1 },
      ]),
      65,
    );
    assert.equal(jobProgress([]), 0);
  });

  it('a completed job is Warning when any step warned', () => {
    assert.equal(completedJobState([{ state: 'Succeeded' }, { state: 'Skipped' }]), 'Succeeded');
    assert.equal(completedJobState([{ state: 'Succeeded' }, { state: 'Warning' }]), 'Warning');
  });

  it('names the interrupted step', () => {
    assert.equal(interruptedReason('copy'), "the configuration server stopped while step 'copy' was running");
  });

  it('final states', () => {
    assert.deepEqual(
      ['Queued', 'Running', 'Succeeded', 'Warning', 'Failed', 'Cancelled'].map(isFinalJobState),
      [false, false, true, true, true, true],
    );
  });

  it('clamps progress to 0-100 with one decimal', () => {
    assert.deepEqual(
      [clampProgress(-1), clampProgress(12.345), clampProgress(101), clampProgress(Number.NaN)],
      [0, 12.3, 100, 0],
    );
  });

  it('watch exit codes: 0 when all succeeded (or warned), 9 when one failed, 10 when one was cancelled', () => {
    assert.equal(watchExitCode([]), 0);
    assert.equal(watchExitCode(['Succeeded', 'Warning']), 0);
    assert.equal(watchExitCode(['Succeeded', 'Cancelled']), 10);
    assert.equal(watchExitCode(['Cancelled', 'Failed']), 9);
  });
});
