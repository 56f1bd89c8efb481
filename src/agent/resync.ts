// Resync and initial replication: copies the regions of the agent's disks marked
// "resync required" (a disk never replicated, changes the log could not take, a lost
// log) to the replica, sending only the 64 KiB blocks whose hash differs from the
// replica's. The copied blocks go into the change log like writes, in order with the
// workload's own writes, so the stream stays the only data path. Protocol and the
// argument for correctness: docs/architecture.md, "Resync".
import type { Logger } from 'pino';
import { hashBlock, planResync, RESYNC_BLOCK } from '../resync/block-hash.js';
import { RESYNC_END_TAG, RESYNC_START_TAG } from '../resync/markers.js';
import type { BlockHash } from '../wire/frame.js';
import type { FrameConnection } from '../wire/tls-endpoint.js';
import type { Agent, CapturedDisk } from './agent.js';
import { HashClient } from './hash-client.js';

/** Hashes are asked for this much of a disk at a time. */
const CHUNK_BYTES = 16 * 1024 * 1024;
/** Blocks are read, compared and logged this much at a time, under the range lock. */
const STEP_BYTES = 1024 * 1024;
/** Hash requests in flight ahead of the chunk being compared. */
const PREFETCH = 4;

export interface ResyncStatus {
  state: 'idle' | 'running' | 'waiting';
  /** Passes completed since the start. */
  passes: number;
  /** Resync-required bytes when the current pass started, and how many are done. */
  totalBytes: number;
  doneBytes: number;
  percent: number;
  /** Since the start: block bytes sent (writes), bytes made zero without data, hash traffic. */
  sentBytes: number;
  zeroedBytes: number;
  hashBytes: number;
  lastError?: string;
}

export interface ResyncOptions {
  agent: Agent;
  /** Opens an authenticated connection to the process server. */
  connect: () => Promise<FrameConnection>;
  name: string;
  logger: Logger;
  /** How often to look for resync-required regions when nothing wakes it (default 2 s). */
  pollMs?: number;
}

export class Resync {
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private client: HashClient | undefined;
  private readonly s: ResyncStatus = {
    state: 'idle',
    passes: 0,
    totalBytes: 0,
    doneBytes: 0,
    percent: 100,
    sentBytes: 0,
    zeroedBytes: 0,
    hashBytes: 0,
  };

  constructor(private readonly opts: ResyncOptions) {}

  start(): void {
    this.loop ??= this.run();
  }

  /** Look for work now (e.g. after disks were marked). */
  kick(): void {
    this.wake?.();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.client?.close();
    this.wake?.();
    await this.loop;
  }

  status(): ResyncStatus {
    return { ...this.s, hashBytes: this.s.hashBytes + (this.client?.bytes ?? 0) };
  }

  private dirtyBytes(): number {
    return this.opts.agent.captured.reduce((n, d) => n + d.bitmap.dirtyBytes, 0);
  }

  private async run(): Promise<void> {
    const { agent, logger } = this.opts;
    const fresh = await agent.startInitialCopy().catch((e: Error) => {
      logger.error({ err: e.message }, 'resync: cannot mark new disks for their initial copy');
      return [];
    });
    if (fresh.length) logger.info({ disks: fresh }, 'resync: initial replication of new disks');
    let backoff = 500;
    while (!this.stopped) {
      if (this.dirtyBytes() === 0) {
        this.s.state = 'idle';
        await this.sleep(this.opts.pollMs ?? 2000);
        continue;
      }
      try {
        await this.pass();
        backoff = 500;
      } catch (e) {
        if (this.stopped) break;
        this.s.state = 'waiting';
        this.s.lastError = (e as Error).message;
        logger.warn({ err: this.s.lastError }, 'resync: pass interrupted, retrying');
        await this.sleep(backoff);
        backoff = Math.min(backoff * 2, 10_000);
      } finally {
        if (this.client) this.s.hashBytes += this.client.bytes;
        this.client?.close();
        this.client = undefined;
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /** One pass over every resync-required region; ends with a consistent point when all are clean. */
  private async pass(): Promise<void> {
    const { agent, logger } = this.opts;
    this.client = await HashClient.open(this.opts.connect, {
      name: this.opts.name,
      machineId: agent.machineId,
    });
    this.s.state = 'running';
    this.s.lastError = undefined;
    this.s.totalBytes = this.dirtyBytes();
    this.s.doneBytes = 0;
    this.s.percent = 0;
    const started = Date.now();
    // From here until the end marker the replica is not consistent (blocks are being copied).
    if ((await agent.systemMarker(RESYNC_START_TAG)) === undefined) {
      throw new Error('the change log is full: the resync waits for room');
    }
    logger.info({ bytes: this.s.totalBytes }, 'resync: started');
    const chunks = this.plan();
    const inFlight: { chunk: Chunk; hashes: Promise<HashAnswer> }[] = [];
    let next = 0;
    while (next < chunks.length || inFlight.length) {
      while (next < chunks.length && inFlight.length < PREFETCH) {
        const chunk = chunks[next++]!;
        const hashes = this.ask(chunk);
        hashes.catch(() => undefined); // awaited below, in order
        inFlight.push({ chunk, hashes });
      }
      const { chunk, hashes } = inFlight.shift()!;
      await this.copyChunk(chunk, await hashes);
      if (this.stopped) throw new Error('agent stopping');
    }
    if (this.dirtyBytes() > 0) {
      // Changes the log could not take arrived meanwhile: another pass (the replica stays
      // inconsistent until the end marker).
      this.s.passes++;
      return;
    }
    await agent.systemMarker(RESYNC_END_TAG);
    await agent.flush({ localOnly: true });
    this.s.passes++;
    this.s.state = 'idle';
    this.s.percent = 100;
    logger.info(
      {
        seconds: (Date.now() - started) / 1000,
        sentBytes: this.s.sentBytes,
        hashBytes: this.status().hashBytes,
      },
      'resync: done; the replica is consistent again',
    );
  }

  /** The resync-required regions cut into chunks (bitmap regions are 64 KiB aligned). */
  private plan(): Chunk[] {
    const out: Chunk[] = [];
    for (const disk of this.opts.agent.captured) {
      for (const r of disk.bitmap.regions()) {
        for (let at = r.offset; at < r.offset + r.length; at += CHUNK_BYTES) {
          out.push({ disk, offset: at, length: Math.min(CHUNK_BYTES, r.offset + r.length - at) });
        }
      }
    }
    return out;
  }

  private async ask(chunk: Chunk): Promise<HashAnswer> {
    const { agent } = this.opts;
    // Before the question: an unlogged change after this keeps the chunk marked.
    const unlogged = agent.unloggedCount;
    const answer = await this.client!.request({
      disk: chunk.disk.record.id,
      offset: chunk.offset,
      blockSize: RESYNC_BLOCK,
      count: Math.ceil(chunk.length / RESYNC_BLOCK),
      afterSeq: agent.lastUnloggedSeq,
    });
    return { unlogged, blocks: answer.blocks };
  }

  /** Compares and logs one chunk, a step at a time under the range lock, then clears it. */
  private async copyChunk(chunk: Chunk, answer: HashAnswer): Promise<void> {
    const { agent } = this.opts;
    const { disk } = chunk;
    const end = chunk.offset + chunk.length;
    // A step's records must fit in the log with room to spare, however small its limit.
    const stepBytes = Math.max(
      RESYNC_BLOCK,
      Math.min(STEP_BYTES, Math.floor(agent.log.maxBytes / 4 / RESYNC_BLOCK) * RESYNC_BLOCK),
    );
    for (let at = chunk.offset; at < end; at += stepBytes) {
      const length = Math.min(stepBytes, end - at);
      const first = (at - chunk.offset) / RESYNC_BLOCK;
      const remote = answer.blocks.slice(first, first + Math.ceil(length / RESYNC_BLOCK));
      await this.waitForLogRoom(length);
      const release = await disk.locks.acquire(at, length);
      try {
        const buf = await readStep(disk, at, length);
        const local: BlockHash[] = [];
        for (let b = 0; b < length; b += RESYNC_BLOCK) {
          const block = buf?.subarray(b, b + RESYNC_BLOCK);
          local.push(block ? hashBlock(block) : { zero: true });
        }
        for (const c of planResync(at, RESYNC_BLOCK, disk.store.size, local, remote, stepBytes)) {
          const data =
            c.kind === 'write' ? buf!.subarray(c.offset - at, c.offset - at + c.length) : undefined;
          if (!(await agent.logResyncChange(disk, c.kind, c.offset, c.length, data))) {
            throw new Error('the change log is full: the resync waits for room');
          }
          if (c.kind === 'write') this.s.sentBytes += c.length;
          else this.s.zeroedBytes += c.length;
        }
      } finally {
        release();
      }
    }
    // Cleared only when no change bypassed the log since the hashes were asked for: such a
    // change may hide behind an equal hash, so its chunk is compared again in another pass.
    if (agent.unloggedCount === answer.unlogged) await disk.bitmap.clear(chunk.offset, chunk.length);
    this.s.doneBytes += chunk.length;
    this.s.percent = this.s.totalBytes ? Math.floor((this.s.doneBytes / this.s.totalBytes) * 100) : 100;
  }

  private async waitForLogRoom(bytes: number): Promise<void> {
    const log = this.opts.agent.log;
    while (!log.hasRoom(bytes) && !this.stopped) await new Promise((r) => setTimeout(r, 100));
  }
}

interface Chunk {
  disk: CapturedDisk;
  offset: number;
  length: number;
}

interface HashAnswer {
  unlogged: number;
  blocks: BlockHash[];
}

/** The step's bytes, or undefined when it is entirely a hole (nothing to read). */
async function readStep(disk: CapturedDisk, offset: number, length: number): Promise<Buffer | undefined> {
  if (disk.store.isHole(offset, length)) return undefined;
  const buf = Buffer.allocUnsafe(length);
  await disk.store.readInto(buf, offset);
  return buf;
}
