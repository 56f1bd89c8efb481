// When lz4 pays, per stream: payloads under a minimum are never tried (the 4-byte length
// and the receiver's work buy nothing); otherwise a running, byte-weighted ratio of what
// recent tries gave decides. While the stream compresses poorly (random, encrypted or
// already-compressed data) only one eligible payload in `probeEvery` is tried, so that a
// change in the data is noticed at a sixteenth of the cost. Pure: no I/O, no clock.

export type CompressMode = 'auto' | 'off';
export const COMPRESS_MODES: readonly CompressMode[] = ['auto', 'off'];

export function parseCompressMode(text: string): CompressMode {
  if ((COMPRESS_MODES as readonly string[]).includes(text)) return text as CompressMode;
  throw new Error(`--compress '${text}' is not one of ${COMPRESS_MODES.join(', ')}`);
}

export interface CompressionPolicyOptions {
  mode: CompressMode;
  /** Payloads shorter than this are sent as they are (default 1 KiB). */
  minBytes?: number;
  /** Compression pays when compressed/original is at most this (default 0.9). */
  payRatio?: number;
  /** While it does not pay, one eligible payload in this many is tried (default 16). */
  probeEvery?: number;
}

/** Why a payload went uncompressed, or that it is to be tried. */
export type CompressDecision = 'try' | 'off' | 'small' | 'poor';

/** Weight of the history in the running ratio at each try: about the last 8 tries count. */
const DECAY = 0.875;

export class CompressionPolicy {
  readonly mode: CompressMode;
  readonly minBytes: number;
  readonly payRatio: number;
  private readonly probeEvery: number;
  private inBytes = 0;
  private outBytes = 0;
  private sincePoorTry = 0;

  constructor(o: CompressionPolicyOptions) {
    this.mode = o.mode;
    this.minBytes = o.minBytes ?? 1024;
    this.payRatio = o.payRatio ?? 0.9;
    this.probeEvery = o.probeEvery ?? 16;
  }

  /** compressed/original over recent tries (1 before any). */
  get ratio(): number {
    return this.inBytes > 0 ? this.outBytes / this.inBytes : 1;
  }

  /** Whether recent tries paid (true before any try: start optimistic). */
  get pays(): boolean {
    return this.inBytes === 0 || this.ratio <= this.payRatio;
  }

  decide(bytes: number): CompressDecision {
    if (this.mode === 'off') return 'off';
    if (bytes < this.minBytes) return 'small';
    if (this.pays) return 'try';
    if (++this.sincePoorTry >= this.probeEvery) {
      this.sincePoorTry = 0;
      return 'try';
    }
    return 'poor';
  }

  /** What a try gave; returns whether this payload is worth sending compressed. */
  record(original: number, compressed: number): boolean {
    this.inBytes = this.inBytes * DECAY + original;
    this.outBytes = this.outBytes * DECAY + compressed;
    return compressed <= original * this.payRatio;
  }
}
