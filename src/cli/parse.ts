// Parsing of command-line values, with errors that name the bad value.
import type { DiskSpec } from '../agent/agent.js';

const DISK_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function parseDiskSpec(text: string, readOnly = false): DiskSpec {
  const eq = text.indexOf('=');
  if (eq <= 0 || eq === text.length - 1) throw new Error(`--disk '${text}' is not NAME=PATH`);
  const name = text.slice(0, eq);
  if (!DISK_NAME.test(name)) {
    throw new Error(`disk name '${name}' is invalid: use 1-64 letters, digits, '.', '_' or '-'`);
  }
  return { name, path: text.slice(eq + 1), readOnly };
}

export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  if (!m) throw new Error(`'${text}' is not HOST:PORT`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`port ${port} is out of range (0-65535)`);
  return { host: m[1] ?? m[2], port };
}

export function parseSeq(text: string, what: string): number {
  if (!/^\d+$/.test(text)) throw new Error(`${what} '${text}' is not a sequence number`);
  return Number(text);
}

export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** A positive number of seconds (fractions allowed), at most a day. */
export function parseSeconds(text: string, flag: string): number {
  const n = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || n <= 0 || n > 86400) {
    throw new Error(`${flag} '${text}' is not a number of seconds between 0 and 86400`);
  }
  return n;
}
