// Resync boundaries travel in the change log as bookmarks with reserved tags, so that the
// log, the process server's cache and the wire carry them unchanged. Between a start and
// its end the replica is being copied block by block and no point is consistent; the
// master target hides those points (see Replica.pointProblem). Tags starting with
// "rebound:" are reserved: an operator's bookmark cannot use them.
export const SYSTEM_TAG_PREFIX = 'rebound:';
export const RESYNC_START_TAG = 'rebound:resync-start';
export const RESYNC_END_TAG = 'rebound:resync-end';

export function isSystemTag(tag: string): boolean {
  return tag.startsWith(SYSTEM_TAG_PREFIX);
}
