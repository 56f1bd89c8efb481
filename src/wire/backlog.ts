// Backlog of a log stream: the bytes of log records the receiver has not acknowledged,
// counted as they are in the log's files (header and payload). Pure arithmetic over the
// log's segment list; the streamer supplies the positions.
import { HEADER_SIZE } from '../changelog/record.js';

export interface SegmentExtent {
  firstSeq: number;
  bytes: number;
}

/** A byte position in a log: a segment (by its first seq) and an offset in it. */
export interface LogPosition {
  segment: number;
  offset: number;
}

/**
 * Bytes of the log after a position: the rest of its segment and every later segment,
 * plus records queued for writing (totalBytes counts them; the segments do not yet).
 * Without a position: from the start of the segment holding `fromSeq` (an upper bound
 * by less than one segment, until the stream has read where it stands).
 */
export function logBytesAfter(
  segments: SegmentExtent[],
  totalBytes: number,
  at: LogPosition | undefined,
  fromSeq: number,
): number {
  const inSegments = segments.reduce((n, s) => n + s.bytes, 0);
  const queued = Math.max(0, totalBytes - inSegments);
  let after = 0;
  if (at) {
    for (const s of segments) {
      if (s.firstSeq > at.segment) after += s.bytes;
      else if (s.firstSeq === at.segment) after += Math.max(0, s.bytes - at.offset);
    }
  } else {
    let start = 0;
    for (let i = 0; i < segments.length; i++) if (segments[i]!.firstSeq <= fromSeq) start = i;
    for (let i = start; i < segments.length; i++) after += segments[i]!.bytes;
  }
  return after + queued;
}

/** A record's size in the log's files. */
export function recordLogBytes(payloadBytes: number): number {
  return HEADER_SIZE + payloadBytes;
}
