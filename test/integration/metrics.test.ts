// /metrics on each component, scraped over HTTP while replication runs: the numbers move
// as they should. The agent's backlog grows while the process server is down and drains
// to 0 after it is back; the master target's RPO grows while nothing reaches it and stays
// small afterwards, also while the source is idle (position heartbeats); health problems
// are named in the metrics, in `rebound master-target status` and in `rebound agent log`.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { callAgent } from '../../src/agent/control-server.js';
import { type RunningAgent, runCli, startAgent } from '../support/agent-process.js';
import { killChild, type RunningComponent, startComponent } from '../support/component-process.js';
import { httpGet, metricsUrl, sample, scrape } from '../support/metrics.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { scratchDir, sparseImage } from '../support/tmp.js';
import { issueTrioCerts } from '../support/trio.js';

const MiB = 1024 * 1024;

/** Polls until check returns a value (not undefined); the error names what was last seen. */
async function eventually<T>(what: string, check: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${ms} ms waiting for ${what} (${last ?? ''})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('metrics and status of agent, process server and master target', { timeout: 180_000 }, () => {
  const { dir, cleanup } = scratchDir('metrics');
  let agent: RunningAgent | undefined;
  let ps: RunningComponent | undefined;
  let mt: RunningComponent | undefined;
  after(async () => {
    await agent?.kill();
    await killChild(ps?.child);
    await killChild(mt?.child);
    cleanup();
  });

  test('backlog, sequence numbers, RPO and health move with the pipeline', async () => {
    const tls = await issueTrioCerts(dir);
    const metricsArgs = ['--metrics-listen', '127.0.0.1:0'];
    const mtData = join(dir, 'mt');
    mt = await startComponent('master-target', [
      ...['--data-dir', mtData, '--retention-dir', join(dir, 'retention')],
      ...['--tls-dir', tls, '--name', 'mt1', '--rpo-alert', '4', ...metricsArgs],
    ]);
    const psArgs = [
      ...['--data-dir', join(dir, 'ps'), '--tls-dir', tls, '--name', 'ps1'],
      ...['--master-target', `127.0.0.1:${mt.port}`, ...metricsArgs],
    ];
    ps = await startComponent('process-server', psArgs);
    const psPort = ps.port;
    const dataDir = join(dir, 'agent');
    const disk = sparseImage(join(dir, 'disk.img'), 16 * MiB);
    agent = await startAgent([
      ...['--data-dir', dataDir, '--disk', `root=${disk}`, ...metricsArgs],
      ...['--process-server', `127.0.0.1:${psPort}`, '--tls-dir', tls, '--name', 'a1'],
    ]);
    const machine = JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8')).machineId as string;
    const agentMetrics = metricsUrl(agent.stdout());
    const mtMetrics = metricsUrl(mt.stdout());
    let psMetrics = metricsUrl(ps.stdout());

    // The endpoint: Prometheus text, process metrics too, a clear 404 elsewhere.
    const page = await httpGet(agentMetrics);
    assert.equal(page.status, 200);
    assert.match(page.type, /^text\/plain; version=0\.0\.4/);
    assert.match(page.body, /^rebound_process_resident_memory_bytes \d+/m);
    assert.match(page.body, /^# HELP rebound_agent_backlog_bytes /m);
    const notFound = await httpGet(agentMetrics.replace('/metrics', '/other'));
    assert.equal(notFound.status, 404);
    assert.equal(notFound.body, 'no such endpoint: GET /other (metrics are at GET /metrics)\n');

    // The initial replication of the new disk comes first (its markers take sequence numbers).
    let base = 0;
    await eventually('the initial replication to end', async () => {
      const st = (await callAgent(dataDir, 'GET', '/status')).body as {
        nextSeq: number;
        replication?: { resync: { state: string; passes: number } };
      };
      base = st.nextSeq - 1;
      const r = st.replication?.resync;
      return r && r.state === 'idle' && r.passes > 0 ? true : undefined;
    });
    const client = await TestNbdClient.connect({ port: agent.port }, 'root');
    for (let i = 0; i < 32; i++) await client.write(i * 131072, randomBytes(65536));
    await client.flush();
    const firstSeq = base + 33; // 32 writes and a flush

    // Everything reaches the master target: backlogs 0, sequences equal, RPO small.
    await eventually('the first writes to be applied', async () => {
      const a = await scrape(agentMetrics);
      const p = await scrape(psMetrics);
      const m = await scrape(mtMetrics);
      const rpo = sample(m, 'rebound_master_target_rpo_seconds', machine);
      const done =
        sample(a, 'rebound_agent_backlog_bytes', machine) === 0 &&
        sample(a, 'rebound_agent_acked_seq', machine) === firstSeq &&
        sample(p, 'rebound_process_server_backlog_bytes', machine) === 0 &&
        sample(p, 'rebound_process_server_forwarded_seq', machine) === firstSeq &&
        sample(m, 'rebound_master_target_applied_seq', machine) === firstSeq &&
        rpo !== undefined &&
        rpo < 3;
      return done ? true : undefined;
    });
    let m = await scrape(mtMetrics);
    assert.equal(sample(m, 'rebound_master_target_stream_connected', machine), 1);
    assert.ok(sample(m, 'rebound_master_target_journal_bytes', machine)! > 0);
    assert.ok(sample(m, 'rebound_master_target_latest_crash_point_timestamp_seconds', machine)! > 1.7e9);
    assert.equal(sample(m, 'rebound_master_target_latest_app_point_timestamp_seconds', machine), undefined);
    let a = await scrape(agentMetrics);
    assert.equal(sample(a, 'rebound_agent_shipper_connected', machine), 1);
    assert.equal(sample(a, 'rebound_agent_log_limit_bytes', machine), 1024 ** 3);
    assert.ok(sample(a, 'rebound_agent_log_bytes', machine)! > 32 * 65536);
    assert.equal(sample(a, 'rebound_agent_resync_required_bytes', machine), 0);
    const p = await scrape(psMetrics);
    assert.equal(sample(p, 'rebound_process_server_agent_connected', machine), 1);
    assert.equal(sample(p, 'rebound_process_server_forwarder_connected', machine), 1);
    assert.equal(sample(p, 'rebound_process_server_acked_seq', machine), firstSeq);
    assert.ok(sample(p, 'rebound_process_server_rpo_seconds', machine)! < 3);

    // Idle: the RPO does not grow (position heartbeats keep proving the replica current).
    await new Promise((r) => setTimeout(r, 6000));
    m = await scrape(mtMetrics);
    const idleRpo = sample(m, 'rebound_master_target_rpo_seconds', machine)!;
    assert.ok(idleRpo < 3, `idle RPO ${idleRpo} s grew`);
    assert.equal(
      m.get(`rebound_master_target_health_problem{machine="${machine}",code="rpo-threshold-exceeded"}`),
      undefined,
    );

    // The process server goes down: the agent's backlog grows, the master target's RPO too.
    await ps.stop();
    for (let i = 0; i < 16; i++) await client.write(i * 131072 + 65536, randomBytes(65536));
    await client.flush();
    const b = await runCli(['agent', 'bookmark', '--data-dir', dataDir, '--tag', 'while-ps-down']);
    assert.equal(b.code, 0, b.stderr);
    const lastSeq = firstSeq + 18;
    a = await eventually('the agent to report its backlog', async () => {
      const s = await scrape(agentMetrics);
      return sample(s, 'rebound_agent_shipper_connected', machine) === 0 &&
        sample(s, 'rebound_agent_backlog_bytes', machine)! >= 16 * 65536
        ? s
        : undefined;
    });
    assert.equal(sample(a, 'rebound_agent_acked_seq', machine), firstSeq);
    assert.equal(
      a.get(`rebound_agent_health_problem{machine="${machine}",code="process-server-unreachable"}`),
      1,
    );
    const log = await runCli(['agent', 'log', '--data-dir', dataDir]);
    assert.equal(log.code, 0, log.stderr);
    assert.match(
      log.stdout,
      new RegExp(`shipper to 127\\.0\\.0\\.1:\\d+: NOT CONNECTED, acknowledged through seq ${firstSeq}`),
    );
    assert.match(log.stdout, /backlog \(not acknowledged by the process server\): 1\.\d+ MiB/);
    assert.match(log.stdout, /process-server-unreachable: not connected to the process server/);
    const logJson = JSON.parse((await runCli(['agent', 'log', '--json', '--data-dir', dataDir])).stdout);
    assert.equal(logJson.live.shipper.connected, false);
    assert.ok(logJson.live.shipper.backlogBytes >= 16 * 65536);

    const down = await eventually('the master target to see the RPO pass 4 s', async () => {
      const r = await runCli(['master-target', 'status', '--json', '--data-dir', mtData]);
      const s = JSON.parse(r.stdout).machines[0];
      return s.rpoSeconds > 4 && s.health.some((h: { code: string }) => h.code === 'rpo-threshold-exceeded')
        ? s
        : undefined;
    });
    assert.equal(down.machineId, machine);
    assert.equal(down.connected, false);
    assert.equal(down.appliedThrough, firstSeq);
    assert.deepEqual(
      down.health.map((h: { code: string }) => h.code),
      ['process-server-unreachable', 'rpo-threshold-exceeded'],
    );
    const text = await runCli(['master-target', 'status', '--data-dir', mtData]);
    assert.match(text.stdout, new RegExp(`^machine ${machine}: NOT STREAMING$`, 'm'));
    assert.match(
      text.stdout,
      /^ {4}process-server-unreachable: no process server is streaming this machine since /m,
    );
    assert.match(text.stdout, /^ {2}latest app-consistent point: none$/m);

    // Structured logs: the master target named the problem, with fields.
    const mtLog = () =>
      mt!
        .stderr()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l));
    const raised = await eventually('the master target to log the RPO problem', async () =>
      mtLog().find((l) => l.msg === 'master target: health problem' && l.code === 'rpo-threshold-exceeded'),
    );
    assert.equal(raised.machineId, machine);
    assert.equal(raised.seq, firstSeq);
    assert.ok(raised.rpoSeconds > 4);

    // Back on its port: everything drains, the RPO is small again, health is clear.
    ps = await startComponent('process-server', psArgs, psPort);
    psMetrics = metricsUrl(ps.stdout());
    await eventually('the backlog to drain and the RPO to recover', async () => {
      const a2 = await scrape(agentMetrics);
      const p2 = await scrape(psMetrics);
      const m2 = await scrape(mtMetrics);
      const rpo = sample(m2, 'rebound_master_target_rpo_seconds', machine);
      const done =
        sample(a2, 'rebound_agent_backlog_bytes', machine) === 0 &&
        sample(a2, 'rebound_agent_shipper_connected', machine) === 1 &&
        sample(p2, 'rebound_process_server_backlog_bytes', machine) === 0 &&
        sample(m2, 'rebound_master_target_applied_seq', machine) === lastSeq &&
        rpo !== undefined &&
        rpo < 3;
      return done ? true : undefined;
    });
    const up = JSON.parse((await runCli(['master-target', 'status', '--json', '--data-dir', mtData])).stdout)
      .machines[0];
    assert.deepEqual(up.health, []);
    assert.equal(up.latestAppPoint.seq, lastSeq);
    assert.equal(up.latestAppPoint.tag, 'while-ps-down');
    const bad = await runCli(['master-target', 'status', '--data-dir', mtData, '--machine', 'nope']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /no machine 'nope' has streamed to this master target/);

    const cleared = await eventually('the master target to log that the problem cleared', async () =>
      mtLog().find(
        (l) => l.msg === 'master target: health problem cleared' && l.code === 'rpo-threshold-exceeded',
      ),
    );
    assert.equal(cleared.seq, lastSeq);
    assert.ok(cleared.rpoSeconds < 4);
    await client.disconnect();
  });
});
