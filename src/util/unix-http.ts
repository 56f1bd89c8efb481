// A JSON request to a local control API: HTTP over a Unix socket.
import { request } from 'node:http';

/** What a control API answers: an error, or the endpoint's fields. */
export interface ControlReply {
  error?: string;
  [field: string]: unknown;
}

/** `who` names the service in errors ("agent", "master target"). */
export function callUnixJson(
  socketPath: string,
  method: string,
  path: string,
  who: string,
): Promise<{ status: number; body: ControlReply }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path }, (res) => {
      let text = '';
      res.on('data', (c) => {
        text += c;
      });
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text || '{}') });
        } catch {
          reject(new Error(`the ${who} at ${socketPath} answered ${res.statusCode} with invalid JSON`));
        }
      });
    });
    req.on('error', (e) => reject(new Error(`no running ${who} answers at ${socketPath}: ${e.message}`)));
    req.end();
  });
}
