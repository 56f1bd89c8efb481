// A replicated item with the rows it refers to, and finding an item by what operators type
// (its id, or its machine's name or id).
import type { Kysely, Transaction } from 'kysely';
import type {
  Database,
  Datastore,
  Item,
  Machine,
  MasterTargetRow,
  Policy,
  ProcessServerRow,
  RetentionVolume,
} from '../db/schema.js';

type Db = Kysely<Database> | Transaction<Database>;

export interface ItemRows {
  item: Item;
  machine: Machine;
  policy: Policy;
  processServer: ProcessServerRow;
  masterTarget: MasterTargetRow;
  datastore: Datastore | undefined;
  retentionVolume: RetentionVolume | undefined;
}

export async function loadItem(db: Db, itemId: string): Promise<ItemRows | undefined> {
  const item = await db.selectFrom('items').selectAll().where('id', '=', itemId).executeTakeFirst();
  if (!item) return undefined;
  return withRows(db, item);
}

export async function withRows(db: Db, item: Item): Promise<ItemRows> {
  const machine = await db
    .selectFrom('machines')
    .selectAll()
    .where('id', '=', item.machine_id)
    .executeTakeFirstOrThrow();
  const policy = await db
    .selectFrom('policies')
    .selectAll()
    .where('id', '=', item.policy_id)
    .executeTakeFirstOrThrow();
  const processServer = await db
    .selectFrom('process_servers')
    .selectAll()
    .where('id', '=', item.process_server_id)
    .executeTakeFirstOrThrow();
  const masterTarget = await db
    .selectFrom('master_targets')
    .selectAll()
    .where('id', '=', item.master_target_id)
    .executeTakeFirstOrThrow();
  const datastore = item.datastore_id
    ? await db.selectFrom('datastores').selectAll().where('id', '=', item.datastore_id).executeTakeFirst()
    : undefined;
  const retentionVolume = item.retention_volume_id
    ? await db
        .selectFrom('retention_volumes')
        .selectAll()
        .where('id', '=', item.retention_volume_id)
        .executeTakeFirst()
    : undefined;
  return { item, machine, policy, processServer, masterTarget, datastore, retentionVolume };
}

/** An item by its id, or by its machine's name or id. */
export async function findItem(db: Db, ref: string): Promise<Item | undefined> {
  const byId = await db.selectFrom('items').selectAll().where('id', '=', ref).executeTakeFirst();
  if (byId) return byId;
  return db
    .selectFrom('items')
    .innerJoin('machines', 'machines.id', 'items.machine_id')
    .selectAll('items')
    .where((eb) => eb.or([eb('machines.name', '=', ref), eb('machines.id', '=', ref)]))
    .executeTakeFirst();
}

export async function setItem(
  db: Db,
  id: string,
  set: Partial<Omit<Item, 'id' | 'machine_id' | 'created_at'>>,
  now: string,
): Promise<void> {
  await db
    .updateTable('items')
    .set({ ...set, updated_at: now })
    .where('id', '=', id)
    .execute();
}
