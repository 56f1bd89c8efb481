// The order a backup writes tables and rows in, so that a restore can insert them one after
// the other with foreign keys checked: every row after the rows it refers to. Pure.

export interface ForeignKey {
  table: string;
  column: string;
  refTable: string;
  refColumn: string;
}

/** Tables, each after the tables it refers to (ties in name order). A cycle is refused. */
export function orderTables(tables: readonly string[], fks: readonly ForeignKey[]): string[] {
  const known = new Set(tables);
  const needs = new Map(tables.map((t) => [t, new Set<string>()]));
  for (const fk of fks) {
    if (fk.table !== fk.refTable && known.has(fk.table) && known.has(fk.refTable)) {
      needs.get(fk.table)!.add(fk.refTable);
    }
  }
  const done = new Set<string>();
  const out: string[] = [];
  const sorted = [...tables].sort();
  while (out.length < sorted.length) {
    const next = sorted.find((t) => !done.has(t) && [...needs.get(t)!].every((r) => done.has(r)));
    if (next === undefined) {
      const left = sorted.filter((t) => !done.has(t));
      throw new Error(`tables ${left.join(', ')} refer to each other in a cycle; cannot order a backup`);
    }
    done.add(next);
    out.push(next);
  }
  return out;
}

/**
 * The rows of a table that refers to itself (a failback policy to its policy), each after the
 * row it refers to. Rows in a cycle are refused.
 */
export function orderRows<R extends Record<string, unknown>>(
  table: string,
  rows: readonly R[],
  selfFks: readonly ForeignKey[],
): R[] {
  if (selfFks.length === 0) return [...rows];
  const present = (fk: ForeignKey) => new Set(rows.map((r) => r[fk.refColumn]));
  const targets = selfFks.map(present);
  const placed = selfFks.map(() => new Set<unknown>());
  const out: R[] = [];
  let left = [...rows];
  while (left.length > 0) {
    const ready = left.filter((r) =>
      selfFks.every((fk, i) => {
        const v = r[fk.column];
        // A reference to a row that is not there is the database's business, not the order's.
        return v === null || v === undefined || !targets[i].has(v) || placed[i].has(v);
      }),
    );
    if (ready.length === 0) {
      throw new Error(`${left.length} rows of table '${table}' refer to each other in a cycle`);
    }
    for (const r of ready) {
      out.push(r);
      selfFks.forEach((fk, i) => {
        placed[i].add(r[fk.refColumn]);
      });
    }
    const readySet = new Set(ready);
    left = left.filter((r) => !readySet.has(r));
  }
  return out;
}
