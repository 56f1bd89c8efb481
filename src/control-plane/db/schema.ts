// The configuration server's tables, as Kysely sees them. One schema for SQLite and PostgreSQL:
// ids are text (UUIDs or names), times are ISO-8601 text, booleans are 0/1 integers and
// structured values are JSON text, so every query is the same on both databases.
import type { Insertable, Selectable, Updateable } from 'kysely';

/** 0 or 1: booleans stored the same way on both databases. */
export type Flag = 0 | 1;

/** Server-wide settings and secrets: identity, passphrase hash, admin token hashes. */
export interface MetaTable {
  key: string;
  value: string;
}

export interface SiteTable {
  id: string;
  name: string;
  /** Site adapter: 'qemu' or 'physical'. */
  adapter: string;
  /** 004: the adapter's settings as JSON, e.g. {"dir": "/var/lib/rebound/sites/b"}. */
  config_json: string | null;
  created_at: string;
}

/** A protected (or recovered) machine; its agent registers with a certificate named agent_name. */
export interface MachineTable {
  id: string;
  name: string;
  site_id: string | null;
  /** 'linux' or 'windows' (S20: one OS per group). */
  os_type: string;
  /** The agent's certificate name (CN); null until an agent registered for this machine. */
  agent_name: string | null;
  /** host:port of the agent's control endpoint, as it reported it. */
  address: string | null;
  registered_at: string | null;
  last_heartbeat_at: string | null;
  /** The last status the agent reported (JSON). */
  status_json: string | null;
  /** S26: the replicated item whose failover created this machine, if any. */
  created_by_failover_of: string | null;
  created_at: string;
}

/** A disk of a machine. `id` is the disk's own id, unique across the deployment (S23). */
export interface DiskTable {
  id: string;
  machine_id: string;
  name: string;
  size_bytes: number;
  path: string | null;
  created_at: string;
}

interface ComponentColumns {
  id: string;
  /** The component's certificate name (CN). */
  name: string;
  /** host:port its data-plane listener accepts on. */
  address: string | null;
  /** 1 for the process server / master target built into the configuration server. */
  builtin: Flag;
  registered_at: string;
  last_heartbeat_at: string | null;
  status_json: string | null;
}

export interface ProcessServerTable extends ComponentColumns {}

export interface MasterTargetTable extends ComponentColumns {
  /** S23: at most this many disks attached (60 by default). */
  max_disks: number;
  /** S20: a master target that holds snapshots cannot be a reprotect target. */
  has_snapshots: Flag;
}

export interface DatastoreTable {
  id: string;
  master_target_id: string;
  name: string;
  path: string;
  capacity_bytes: number;
  free_bytes: number;
  refreshed_at: string;
  /** 002-inventory: what the last probe found (VolumeFacts JSON) and why it is unusable. */
  fs_type: string | null;
  mount_point: string | null;
  problem: string | null;
  facts_json: string | null;
}

export interface RetentionVolumeTable {
  id: string;
  master_target_id: string;
  path: string;
  fs_type: string | null;
  capacity_bytes: number;
  free_bytes: number;
  /** 1 when it passes S24; otherwise invalid_reason says why. */
  valid: Flag;
  invalid_reason: string | null;
  refreshed_at: string;
  /** 002-inventory: what the last probe found (VolumeFacts JSON). */
  mount_point: string | null;
  facts_json: string | null;
}

export interface PolicyTable {
  id: string;
  name: string;
  rpo_threshold_minutes: number;
  retention_hours: number;
  app_consistent_minutes: number;
  crash_consistent_minutes: number;
  ack_mode: string;
  /** 1 for a failback policy (S15): made with its policy, tied to the server, not editable. */
  is_failback: Flag;
  /** For a failback policy: the policy it was made for. */
  parent_policy_id: string | null;
  created_at: string;
  updated_at: string;
}

/** A machine's replication: where it goes, under which policy, and how it is doing. */
export interface ItemTable {
  id: string;
  machine_id: string;
  policy_id: string;
  process_server_id: string;
  master_target_id: string;
  datastore_id: string | null;
  retention_volume_id: string | null;
  /** enabling | initial-replication | protected | resync-required | failed-over | reprotecting | disabling | failed */
  state: string;
  /** Initial replication or resync progress, 0-100. */
  progress_pct: number;
  rpo_seconds: number | null;
  /** JSON list of named health problems from the data plane. */
  health_json: string;
  /** 'forward' (original → recovery site) or 'reverse' (after reprotect). */
  direction: string;
  group_id: string | null;
  created_at: string;
  updated_at: string;
  /**
   * 004: the machine on the other side: after a failover the recovered machine, after a
   * reprotect the original machine (whose disks are the replica), after a failback the recovered one.
   */
  partner_machine_id: string | null;
  /** 004: the site machines of this item are recovered at. */
  recovery_site_id: string | null;
  /** 004: the last failover (FailoverRecord JSON): point, time, planned, committed. */
  failover_json: string | null;
  /** 004: a running test failover (TestFailoverRecord JSON). */
  test_failover_json: string | null;
}

export interface ReplicationGroupTable {
  id: string;
  name: string;
  created_at: string;
}

export interface GroupPointTable {
  id: string;
  group_id: string;
  /** crash | app */
  kind: string;
  taken_at: string;
  /** { [machineId]: seq } as JSON: each member's sequence number of this point. */
  seqs_json: string;
}

export interface RecoveryPlanTable {
  id: string;
  name: string;
  /** PlanGroup[] as JSON: ordered groups of machines, their scripts and manual actions. */
  groups_json: string;
  created_at: string;
  updated_at: string;
}

export interface JobTable {
  id: string;
  kind: string;
  /** What it acts on, e.g. an item or machine id. */
  target_id: string | null;
  /** Queued | Running | Succeeded | Warning | Failed | Cancelled */
  state: string;
  progress_pct: number;
  params_json: string;
  error: string | null;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  /** Who asked: 'admin' or a component identity. */
  requested_by: string;
  /** When a cancellation was asked for (the job ends Cancelled before its next step). */
  cancel_requested_at: string | null;
}

export interface JobStepTable {
  id: string;
  job_id: string;
  ordinal: number;
  name: string;
  /** Pending | Running | Succeeded | Warning | Failed | Skipped | Cancelled | WaitingForConfirmation */
  state: string;
  progress_pct: number;
  message: string | null;
  error: string | null;
  started_at: string | null;
  ended_at: string | null;
}

export interface AlertTable {
  id: string;
  /** critical | warning | info */
  severity: string;
  /** A stable name: e.g. 'heartbeat-missing', 'rpo-threshold-exceeded'. */
  kind: string;
  /** What it is about: a machine, item or component id. */
  subject_id: string;
  message: string;
  raised_at: string;
  cleared_at: string | null;
}

export interface Database {
  meta: MetaTable;
  sites: SiteTable;
  machines: MachineTable;
  disks: DiskTable;
  process_servers: ProcessServerTable;
  master_targets: MasterTargetTable;
  datastores: DatastoreTable;
  retention_volumes: RetentionVolumeTable;
  policies: PolicyTable;
  items: ItemTable;
  jobs: JobTable;
  job_steps: JobStepTable;
  alerts: AlertTable;
  replication_groups: ReplicationGroupTable;
  recovery_plans: RecoveryPlanTable;
  group_points: GroupPointTable;
}

export type Site = Selectable<SiteTable>;
export type Machine = Selectable<MachineTable>;
export type GroupPoint = Selectable<GroupPointTable>;
export type Disk = Selectable<DiskTable>;
export type ProcessServerRow = Selectable<ProcessServerTable>;
export type MasterTargetRow = Selectable<MasterTargetTable>;
export type Datastore = Selectable<DatastoreTable>;
export type RetentionVolume = Selectable<RetentionVolumeTable>;
export type Policy = Selectable<PolicyTable>;
export type NewPolicy = Insertable<PolicyTable>;
export type PolicyUpdate = Updateable<PolicyTable>;
export type Item = Selectable<ItemTable>;
export type Job = Selectable<JobTable>;
export type JobStep = Selectable<JobStepTable>;
export type Alert = Selectable<AlertTable>;
export type ReplicationGroup = Selectable<ReplicationGroupTable>;
export type RecoveryPlan = Selectable<RecoveryPlanTable>;
