// Reading a backup file: its lines as raw bytes (the checksums are over bytes), each checked
// by a BackupReader; verifyBackup reads it all and says whether it is whole.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import {
  BackupFormatError,
  BackupReader,
  type BackupRecord,
  type BackupSummary,
  type RowValue,
} from './format.js';

/** The lines of a file without their LF; the last one is `terminated: false` if it has none. */
export async function* fileLines(path: string): AsyncGenerator<{ bytes: Buffer; terminated: boolean }> {
  let pending: Buffer[] = [];
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    let start = 0;
    for (let lf = chunk.indexOf(10, start); lf >= 0; lf = chunk.indexOf(10, start)) {
      pending.push(chunk.subarray(start, lf));
      yield { bytes: pending.length === 1 ? pending[0] : Buffer.concat(pending), terminated: true };
      pending = [];
      start = lf + 1;
    }
    if (start < chunk.length) pending.push(chunk.subarray(start));
  }
  if (pending.length > 0) yield { bytes: Buffer.concat(pending), terminated: false };
}

async function checkReadable(path: string, name: string): Promise<void> {
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new BackupFormatError(`backup ${name} is not a file`);
  } catch (e) {
    if (e instanceof BackupFormatError) throw e;
    throw new BackupFormatError(`cannot read backup ${name}: ${(e as Error).message}`);
  }
}

/** Every record of a backup, checked as it is read; throws at the first damage. */
export async function* backupRecords(path: string, name = path): AsyncGenerator<BackupRecord | RowValue[]> {
  await checkReadable(path, name);
  const reader = new BackupReader(name);
  for await (const { bytes, terminated } of fileLines(path)) yield reader.line(bytes, terminated);
  reader.finish();
}

/** Reads a whole backup and returns what it holds, or throws a BackupFormatError naming the damage. */
export async function verifyBackup(path: string, name = path): Promise<BackupSummary> {
  await checkReadable(path, name);
  const reader = new BackupReader(name);
  for await (const { bytes, terminated } of fileLines(path)) reader.line(bytes, terminated);
  return reader.finish();
}
