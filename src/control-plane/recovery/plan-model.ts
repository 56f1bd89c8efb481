// A recovery plan as an operator writes it, and the rules it must follow. Pure: given the
// machines' items and replication groups, the plan to store or the first problem, so the rules
// are unit-tested and a refused plan writes nothing.
//   { "groups": [ { "name": "db", "machines": ["db1"], "pre": "...", "post": "...",
//                   "manual": ["check the replica set"] }, ... ] }
// Groups run in order; in each: the pre script, the machines' steps, the post script, then the
// manual actions (the job waits for `rebound jobs confirm`). Scripts and manual actions belong
// to the operations that bring machines up (test failover, failover, failback). A replication group's machines must
// be in one plan group: they fail over at one common point (S19).

export interface PlanGroupInput {
  name: string;
  machines: string[];
  /** Run with /bin/sh -c on the configuration server before the group's machines. */
  pre?: string;
  /** After the group's machines. */
  post?: string;
  /** Steps the operator does by hand and confirms, after the post script. */
  manual?: string[];
}

/** As stored (recovery_plans.groups_json): items by id, so a plan follows its items through failover. */
export interface PlanGroup {
  name: string;
  items: string[];
  pre?: string;
  post?: string;
  manual: string[];
}

export interface PlanFacts {
  /** The replicated item of a machine name, with its replication group. */
  itemOf(machine: string): { id: string; group: string | undefined } | undefined;
  /** Every machine of a replication group. */
  groupMachines(group: string): string[];
}

export type PlanCheck = { ok: true; groups: PlanGroup[] } | { ok: false; status: 400 | 404; message: string };

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const MAX_SCRIPT = 4096;
const MAX_MANUAL = 1000;

const bad = (message: string): PlanCheck => ({ ok: false, status: 400, message });

export function checkPlanName(name: string): string | undefined {
  return NAME.test(name)
    ? undefined
    : `plan name '${name}' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`;
}

export function checkPlan(name: string, input: PlanGroupInput[], f: PlanFacts): PlanCheck {
  const nameProblem = checkPlanName(name);
  if (nameProblem) return bad(nameProblem);
  if (input.length === 0) return bad(`recovery plan '${name}' needs at least one group`);
  const groupOfMachine = new Map<string, string>();
  const seenGroups = new Set<string>();
  const out: PlanGroup[] = [];
  for (const g of input) {
    if (!NAME.test(g.name)) {
      return bad(
        `plan group name '${g.name}' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
      );
    }
    if (seenGroups.has(g.name)) return bad(`plan group '${g.name}' is named twice`);
    seenGroups.add(g.name);
    if (g.machines.length === 0) return bad(`plan group '${g.name}' has no machines`);
    for (const [what, text] of [
      ['pre', g.pre],
      ['post', g.post],
    ] as const) {
      if (text !== undefined && (text.trim() === '' || text.length > MAX_SCRIPT)) {
        return bad(`the ${what} script of plan group '${g.name}' must be 1-${MAX_SCRIPT} characters`);
      }
    }
    for (const m of g.manual ?? []) {
      if (m.trim() === '' || m.length > MAX_MANUAL) {
        return bad(`a manual action of plan group '${g.name}' must be 1-${MAX_MANUAL} characters`);
      }
    }
    const items: string[] = [];
    for (const m of g.machines) {
      const earlier = groupOfMachine.get(m);
      if (earlier !== undefined) {
        return bad(
          earlier === g.name
            ? `machine '${m}' is named twice in plan group '${g.name}'`
            : `machine '${m}' is in plan groups '${earlier}' and '${g.name}': a machine recovers once`,
        );
      }
      groupOfMachine.set(m, g.name);
      const item = f.itemOf(m);
      if (!item) return { ok: false, status: 404, message: `replicated item of machine '${m}' not found` };
      items.push(item.id);
    }
    out.push({
      name: g.name,
      items,
      ...(g.pre === undefined ? {} : { pre: g.pre }),
      ...(g.post === undefined ? {} : { post: g.post }),
      manual: g.manual ?? [],
    });
  }
  // S19: a replication group recovers (and is reprotected) together, at one common point.
  for (const [machine, planGroup] of groupOfMachine) {
    const rg = f.itemOf(machine)?.group;
    if (rg === undefined) continue;
    const members = f.groupMachines(rg);
    const missing = members.filter((x) => !groupOfMachine.has(x));
    if (missing.length > 0) {
      return bad(
        `replication group '${rg}' recovers as a whole: add ${missing.map((x) => `'${x}'`).join(', ')} to plan group '${planGroup}'`,
      );
    }
    const elsewhere = members.find((x) => groupOfMachine.get(x) !== planGroup);
    if (elsewhere !== undefined) {
      return bad(
        `replication group '${rg}' recovers at one common point: '${machine}' and '${elsewhere}' must be in the same plan group`,
      );
    }
  }
  return { ok: true, groups: out };
}

export function parsePlanGroups(json: string): PlanGroup[] {
  return JSON.parse(json) as PlanGroup[];
}
