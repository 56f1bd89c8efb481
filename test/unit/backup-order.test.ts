// The order a backup writes tables and rows in: every row after the rows it refers to.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type ForeignKey, orderRows, orderTables } from '../../src/control-plane/backup/order.js';

const fk = (table: string, column: string, refTable: string, refColumn = 'id'): ForeignKey => ({
  table,
  column,
  refTable,
  refColumn,
});

describe('backup order', () => {
  it('puts each table after the tables it refers to', () => {
    const order = orderTables(
      ['items', 'machines', 'policies', 'sites', 'disks', 'meta'],
      [
        fk('items', 'machine_id', 'machines'),
        fk('items', 'policy_id', 'policies'),
        fk('machines', 'site_id', 'sites'),
        fk('disks', 'machine_id', 'machines'),
        fk('policies', 'parent_policy_id', 'policies'),
      ],
    );
    assert.deepEqual(order, ['meta', 'policies', 'sites', 'machines', 'disks', 'items']);
  });

  it('refuses tables that refer to each other in a cycle', () => {
    assert.throws(() => orderTables(['a', 'b', 'c'], [fk('a', 'b_id', 'b'), fk('b', 'a_id', 'a')]), {
      message: 'tables a, b refer to each other in a cycle; cannot order a backup',
    });
  });

  it('puts a row after the row of the same table it refers to', () => {
    const rows = [
      { id: 'fb2', parent_policy_id: 'p2' },
      { id: 'fb1', parent_policy_id: 'p1' },
      { id: 'p1', parent_policy_id: null },
      { id: 'p2', parent_policy_id: null },
      { id: 'dangling', parent_policy_id: 'gone' },
    ];
    const out = orderRows('policies', rows, [fk('policies', 'parent_policy_id', 'policies')]).map(
      (r) => r.id,
    );
    assert.deepEqual(out, ['p1', 'p2', 'dangling', 'fb2', 'fb1']);
    assert.throws(
      () =>
        orderRows(
          'policies',
          [
            { id: 'a', parent_policy_id: 'b' },
            { id: 'b', parent_policy_id: 'a' },
          ],
          [fk('policies', 'parent_policy_id', 'policies')],
        ),
      { message: "2 rows of table 'policies' refer to each other in a cycle" },
    );
  });
});
