// Buffers with free bytes just before them, so that a header can be written in front of
// the data instead of copying the data after a new header. Two kinds exist: a frame
// payload made with room for the frame header (wire/frame.ts), and a change-log record's
// payload read into a buffer of its own, whose 48-byte record header (already checked,
// never read again) is exactly the room a change frame's two headers need.
//
// Only views whose whole ArrayBuffer is theirs (data and room) may be marked: such a view
// may also be moved to another thread (wire/compression-pool.ts) without a copy.

const room = new WeakMap<Uint8Array, number>();

/** Marks the `bytes` before `view` as free to overwrite (see the rule above). */
export function markHeadroom(view: Uint8Array, bytes: number): void {
  if (bytes > 0 && bytes <= view.byteOffset) room.set(view, bytes);
}

/** Free bytes before `view` (0 when unmarked, or already taken). */
export function headroom(view: Uint8Array): number {
  return room.get(view) ?? 0;
}

/**
 * The view widened by `bytes` in front, when that much room is free; what room is left
 * moves to the widened view. Undefined (and nothing taken) when there is not enough.
 */
export function takeHeadroom(view: Uint8Array, bytes: number): Buffer | undefined {
  const free = room.get(view) ?? 0;
  if (free < bytes) return undefined;
  room.delete(view);
  const wide = Buffer.from(view.buffer, view.byteOffset - bytes, view.byteLength + bytes);
  markHeadroom(wide, free - bytes);
  return wide;
}

/** `to` is `from` again (a new view of the same memory, e.g. back from a worker): it keeps the room. */
export function moveHeadroom(from: Uint8Array, to: Uint8Array): void {
  const free = room.get(from);
  if (free === undefined) return;
  room.delete(from);
  markHeadroom(to, free);
}
