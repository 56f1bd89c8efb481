// Coalesces durability requests: callers that arrive while a sync runs share the
// next one, which starts after it (so it covers everything they wrote before asking).
export class SyncCoalescer {
  private running: Promise<void> | undefined;
  private next: Promise<void> | undefined;

  constructor(private readonly doSync: () => Promise<void>) {}

  request(): Promise<void> {
    if (!this.running) {
      this.running = this.doSync().finally(() => {
        this.running = undefined;
      });
      return this.running;
    }
    if (!this.next) {
      const after = this.running.catch(() => undefined);
      this.next = after.then(() => {
        this.next = undefined;
        return this.request();
      });
    }
    return this.next;
  }
}
