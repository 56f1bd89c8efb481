// QMP and guest-agent messages are JSON objects split by newlines: pieces, several at once,
// carriage returns and the guest agent's 0xFF sync bytes, junk lines.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JsonLineSplitter } from '../../src/sites/qemu/json-stream.js';
import { replyValue } from '../../src/sites/qemu/qmp.js';

test('a message in pieces comes out once complete; several in one chunk come out in order', () => {
  const s = new JsonLineSplitter();
  assert.deepEqual(s.push('{"QMP": {"versi'), []);
  assert.deepEqual(s.push('on": 1}}\r\n{"return": {}, "id": "a"}\r\n{"event": "POWERDOWN"'), [
    { QMP: { version: 1 } },
    { return: {}, id: 'a' },
  ]);
  assert.deepEqual(s.push('}\n'), [{ event: 'POWERDOWN' }]);
});

test('junk lines and sync bytes are skipped', () => {
  const s = new JsonLineSplitter();
  assert.deepEqual(s.push(Buffer.from([0xff, 0x0a])), []);
  assert.deepEqual(s.push('garbage\n\n{"return": 42}\n'), [{ return: 42 }]);
});

test("an error reply carries QEMU's description and class", () => {
  assert.equal(replyValue('query-status', { return: { running: true } } as never)?.constructor, Object);
  assert.throws(
    () => replyValue('guest-fsfreeze-freeze', { error: { class: 'GenericError', desc: 'freeze failed' } }),
    new Error('guest-fsfreeze-freeze: freeze failed (GenericError)'),
  );
});
