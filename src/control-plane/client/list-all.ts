// Reads every page of a paged list (api/paging.ts): the CLI shows whole lists.
import type { ApiClient } from './api-client.js';

const PAGE = 1000;

export async function listAll<T>(client: ApiClient, path: string, nameOf: (row: T) => string): Promise<T[]> {
  const all: T[] = [];
  let after: string | undefined;
  for (;;) {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (after !== undefined) q.set('after', after);
    const page = await client.get<T[]>(`${path}${path.includes('?') ? '&' : '?'}${q}`);
    all.push(...page);
    if (page.length < PAGE) return all;
    after = nameOf(page[page.length - 1]!);
  }
}
