// Reads into buffers we choose. Node's `onread` option (read into a caller's buffer,
// no allocation per read) exists only for sockets Node creates from options, not for
// those a net.Server accepts; so an accepted socket, still paused (pauseOnConnect),
// hands its handle to a new Socket made with `onread`. This uses Socket's `_handle`
// property and `handle` option, which Node does not document; where they are not
// there, the caller keeps the accepted socket and its 'data' events.
import { Socket } from 'node:net';

interface HandleHolder {
  _handle?: { reading?: boolean } | null;
}

export function adoptWithReadBuffer(
  accepted: Socket,
  buffer: () => Buffer,
  callback: (nread: number, buf: Buffer) => void,
): Socket | undefined {
  const holder = accepted as unknown as HandleHolder;
  const handle = holder._handle;
  // Only a socket that has read nothing yet can change hands without losing bytes.
  if (handle?.reading !== false) return undefined;
  holder._handle = null;
  // With no handle, destroy() only ends this wrapper (and the server's count of it).
  accepted.destroy();
  return new Socket({
    handle,
    readable: true,
    writable: true,
    onread: { buffer, callback: (n: number, buf: Uint8Array) => callback(n, buf as Buffer) },
  } as ConstructorParameters<typeof Socket>[0]);
}
