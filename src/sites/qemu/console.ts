// The guest's serial console as a file: when its first byte appeared (the RTO benchmark's end
// point) and waiting for a line.
import { readFile, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/** Polls until the file holds at least one byte; the time it was first seen. */
export async function firstOutput(
  file: string,
  timeoutMs: number,
  pollMs = 10,
  stillRunning?: () => boolean,
): Promise<Date> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const size = await stat(file).then(
      (s) => s.size,
      () => 0,
    );
    if (size > 0) return new Date();
    if (stillRunning && !stillRunning())
      throw new Error(`the machine stopped without console output in ${file}`);
    if (Date.now() > deadline) throw new Error(`no console output in ${file} within ${timeoutMs} ms`);
    await sleep(pollMs);
  }
}

/** Polls until the console matches pattern; the whole console text then. */
export async function waitForText(
  file: string,
  pattern: RegExp,
  timeoutMs: number,
  stillRunning?: () => boolean,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await readConsole(file);
    if (pattern.test(text)) return text;
    if (stillRunning && !stillRunning()) {
      // One last read: the line may have been written just before QEMU exited.
      const last = await readConsole(file);
      if (pattern.test(last)) return last;
      throw new Error(`the machine stopped before its console showed ${pattern}; console:\n${last}`);
    }
    if (Date.now() > deadline)
      throw new Error(`console did not show ${pattern} within ${timeoutMs} ms:\n${text}`);
    await sleep(100);
  }
}

/** The console's text with the terminal's carriage returns removed (lines end in \n). */
export async function readConsole(file: string): Promise<string> {
  return (await readFile(file, 'utf8').catch(() => '')).replace(/\r/g, '');
}
