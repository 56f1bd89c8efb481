// Failed passphrase attempts per source address: at most `limit` in any `windowMs`; beyond that
// the address is refused until its oldest failure leaves the window. Pure: the caller passes
// the clock. Memory is bounded: addresses with no failure in the window are forgotten.

export class FailureLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(
    readonly limit = 5,
    readonly windowMs = 60_000,
    private readonly maxAddresses = 10_000,
  ) {}

  private recent(address: string, now: number): number[] {
    const list = (this.failures.get(address) ?? []).filter((t) => t > now - this.windowMs);
    if (list.length === 0) this.failures.delete(address);
    else this.failures.set(address, list);
    return list;
  }

  /** Milliseconds until the address may try again, or 0 when it may try now. */
  blockedFor(address: string, now: number): number {
    const list = this.recent(address, now);
    if (list.length < this.limit) return 0;
    return list[list.length - this.limit] + this.windowMs - now;
  }

  recordFailure(address: string, now: number): void {
    const list = this.recent(address, now);
    list.push(now);
    this.failures.delete(address); // re-inserted last: the map stays ordered by latest failure
    this.failures.set(address, list);
    if (this.failures.size > this.maxAddresses) {
      // Forget the address whose latest failure is oldest (Map order = insertion order).
      const first = this.failures.keys().next().value;
      if (first !== undefined && first !== address) this.failures.delete(first);
    }
  }
}
