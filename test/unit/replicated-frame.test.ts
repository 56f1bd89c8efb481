// Frame type 10 (`replicated`): the agent's empty request and the process server's relayed
// master-target seq; round trips through the frame decoder and every named error.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodeFrame, FrameDecoder, FrameError, FrameType, frameTypeName } from '../../src/wire/frame.js';
import {
  decodeReplicated,
  decodeReplicatedRequest,
  encodeReplicated,
  encodeReplicatedRequest,
} from '../../src/wire/replicated-frame.js';

describe('replicated frame (type 10)', () => {
  test('the relayed seq round-trips through a frame', () => {
    for (const seq of [0, 1, 4242, 2 ** 40 + 7, Number.MAX_SAFE_INTEGER]) {
      const [f] = new FrameDecoder().push(encodeFrame(FrameType.Replicated, encodeReplicated({ seq })));
      assert.equal(f!.type, 10);
      assert.equal(frameTypeName(f!.type), 'replicated');
      assert.deepEqual(decodeReplicated(f!.payload), { seq });
    }
  });

  test('the seq is big-endian u64', () => {
    assert.deepEqual([...encodeReplicated({ seq: 0x0102 })], [0, 0, 0, 0, 0, 0, 1, 2]);
  });

  test('the request is empty and only empty', () => {
    const [f] = new FrameDecoder().push(encodeFrame(FrameType.Replicated, encodeReplicatedRequest()));
    assert.equal(f!.payload.length, 0);
    assert.doesNotThrow(() => decodeReplicatedRequest(f!.payload));
    assert.throws(() => decodeReplicatedRequest(Buffer.alloc(8)), {
      name: 'FrameError',
      message: "replicated request payload is 8 bytes: an agent's request must be empty",
    });
  });

  test('wrong lengths and out-of-range values are named errors', () => {
    assert.throws(() => decodeReplicated(Buffer.alloc(0)), {
      message: 'replicated payload is 0 bytes: it must be its 8-byte seq',
    });
    assert.throws(() => decodeReplicated(Buffer.alloc(7)), {
      message: 'replicated payload is 7 bytes: it must be its 8-byte seq',
    });
    assert.throws(() => decodeReplicated(Buffer.alloc(9)), {
      message: 'replicated payload is 9 bytes: it must be its 8-byte seq',
    });
    assert.throws(() => decodeReplicated(Buffer.alloc(8, 0xff)), {
      message: 'replicated seq 18446744073709551615 exceeds 2^53 - 1',
    });
    assert.throws(() => encodeReplicated({ seq: -1 }), FrameError);
    assert.throws(() => encodeReplicated({ seq: 1.5 }), {
      message: 'replicated seq 1.5 is not an integer in 0..2^53-1',
    });
  });
});
