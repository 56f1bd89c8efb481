// The agent's policy options: acknowledgement mode, congestion, app-consistent frequency.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  parseAckMode,
  parseAppConsistentMinutes,
  parseCongestionPolicy,
} from '../../src/cli/parse-policy.js';

describe('policy options', () => {
  test('--ack-mode', () => {
    assert.equal(parseAckMode('async'), 'async');
    assert.equal(parseAckMode('process-server'), 'process-server');
    assert.equal(parseAckMode('sync'), 'sync');
    assert.throws(() => parseAckMode('SYNC'), {
      message: "--ack-mode 'SYNC' is not one of async, process-server, sync",
    });
    assert.throws(() => parseAckMode(''), /is not one of/);
  });

  test('--on-congestion', () => {
    assert.equal(parseCongestionPolicy('block'), 'block');
    assert.equal(parseCongestionPolicy('pull-ahead'), 'pull-ahead');
    assert.throws(() => parseCongestionPolicy('drop'), {
      message: "--on-congestion 'drop' is not one of pull-ahead, block",
    });
  });

  test('--app-consistent-minutes', () => {
    assert.equal(parseAppConsistentMinutes('0'), 0);
    assert.equal(parseAppConsistentMinutes('60'), 60);
    assert.equal(parseAppConsistentMinutes('720'), 720);
    assert.equal(parseAppConsistentMinutes('0.5'), 0.5);
    for (const bad of ['721', '-1', 'x', '', '1e3', ' 5']) {
      assert.throws(() => parseAppConsistentMinutes(bad), {
        message: `--app-consistent-minutes '${bad}' is not a number of minutes from 0 (off) to 720`,
      });
    }
  });
});
