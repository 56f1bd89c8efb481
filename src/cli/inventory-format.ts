// Small formatting shared by the inventory commands (components, storage, policies).
import type { Command } from 'commander';
import type { ApiClient } from '../control-plane/client/api-client.js';
import { adminClient } from '../control-plane/client/connection.js';

export const yesNo = (b: boolean): string => (b ? 'yes' : 'no');

/** "12 s ago", "5 min ago", "3 h ago", "2 d ago". */
export function formatAge(seconds: number): string {
  if (seconds < 120) return `${seconds} s ago`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 172_800) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86_400)} d ago`;
}

export function formatHeartbeat(at: string | null, ageSeconds: number | null): string {
  return at === null || ageSeconds === null ? 'never' : `${at} (${formatAge(ageSeconds)})`;
}

/** The admin client for a command, with --cs-config taken from it or any parent. */
export function clientFor(cmd: Command): Promise<ApiClient> {
  return adminClient(cmd.optsWithGlobals().csConfig as string | undefined);
}

/** Whether --json was given on the command or a parent. */
export function wantsJson(cmd: Command): boolean {
  return Boolean(cmd.optsWithGlobals().json);
}

export const CS_CONFIG_HELP = 'configuration server connection (default /var/lib/rebound/server/cli.json)';
