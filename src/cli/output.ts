// Output of read commands: --json prints the API's answer as it is; otherwise a table.

export interface Column<T> {
  header: string;
  value: (row: T) => string | number | null | undefined;
}

export function formatTable<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const cells = rows.map((r) => columns.map((c) => String(c.value(r) ?? '-')));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((row) => row[i].length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => (i === values.length - 1 ? v : v.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header.toUpperCase())), ...cells.map(line)].join('\n');
}

/** Prints rows as JSON or as a table; an empty table says so. */
export function printRows<T>(
  rows: readonly T[],
  columns: readonly Column<T>[],
  json: boolean,
  empty: string,
): void {
  if (json) {
    console.log(JSON.stringify(rows, null, 2));
  } else if (rows.length === 0) {
    console.log(empty);
  } else {
    console.log(formatTable(rows, columns));
  }
}

export function printJson(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}
