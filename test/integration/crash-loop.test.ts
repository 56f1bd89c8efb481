// SIGKILL the agent mid-workload, several times. After each restart the log is
// readable, a torn tail is cut, and every write acknowledged before the last
// acknowledged FLUSH (on any connection) or acknowledged with FUA is on the disk;
// so is every acknowledged write at all, since the client outlives the agent (it
// reconnects, and its next FLUSH there covers what it was told was written).
// Small writes take the agent's fast path, large ones (over 64 KiB) the queued one.
// At the end the whole log rebuilds the disk byte for byte.
// REBOUND_TEST_SEED=N repeats a run's writes (not its kill moments); REBOUND_CRASH_ROUNDS=N
// runs more rounds (default 6), for hunting a rare race.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { type RunningAgent, runCli, startAgent } from '../support/agent-process.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { prng } from '../support/prng.js';
import { scratchDir, sparseImage } from '../support/tmp.js';

const exec = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;
const DISK = 1024 * MiB;
const SLOT = 256 * KiB; // every write gets a fresh slot, so each can be checked on its own
const ROUNDS = Number(process.env.REBOUND_CRASH_ROUNDS ?? 6);

/** 4-16 KiB mostly; one in five 68-256 KiB (past the fast path's 64 KiB). */
function writeSize(rand: () => number): number {
  if (rand() < 0.2) return 64 * KiB + 4 * KiB * (1 + Math.floor(rand() * 48));
  return 4 * KiB * (1 + Math.floor(rand() * 4));
}

interface TrackedWrite {
  offset: number;
  data: Buffer;
  ackedAt?: number;
  fua: boolean;
  round: number;
}

describe('agent crash loop (SIGKILL under write load)', { timeout: 300_000 }, () => {
  const { dir, cleanup } = scratchDir('crash');
  const dataDir = join(dir, 'agent');
  const disk = sparseImage(join(dir, 'disk.img'), DISK);
  const seed = Number(process.env.REBOUND_TEST_SEED ?? Date.now() % 1_000_000);
  const rand = prng(seed);
  let running: RunningAgent | undefined;

  after(async () => {
    await running?.kill();
    cleanup();
  });

  test(`${ROUNDS} kills; every acknowledged write survives (seed ${seed})`, async (t) => {
    // A random order of slots: writes land all over the disk, never on the same place twice.
    const slots = Array.from({ length: DISK / SLOT }, (_, i) => i);
    for (let i = slots.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [slots[i], slots[j]] = [slots[j], slots[i]];
    }
    let nextSlot = 0;
    let clock = 0; // orders acknowledgements and requests
    const all: TrackedWrite[] = [];
    let durable: TrackedWrite[] = []; // acknowledged before the last acknowledged flush was sent, or FUA
    let tornTailsCut = 0;

    for (let round = 0; round < ROUNDS; round++) {
      running = await startAgent(['--data-dir', dataDir, '--disk', `disk0=${disk}`, '--segment-size', '8M']);
      if (round > 0) {
        // The log from before the crash is readable.
        const s = await runCli(['agent', 'log', '--json', '--data-dir', dataDir]);
        assert.equal(s.code, 0, s.stderr);
        if (/cutting torn tail/.test(running.stderr())) tornTailsCut++;
      }
      // Everything that had to be durable at the crash is there, checked through NBD.
      const reader = await TestNbdClient.connect({ port: running.port }, 'disk0');
      for (const w of durable) {
        const got = await reader.read(w.offset, w.data.length);
        assert.ok(
          got.equals(w.data),
          `round ${round}: durable write at ${w.offset}+${w.data.length} is on the disk ` +
            `(written in round ${w.round}${w.fua ? ' with FUA' : ''}; read back ${describeRead(got, w.data)}; ` +
            `agent start: ${recoveryLines(running.stderr())})`,
        );
      }
      // And every acknowledged write, flushed or not, of the round the kill ended
      // (earlier rounds' were checked at their own restart, and are covered by flushes since).
      for (const w of all) {
        if (w.round !== round - 1 || w.ackedAt === undefined) continue;
        const got = await reader.read(w.offset, w.data.length);
        assert.ok(
          got.equals(w.data),
          `round ${round}: acknowledged write at ${w.offset}+${w.data.length} survived the kill ` +
            `(read back ${describeRead(got, w.data)}; agent start: ${recoveryLines(running.stderr())})`,
        );
      }
      await reader.disconnect();
      if (round === ROUNDS - 1) break;

      // Two connections: a flush on one must cover writes acknowledged on the other.
      const clients = [
        await TestNbdClient.connect({ port: running.port }, 'disk0'),
        await TestNbdClient.connect({ port: running.port }, 'disk0'),
      ];
      let stop = false;
      const roundSlotLimit = Math.floor((slots.length * (round + 1)) / (ROUNDS - 1));
      const inflight = new Set<Promise<unknown>>();
      const issue = () => {
        const c = clients[Math.floor(rand() * clients.length)];
        if (rand() < 0.06) {
          const sentAt = ++clock;
          const covered = all.filter((w) => w.ackedAt !== undefined && w.ackedAt < sentAt);
          return c.flush().then(() => {
            ++clock;
            if (covered.length >= durable.length) durable = covered;
          });
        }
        // Each round gets its share of fresh slots; once used up, just wait for the kill.
        if (nextSlot >= roundSlotLimit) return new Promise((r) => setTimeout(r, 20));
        const w: TrackedWrite = {
          offset: slots[nextSlot++] * SLOT,
          data: randomBytes(writeSize(rand)),
          fua: rand() < 0.05,
          round,
        };
        all.push(w);
        return c.write(w.offset, w.data, w.fua).then(() => {
          w.ackedAt = ++clock;
          if (w.fua) durable.push(w);
        });
      };
      const pump = async () => {
        while (!stop) {
          while (inflight.size < 16 && !stop) {
            const p: Promise<unknown> = issue().catch(() => undefined);
            inflight.add(p);
            p.finally(() => inflight.delete(p));
          }
          await Promise.race(inflight);
        }
      };
      const load = pump();
      await new Promise((r) => setTimeout(r, 100 + rand() * 400));
      stop = true; // no new requests; those in flight meet the kill
      await running.kill();
      const errors = running
        .stderr()
        .split('\n')
        .filter((l) => /"level":(50|60)/.test(l));
      assert.deepEqual(errors, [], `round ${round}: the agent logged no errors before the kill`);
      await load;
      for (const c of clients) c.destroy();

      // Every other round, also tear the tail the way a crash mid-append would:
      // half a record header at the end of the newest segment.
      if (round % 2 === 1) {
        const logDir = join(dataDir, 'log');
        const segments = readdirSync(logDir)
          .filter((n) => n.endsWith('.rcl'))
          .sort()
          .map((n) => join(logDir, n));
        // The kill may come right after a rotation, with the newest segment still empty:
        // the half header is then taken from the newest segment that has one.
        const withRecords = segments.filter((p) => statSync(p).size >= 30).at(-1)!;
        appendFileSync(segments.at(-1)!, readFileSync(withRecords).subarray(0, 30));
      }
      t.diagnostic(
        `round ${round}: ${all.length} writes issued, ${all.filter((w) => w.ackedAt).length} acknowledged, ` +
          `${durable.length} durable`,
      );
    }
    assert.ok(durable.length > 100, `enough durable writes to mean something: ${durable.length}`);
    assert.ok(tornTailsCut >= 2, `torn tails cut: ${tornTailsCut}`);

    // Clean stop; then the log alone, applied to an empty image, is the disk.
    assert.equal(await running!.stop(), 0);
    running = undefined;
    const s = JSON.parse((await runCli(['agent', 'log', '--json', '--data-dir', dataDir])).stdout);
    assert.equal(s.clean, true);
    assert.deepEqual(s.disks[0].resyncRequired, []);
    const empty = sparseImage(join(dir, 'empty.img'), DISK);
    const rebuilt = join(dir, 'rebuilt.img');
    const r = await runCli([
      'log',
      'apply',
      '--data-dir',
      dataDir,
      '--disk',
      'disk0',
      '--base',
      empty,
      '--to',
      String(s.log.lastSeq),
      '--out',
      rebuilt,
    ]);
    assert.equal(r.code, 0, r.stderr);
    await exec('cmp', [rebuilt, disk]);
    const h = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
    assert.equal(h(rebuilt), h(disk));
  });
});

/** What a failed read returned, for the failure message. */
function describeRead(got: Buffer, want: Buffer): string {
  if (got.every((b) => b === 0)) return 'zeroes';
  let first = 0;
  while (first < got.length && got[first] === want[first]) first++;
  return `different bytes from byte ${first}`;
}

/** The agent's own account of its start after a crash: redo and torn-tail lines. */
function recoveryLines(stderr: string): string {
  return stderr
    .split('\n')
    .filter((l) => /redid|torn tail|crash/.test(l))
    .join(' | ');
}
