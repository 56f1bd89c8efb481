// Relays an agent's resync hash session to the master target: the agent's hash requests
// go out on a connection of their own to the master target (never on the machine's
// stream, whose order they must not disturb) and the answers come back unchanged.
import type { Logger } from 'pino';
import {
  decodeBlockHashes,
  decodeHashRequest,
  decodeHello,
  encodeHello,
  type Frame,
  FrameType,
  WireErrorCode,
} from '../wire/frame.js';
import type { FrameConnection } from '../wire/tls-endpoint.js';

export interface HashRelayOptions {
  agent: FrameConnection;
  first: Frame;
  frames: AsyncIterator<Frame>;
  machineId: string;
  /** This process server's name, for its hello. */
  name: string;
  /** Opens a connection to the master target, or undefined when there is none. */
  connect: (() => Promise<FrameConnection>) | undefined;
  logger: Logger;
}

export async function relayHashSession(o: HashRelayOptions): Promise<void> {
  const { agent, logger } = o;
  if (!o.connect) {
    agent.close(
      'this process server forwards to no master target: no hashes to compare',
      WireErrorCode.Internal,
    );
    return;
  }
  let mt: FrameConnection;
  try {
    mt = await o.connect();
  } catch (e) {
    agent.close(`master target unreachable for hashes: ${(e as Error).message}`, WireErrorCode.Internal);
    return;
  }
  try {
    await mt.send(
      FrameType.Hello,
      encodeHello({ resumeFrom: 0, role: 'process-server', name: o.name, machineId: o.machineId }),
    );
    const mtFrames = mt[Symbol.asyncIterator]();
    const hello = await mtFrames.next();
    if (hello.done || hello.value.type !== FrameType.Hello) {
      throw new Error(`master target did not answer hello: ${mt.closeReason ?? 'closed'}`);
    }
    decodeHello(hello.value.payload);
    const up = (async () => {
      let f: Frame | undefined = o.first;
      while (f) {
        if (f.type !== FrameType.HashRequest)
          throw new Error(`unexpected frame type ${f.type} in a hash session`);
        decodeHashRequest(f.payload); // a malformed request stops here, not at the master target
        await mt.send(f.type, f.payload);
        const n = await o.frames.next();
        f = n.done ? undefined : n.value;
      }
      mt.close();
    })();
    const down = (async () => {
      for (;;) {
        const n = await mtFrames.next();
        if (n.done) break;
        if (n.value.type !== FrameType.BlockHashes) {
          throw new Error(`unexpected frame type ${n.value.type} from the master target in a hash session`);
        }
        decodeBlockHashes(n.value.payload);
        await agent.send(n.value.type, n.value.payload);
      }
      if (mt.closeReason) throw new Error(`master target: ${mt.closeReason}`);
      agent.close();
    })();
    await Promise.race([up, down]);
    await Promise.all([up, down]);
  } catch (e) {
    logger.warn({ machineId: o.machineId, err: (e as Error).message }, 'process server: hash session ended');
    agent.close((e as Error).message, WireErrorCode.Protocol);
  } finally {
    mt.close();
  }
}
