// The configuration server's address as an operator types it (-i/--cs): HOST:PORT, [IPv6]:PORT,
// HOST alone (port 9443), or https://HOST[:PORT]. Pure.
import { isIP } from 'node:net';

export const DEFAULT_SERVER_PORT = 9443;

export interface ServerAddress {
  host: string;
  port: number;
  /** HOST:PORT ([v6]:PORT) as shown in messages. */
  display: string;
  url: string;
}

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export function parseServerAddress(text: string): ServerAddress {
  const bad = (why: string) =>
    new Error(
      `configuration server address '${text}' is not valid: ${why}; use HOST:PORT, e.g. 10.0.0.5:9443`,
    );
  let rest = text.trim();
  if (/^https:\/\//i.test(rest)) rest = rest.slice('https://'.length).replace(/\/$/, '');
  else if (/^[a-z]+:\/\//i.test(rest)) throw bad('only https:// is spoken');
  if (rest === '') throw bad('it is empty');
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(.*))?$/.exec(rest);
  if (v6) {
    host = v6[1];
    portText = v6[2];
    if (isIP(host) !== 6) throw bad(`'${host}' is not an IPv6 address`);
  } else {
    const parts = rest.split(':');
    if (parts.length > 2) throw bad('too many colons (an IPv6 address goes in brackets: [ADDRESS]:PORT)');
    host = parts[0];
    portText = parts[1];
    if (host === '') throw bad('the host is missing');
    if (isIP(host) === 0 && !HOSTNAME.test(host)) throw bad(`'${host}' is not a host name or IP address`);
  }
  let port = DEFAULT_SERVER_PORT;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      throw bad(`port '${portText}' is not a number from 1 to 65535`);
    }
    port = Number(portText);
  }
  const shown = isIP(host) === 6 ? `[${host}]` : host;
  return { host, port, display: `${shown}:${port}`, url: `https://${shown}:${port}` };
}
