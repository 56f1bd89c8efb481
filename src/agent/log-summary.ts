// Summary of an agent's data dir read from its files (works whether or not the
// agent runs: the log is opened read-only and a torn tail is only skipped).
import { join } from 'node:path';
import { ChangeLog } from '../changelog/change-log.js';
import { DirtyBitmap, type DirtyRegion } from '../changelog/dirty-bitmap.js';
import { parseMarkerPayload, RecordType } from '../changelog/record.js';
import { formatSize } from '../util/size.js';
import { loadState } from './agent-state.js';

export interface DiskSummary {
  name: string;
  id: number;
  path: string;
  size: number;
  writes: number;
  writeBytes: number;
  zeroes: number;
  trims: number;
  resyncRequired: DirtyRegion[];
}

export interface LogSummary {
  machineId: string;
  clean: boolean;
  disks: DiskSummary[];
  log: {
    firstSeq?: number;
    lastSeq?: number;
    records: number;
    bytes: number;
    segments: number;
    trimmedThrough: number;
    flushMarkers: number;
    bookmarks: { seq: number; tag: string; time: string }[];
    firstTime?: string;
    lastTime?: string;
  };
}

export async function summarizeDataDir(dataDir: string): Promise<LogSummary> {
  const state = await loadState(dataDir);
  if (!state) throw new Error(`${dataDir} is not an agent data dir (no agent.json)`);
  const log = await ChangeLog.open(join(dataDir, 'log'), { maxBytes: 0, segmentBytes: 0, readOnly: true });
  const disks = new Map<number, DiskSummary>();
  for (const d of state.disks) {
    const regions = await DirtyBitmap.readRegions(join(dataDir, 'dirty', `disk-${d.id}.bitmap`), d.size);
    disks.set(d.id, { ...d, writes: 0, writeBytes: 0, zeroes: 0, trims: 0, resyncRequired: regions });
  }
  const s: LogSummary['log'] = {
    records: 0,
    bytes: log.bytes,
    segments: log.segmentCount,
    trimmedThrough: log.trimmedThrough,
    flushMarkers: 0,
    bookmarks: [],
  };
  for await (const r of log.records()) {
    s.records++;
    s.firstSeq ??= r.seq;
    s.lastSeq = r.seq;
    const time = new Date(r.time).toISOString();
    s.firstTime ??= time;
    s.lastTime = time;
    const d = disks.get(r.disk);
    if (r.type === RecordType.Write && d) {
      d.writes++;
      d.writeBytes += r.length;
    } else if (r.type === RecordType.Zero && d) d.zeroes++;
    else if (r.type === RecordType.Trim && d) d.trims++;
    else if (r.type === RecordType.Flush) s.flushMarkers++;
    else if (r.type === RecordType.Bookmark) {
      s.bookmarks.push({ seq: r.seq, tag: parseMarkerPayload(r.payload).tag, time });
    }
  }
  return { machineId: state.machineId, clean: state.clean, disks: [...disks.values()], log: s };
}

export function formatSummary(s: LogSummary): string {
  const l = s.log;
  const lines = [`machine ${s.machineId} (${s.clean ? 'stopped cleanly' : 'running or stopped uncleanly'})`];
  lines.push('disks:');
  for (const d of s.disks) {
    const dirty = d.resyncRequired.reduce((n, r) => n + r.length, 0);
    lines.push(
      `  ${d.name} (id ${d.id}) ${formatSize(d.size)} ${d.path}: ${d.writes} writes (${formatSize(d.writeBytes)}), ` +
        `${d.zeroes} write-zeroes, ${d.trims} trims; resync required: ` +
        (dirty ? `${d.resyncRequired.length} regions, ${formatSize(dirty)}` : 'none'),
    );
    for (const r of d.resyncRequired.slice(0, 8)) lines.push(`    [${r.offset}, +${r.length})`);
    if (d.resyncRequired.length > 8) lines.push(`    ... ${d.resyncRequired.length - 8} more`);
  }
  const span = l.records ? `seq ${l.firstSeq}..${l.lastSeq}` : 'empty';
  lines.push(
    `log: ${span}, ${l.records} records, ${formatSize(l.bytes)} in ${l.segments} segments, trimmed through ${l.trimmedThrough}`,
  );
  lines.push(`markers: ${l.flushMarkers} flush (crash-consistent), ${l.bookmarks.length} bookmarks`);
  for (const b of l.bookmarks.slice(-10)) lines.push(`  bookmark seq ${b.seq} '${b.tag}' at ${b.time}`);
  if (l.firstTime) lines.push(`changes from ${l.firstTime} to ${l.lastTime}`);
  return lines.join('\n');
}
