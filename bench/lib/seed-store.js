// Owns seeding a controller store with a fleet's worth of rows without the fleet: agents,
// their containers (90 % running, 10 % exited, 1 % then removed), the running containers'
// latest usage and violations over eight rules, all through the store's own write path
// (insertAgent, replaceContainers, usage.applyUsage, removeContainer, insertViolation: the
// calls the agent link makes). Deterministic for a given size (seeded PRNG), so two runs
// and two builds see the same fleet shape. Used by api-at-scale.js, list-plans.js and
// console-scale.ts.
'use strict';
const { randomBytes } = require('node:crypto');
const { containerFacts, pool, prng } = require('./fleet-sim');

const STATES = ['running', 'running', 'running', 'running', 'running', 'running', 'running', 'running', 'running', 'exited'];
const RULES = ['host.privileged', 'caps.sys_admin', 'image.latest', 'mounts.docker_sock', 'net.host', 'user.root', 'secrets.env', 'vuln.critical'];
const SEVERITIES = ['low', 'medium', 'high', 'critical'];

/**
 * Seeds `agents` × `containers` and `violations` into an open, migrated store. Returns the
 * agent ids, a sample of containers (one per agent step) and the time each part took.
 */
async function seedStore(store, { agents: N, containers: M, violations: V, log = () => {} }) {
  const rnd = prng(1);
  const now = Date.now();
  const agents = [];
  const sampleContainers = [];
  const t0 = Date.now();
  const parallel = store.constructor.name === 'PostgresStore' ? 8 : 1;
  await pool(Array.from({ length: N }, (_, i) => i), parallel, async (i) => {
    const id = 'agt_' + randomBytes(10).toString('hex');
    const hostname = `host-${String(i).padStart(5, '0')}`;
    await store.insertAgent({
      id, hostname, status: i % 50 === 0 ? 'offline' : 'online', agentVersion: '0.1.0', host: null,
      certSerial: randomBytes(16).toString('hex'), certNotAfter: new Date(now + 30 * 86_400_000), enrolledAt: new Date(now - 86_400_000),
      lastSeenAt: new Date(now), connectedAt: new Date(now - 3_600_000), revokedAt: null, containerCount: 0,
    });
    const list = Array.from({ length: M }, (_, n) => {
      const c = containerFacts(i, n, rnd);
      c.state = STATES[Math.floor(rnd() * STATES.length)];
      return c;
    });
    await store.replaceContainers(id, list, new Date(now));
    // Live usage of the running containers (the console's cpu/memory sorts and busiest list).
    if (store.usage) {
      const usage = list.filter((c) => c.state === 'running').map((c) => ({
        agentId: id, containerId: c.id, takenAt: new Date(now), receivedAt: new Date(now),
        cpuPercent: Math.round(rnd() * 20000) / 100, cpuPercentOfQuota: null, cpuLimitCores: 0.5,
        memoryBytes: Math.floor(rnd() * 268_435_456), memoryLimitBytes: 268_435_456, pids: 1 + Math.floor(rnd() * 50), pidsLimit: 256,
      }));
      await store.usage.applyUsage(id, usage, []);
    }
    for (const c of list) if (rnd() < 0.01) await store.removeContainer(id, c.id, new Date(now));
    agents[i] = { id, hostname, containers: list.map((c) => ({ id: c.id, name: c.name, imageRef: c.imageRef, project: c.project })) };
    if (i % 200 === 0) log(`seeded ${i + 1}/${N} agents`);
  });
  const containersMs = Date.now() - t0;
  const t1 = Date.now();
  const vr = prng(2);
  await pool(Array.from({ length: V }, (_, k) => k), parallel, async (k) => {
    const a = agents[Math.floor(vr() * N)];
    const c = a.containers[Math.floor(vr() * a.containers.length)];
    await store.insertViolation({
      id: 'v_' + randomBytes(12).toString('hex'), agentId: a.id, containerId: c.id, containerName: c.name, imageRef: c.imageRef, project: c.project,
      ruleId: RULES[Math.floor(vr() * RULES.length)], severity: SEVERITIES[Math.floor(vr() * SEVERITIES.length)], mode: vr() < 0.5 ? 'enforce' : 'monitor',
      source: 'reconcile', message: 'container runs privileged', evidenceJson: JSON.stringify([{ location: 'HostConfig.Privileged', detail: 'true' }]),
      denied: false, action: { type: 'none', result: '', error: '', durationMs: 0 }, at: new Date(now - Math.floor(vr() * 7 * 86_400_000)), policyVersion: 1, exemptedBy: '',
    });
    if (k % 20000 === 0) log(`seeded ${k + 1}/${V} violations`);
  });
  const violationsMs = Date.now() - t1;
  for (let i = 0; i < N; i += Math.max(1, Math.floor(N / 200))) sampleContainers.push({ agentId: agents[i].id, id: agents[i].containers[0].id });
  return { agents: agents.map((a) => a.id), hosts: agents.map((a) => ({ id: a.id, hostname: a.hostname })), sampleContainers, containersMs, violationsMs };
}

module.exports = { STATES, RULES, SEVERITIES, seedStore };
