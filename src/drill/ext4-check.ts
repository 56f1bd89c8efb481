// Checks a disk image the way a recovered machine would see it: replay the ext4
// journal (as mount does), then a full read-only fsck that must find nothing.
import { run } from '../util/exec.js';

export interface FsckResult {
  clean: boolean;
  output: string;
}

export async function replayJournalAndCheck(image: string): Promise<FsckResult> {
  // Exit codes 0/1 mean "nothing to do" / "journal replayed".
  await run('e2fsck', ['-E', 'journal_only', '-y', image], [0, 1]);
  const r = await run('e2fsck', ['-fn', image], [0, 1, 2, 4, 8]);
  return { clean: r.code === 0, output: (r.stdout + r.stderr).trim() };
}
