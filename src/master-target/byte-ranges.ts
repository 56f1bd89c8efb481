// A set of byte ranges [start, end), kept sorted and merged: which bytes of a read are
// already settled by a before-image.
export class ByteRanges {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  /** The parts of [from, to) not in the set, in order. */
  gaps(from: number, to: number): [number, number][] {
    const out: [number, number][] = [];
    let pos = from;
    for (let i = this.firstEndingAfter(from); i < this.starts.length && this.starts[i]! < to; i++) {
      if (this.starts[i]! > pos) out.push([pos, this.starts[i]!]);
      pos = Math.max(pos, this.ends[i]!);
    }
    if (pos < to) out.push([pos, to]);
    return out;
  }

  /** Adds [from, to), merging it with the ranges it touches. */
  add(from: number, to: number): void {
    if (to <= from) return;
    const i = this.firstEndingAfter(from - 1);
    let j = i;
    let start = from;
    let end = to;
    while (j < this.starts.length && this.starts[j]! <= to) {
      start = Math.min(start, this.starts[j]!);
      end = Math.max(end, this.ends[j]!);
      j++;
    }
    this.starts.splice(i, j - i, start);
    this.ends.splice(i, j - i, end);
  }

  /** Index of the first range whose end is above x. */
  private firstEndingAfter(x: number): number {
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ends[mid]! <= x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
