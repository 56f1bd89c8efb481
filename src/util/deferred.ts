// A promise with its resolve function outside: one promise however many wait, resolved
// (and replaced by the owner) when what they wait for happens.
export interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
}

export function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
