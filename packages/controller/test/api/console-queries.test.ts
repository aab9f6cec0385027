// What the console's views ask of the API beyond the plain lists, through the real HTTPS API
// on a real store (SQLite here, PostgreSQL in console-queries.postgres.test.ts):
// GET /v1/containers' project, "breaks rule X" (rule), free-text (q) filters and sort orders,
// each walked page by page with nextCursor and compared with the same rows sorted here;
// GET /v1/summary's counts against the seeded rows, its hosts' CIS scores and lockdown
// findings (latest report per host, worst first, revoked agents left out); and project scope
// on both: a key limited to one project never sees, nor counts, another project's rows, and
// gets no host section (host audits are fleet-wide).
import t from 'tap';
import type { ViolationRecord } from '../../src/store/store';
import type { ContainerUsageRecord } from '../../src/store/usage-store';
import type { HostAuditSummary } from '../../src/host-audit/host-audit-store';
import { agent, facts, hexId } from '../store/fixtures/records';
import { generateApiKey } from '../../src/api/api-keys';
import { bearer, get, startApi, type RunningApi } from './fixtures/api-server';

const T0 = new Date('2026-01-01T00:00:00Z');
const NOW = Date.now();
const IMAGES = ['nginx:1.27', 'redis:7.2', 'Registry.example.com/shop/REDIS-cache:1', 'busybox:1'];
const PROJECTS = ['payments', 'search', ''];
const STATES = ['running', 'running', 'exited', 'paused'];

interface Page<T> { items: T[]; nextCursor: string | null }
type C = { agentId: string; id: string; name: string; state: string; imageRef: string; facts: { project: string; labels: Record<string, string> }; usage: { cpuPercent: number; memoryBytes: number } | null };

async function json<T>(api: RunningApi, path: string, key = api.apiKey): Promise<{ status: number; body: T }> {
  const r = await get(api, path, bearer(key));
  return { status: r.status, body: r.json as T };
}

async function walk<T>(t: tap.Test, api: RunningApi, path: string, key = api.apiKey): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 500; i++) {
    const sep = path.includes('?') ? '&' : '?';
    const r: { status: number; body: Page<T> } = await json<Page<T>>(api, cursor === null ? path : `${path}${sep}cursor=${encodeURIComponent(cursor)}`, key);
    if (r.status !== 200) {
      t.fail(`${path}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
      return out;
    }
    out.push(...r.body.items);
    cursor = r.body.nextCursor;
    if (cursor === null) return out;
  }
  t.fail('more than 500 pages');
  return out;
}

const key = (c: { agentId: string; id: string }) => `${c.agentId}/${c.id}`;
const violation = (i: number, over: Partial<ViolationRecord>): ViolationRecord => ({
  id: `v_${String(i).padStart(4, '0')}`, agentId: 'agt_c0', containerId: hexId('x'), containerName: '/c', imageRef: 'nginx:1', project: '',
  ruleId: 'r', severity: 'high', mode: 'enforce', source: 'reconcile', message: 'm', evidenceJson: '[]', denied: false,
  action: { type: '', result: '', error: '', durationMs: 0 }, at: new Date(NOW - 3_600_000), policyVersion: 1, exemptedBy: '', ...over,
});

t.test('console queries', async (t) => {
  const api = await startApi();
  t.teardown(() => api.close());
  const scoped = generateApiKey('payments-only', 'viewer', { projects: ['payments'] });
  await api.store.insertApiKey(scoped.record);

  // 3 agents × 24 containers; repeated names (ties broken by agent and id), several
  // projects, states and images, and usage on most running ones (equal values: ties).
  const seeded: Array<{ agentId: string; id: string; name: string; project: string; state: string; imageRef: string; cpu: number; mem: number }> = [];
  for (let a = 0; a < 3; a++) {
    const agentId = `agt_c${a}`;
    await api.store.insertAgent(agent(agentId, { hostname: `h${a}`, status: a === 2 ? 'offline' : 'online', agentVersion: a === 0 ? '1.1.0' : '1.0.0', certNotAfter: new Date(NOW + (a === 1 ? 86_400_000 : 90 * 86_400_000)) }));
    const list = Array.from({ length: 24 }, (_, n) => {
      const project = PROJECTS[(n + a) % 3]!;
      return facts({
        id: hexId(`${agentId}-${n}`), name: `/svc-${n % 8}`, imageRef: IMAGES[n % IMAGES.length]!, state: STATES[n % STATES.length]!,
        labels: { tier: n % 2 === 0 ? 'front' : 'back', ...(project ? { 'bulkhead.project': project } : {}) }, project,
      });
    });
    await api.store.replaceContainers(agentId, list, T0);
    const usage: ContainerUsageRecord[] = [];
    for (const [n, f] of list.entries()) {
      const cpu = f.state === 'running' && n % 5 !== 0 ? (n * 7 + a * 3) % 40 : -1; // -1: no usage row
      const mem = cpu < 0 ? -1 : ((n * 13) % 9) * 1_048_576;
      seeded.push({ agentId, id: f.id, name: f.name, project: f.project, state: f.state, imageRef: f.imageRef, cpu, mem });
      if (cpu < 0) continue;
      usage.push({ agentId, containerId: f.id, takenAt: new Date(NOW), receivedAt: new Date(NOW), cpuPercent: cpu + 0.25, cpuPercentOfQuota: null, cpuLimitCores: 0, memoryBytes: mem, memoryLimitBytes: 0, pids: 1, pidsLimit: 0 });
    }
    await api.store.usage!.applyUsage(agentId, usage, []);
  }
  const cpuOf = (c: C) => c.usage?.cpuPercent ?? -1;
  const memOf = (c: C) => c.usage?.memoryBytes ?? -1;
  // Violations: rule "no-root" open on three containers, acknowledged on one, exempted on one.
  const target = (a: number, n: number) => ({ agentId: `agt_c${a}`, containerId: hexId(`agt_c${a}-${n}`), project: PROJECTS[(n + a) % 3]! });
  let vi = 0;
  for (const [a, n] of [[0, 1], [1, 2], [2, 3]] as const) await api.store.insertViolation(violation(vi++, { ...target(a, n), ruleId: 'no-root', severity: 'critical' }));
  await api.store.insertViolation(violation(vi++, { ...target(0, 4), ruleId: 'no-root', severity: 'critical', ack: null }));
  await api.store.acknowledgeViolation(`v_${String(vi - 1).padStart(4, '0')}`, { at: new Date(NOW), byKeyId: 'ak_x', byName: 'x', comment: 'known' });
  await api.store.insertViolation(violation(vi++, { ...target(0, 5), ruleId: 'no-root', severity: 'critical', exemptedBy: 'ops: migration' }));
  await api.store.insertViolation(violation(vi++, { ...target(1, 6), ruleId: 'limits', severity: 'low', at: new Date(NOW - 3 * 86_400_000) }));

  // Alerts and deliveries for the summary: two alerts in the window (payments, search), one
  // old; an endpoint with a dead delivery per recent alert and one delivered.
  const alerts = api.store.alerts!;
  const alertRec = (id: string, project: string | null, at: number, severity: 'high' | 'low', count: number) => ({
    id, type: 'violation' as const, severity, time: new Date(at), lastSeenAt: new Date(at), count, groupKey: id, agentId: 'agt_c0', host: 'h0',
    containerId: null, containerName: null, image: null, project, ruleId: 'no-root', action: null, result: null, message: 'm',
  });
  const endpoint = {
    id: 'wh_0000000000000001', name: 'ops', url: 'https://127.0.0.1:9/hook', format: 'json' as const, minSeverity: 'low' as const, types: [], projects: [],
    secret: 'whsec_x', previousSecret: null, previousSecretExpiresAt: null, headers: {}, enabled: true, allowUnsafeTarget: true, disabledReason: null, createdAt: new Date(NOW), updatedAt: new Date(NOW),
  };
  await alerts.insertEndpoint(endpoint);
  await alerts.insertEndpoint({ ...endpoint, id: 'wh_0000000000000002', name: 'off', enabled: false });
  const delivery = (id: string, alertId: string, status: 'pending' | 'delivered' | 'dead') => ({
    id, alertId, endpointId: endpoint.id, status, attempts: 1, retryBase: 0, nextAttemptAt: new Date(NOW), createdAt: new Date(NOW), updatedAt: new Date(NOW),
    deliveredAt: status === 'delivered' ? new Date(NOW - 60_000) : null, lastStatusCode: null, lastError: null, deadReason: status === 'dead' ? 'gone' : null,
  });
  // Through the store's own write path (one transaction, as the alerting pipeline writes them).
  await alerts.writeAlerts(async (ctx) => {
    await ctx.insert({ alert: alertRec('alr_1', 'payments', NOW - 60_000, 'high', 3), deliveries: [delivery('msg_1', 'alr_1', 'dead'), delivery('msg_1b', 'alr_1', 'pending')] });
    await ctx.insert({ alert: alertRec('alr_2', 'search', NOW - 120_000, 'low', 1), deliveries: [delivery('msg_2', 'alr_2', 'dead'), delivery('msg_3', 'alr_2', 'delivered')] });
    await ctx.insert({ alert: alertRec('alr_3', null, NOW - 3 * 86_400_000, 'high', 1), deliveries: [] });
  });

  type Summary = {
    agents: { total: number; online: number; offline: number; revoked: number; certExpiringSoon: number; versions: Array<{ key: string; count: number }> };
    containers: { total: number; byState: Array<{ key: string; count: number }> };
    violations: { open: number; openBySeverity: Array<{ key: string; count: number }>; recent: number };
    alerts: { groups: number; occurrences: number; bySeverity: Array<{ key: string; count: number }> };
    webhooks: { endpoints: number; enabled: number; pending: number; dead: number; deliveredRecent: number; failedAttemptsRecent: number };
    busiest: { cpu: Array<{ agentId: string; id: string; project: string; cpuPercent: number; memoryBytes: number }>; memory: Array<{ project: string; memoryBytes: number }> };
    hosts: null | {
      audited: number; notAudited: number; withLockdownFindings: number; lockdownBySeverity: Array<{ key: string; count: number }>; belowFullScore: number;
      worst: Array<{ agentId: string; hostname: string; status: string; score: number; cis: { pass: number; warn: number }; lockdown: Record<string, number>; takenAt: string }>;
    };
  };

  // Host audits through the store's own write path: h0 had a critical finding, fixed in its
  // newer report (only the latest counts); h1 has a high and a medium one; h2 none but the lowest score.
  const audit = async (agentId: string, at: number, score: number, pass: number, warn: number, lock: Partial<Record<'critical' | 'high' | 'medium' | 'low' | 'info', number>>) => {
    const lockdown = { critical: 0, high: 0, medium: 0, low: 0, info: 0, ...lock, total: Object.values(lock).reduce((a, b) => a + b, 0) };
    const summary: HostAuditSummary = {
      score, cis: { checks: pass + warn, score: pass, pass, warn, info: 2, note: 1, percent: score }, lockdown,
      fixes: { applied: 0, failed: 0 }, hygiene: null, newFindings: [], resolvedFindings: [],
    };
    const ok = await api.store.hostAudits!.insertHostAudit({ agentId, takenAt: new Date(at), receivedAt: new Date(at + 1000), summary, cisJson: '{}', lockdownJson: '[]', fixesJson: '[]', hygieneJson: null });
    if (!ok) throw new Error(`host audit ${agentId} ${at} not stored`);
  };
  await audit('agt_c0', NOW - 7_200_000, 50, 5, 5, { critical: 1 });
  await audit('agt_c0', NOW - 3_600_000, 90, 9, 1, {});
  await audit('agt_c1', NOW - 1_800_000, 80, 8, 2, { high: 1, medium: 1 });
  await audit('agt_c2', NOW - 900_000, 60, 6, 4, {});

  const all = (await json<Page<C>>(api, '/v1/containers?limit=1000')).body.items;
  t.equal(all.length, 72, 'every live container');

  t.test('filters: project, rule (open violations only), free text', async (t) => {
    const project = await walk<C>(t, api, '/v1/containers?limit=5&project=payments');
    t.same(project.map(key), all.filter((c) => c.facts.project === 'payments').map(key), 'project=payments');
    t.ok(project.length > 10);
    const rule = await walk<C>(t, api, '/v1/containers?limit=2&rule=no-root');
    t.same(rule.map(key).sort(), [target(0, 1), target(1, 2), target(2, 3)].map((x) => `${x.agentId}/${x.containerId}`).sort(), 'open violations of the rule only: acknowledged and exempted ones left out');
    t.same((await walk<C>(t, api, '/v1/containers?rule=limits')).map(key), [`agt_c1/${hexId('agt_c1-6')}`], 'another rule');
    t.same(await walk<C>(t, api, '/v1/containers?rule=nobody-breaks-this'), []);
    const text = await walk<C>(t, api, '/v1/containers?limit=4&q=REDIS');
    t.same(text.map(key), all.filter((c) => c.imageRef.toLowerCase().includes('redis') || c.name.includes('redis')).map(key), 'q matches the image, case-insensitively');
    const byName = await walk<C>(t, api, '/v1/containers?q=svc-3');
    t.same(byName.map(key), all.filter((c) => c.name === '/svc-3').map(key), 'q matches the name');
    const id = all[7]!.id;
    t.same((await walk<C>(t, api, `/v1/containers?q=${id.slice(0, 10).toUpperCase()}`)).map(key), all.filter((c) => c.id.startsWith(id.slice(0, 10))).map(key), 'q matches an id prefix');
    t.same(await walk<C>(t, api, '/v1/containers?q=%25'), [], 'LIKE wildcards in q are literal');
    const combined = await walk<C>(t, api, '/v1/containers?limit=3&project=search&state=running&q=nginx&sort=-cpu');
    const expect = all.filter((c) => c.facts.project === 'search' && c.state === 'running' && c.imageRef.includes('nginx'));
    t.ok(expect.length >= 2);
    t.same(combined.map(key).sort(), expect.map(key).sort(), 'filters combine with AND under a sort');
  });

  // On PostgreSQL the image substring is first resolved to the stored references it matches
  // (KyselyStore.imageRefsMatching) and the list filtered by those: the rows must be the ones
  // the substring match gives, in every order, across cursors, with other filters and in scope.
  t.test('image filter: every order, cursors, other filters, case, wildcards, scope', async (t) => {
    const cmpStr = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
    const tie = (a: C, b: C) => cmpStr(a.agentId, b.agentId) || cmpStr(a.name, b.name) || cmpStr(a.id, b.id);
    const orders: Record<string, (a: C, b: C) => number> = {
      agent: tie,
      name: (a, b) => cmpStr(a.name, b.name) || tie(a, b),
      state: (a, b) => cmpStr(a.state, b.state) || tie(a, b),
      image: (a, b) => cmpStr(a.imageRef, b.imageRef) || tie(a, b),
      cpu: (a, b) => cpuOf(a) - cpuOf(b) || tie(a, b),
      memory: (a, b) => memOf(a) - memOf(b) || tie(a, b),
    };
    const cases: Array<[string, (c: C) => boolean]> = [
      ['image=redis', (c) => c.imageRef.toLowerCase().includes('redis')],
      ['image=REDIS-c', (c) => c.imageRef.toLowerCase().includes('redis-c')],
      ['image=redis&state=running&label=tier=back', (c) => c.imageRef.toLowerCase().includes('redis') && c.state === 'running' && c.facts.labels.tier === 'back'],
      ['image=shop&project=payments', (c) => c.imageRef.toLowerCase().includes('shop') && c.facts.project === 'payments'],
      ['image=x:1&agent=agt_c1', (c) => c.imageRef.toLowerCase().includes('x:1') && c.agentId === 'agt_c1'],
    ];
    for (const [q, match] of cases) {
      const expect = all.filter(match);
      t.ok(expect.length >= 2, `${q}: matches several rows (${expect.length})`);
      for (const [field, cmp] of Object.entries(orders)) {
        for (const desc of [false, true]) {
          const sort = (desc ? '-' : '') + field;
          const walked = await walk<C>(t, api, `/v1/containers?${q}&sort=${sort}&limit=3`);
          t.same(walked.map(key), [...expect].sort((a, b) => (desc ? -cmp(a, b) : cmp(a, b))).map(key), `${q}&sort=${sort}: every match once, in order, across cursors`);
        }
      }
    }
    t.same(await walk<C>(t, api, '/v1/containers?image=no-such-image'), [], 'no stored reference matches: nothing');
    t.same(await walk<C>(t, api, '/v1/containers?image=%25'), [], 'LIKE wildcards in image are literal (%)');
    t.same(await walk<C>(t, api, '/v1/containers?image=redis_7'), [], 'LIKE wildcards in image are literal (_)');
    const scopedRows = await walk<C>(t, api, '/v1/containers?image=redis&limit=2&sort=-image', scoped.plaintext);
    t.same(scopedRows.map(key).sort(), all.filter((c) => c.imageRef.toLowerCase().includes('redis') && c.facts.project === 'payments').map(key).sort(), 'a payments-only key: its project only');
    t.ok(scopedRows.length > 0);
  });

  t.test('sorts: each order, both directions, walked page by page', async (t) => {
    const cmpStr = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
    const tie = (a: C, b: C) => cmpStr(a.agentId, b.agentId) || cmpStr(a.name, b.name) || cmpStr(a.id, b.id);
    const orders: Record<string, (a: C, b: C) => number> = {
      agent: tie,
      name: (a, b) => cmpStr(a.name, b.name) || tie(a, b),
      state: (a, b) => cmpStr(a.state, b.state) || tie(a, b),
      image: (a, b) => cmpStr(a.imageRef, b.imageRef) || tie(a, b),
      cpu: (a, b) => cpuOf(a) - cpuOf(b) || tie(a, b),
      memory: (a, b) => memOf(a) - memOf(b) || tie(a, b),
    };
    for (const [field, cmp] of Object.entries(orders)) {
      for (const desc of [false, true]) {
        const sort = (desc ? '-' : '') + field;
        const expected = [...all].sort((a, b) => (desc ? -cmp(a, b) : cmp(a, b))).map(key);
        for (const limit of [4, 1000]) { // 4: ties on the sort value straddle page boundaries
          const walked = await walk<C>(t, api, `/v1/containers?sort=${sort}&limit=${limit}`);
          t.same(walked.map(key), expected, `sort=${sort}, limit ${limit}: every row once, in order`);
        }
      }
    }
    const top = (await json<Page<C>>(api, '/v1/containers?sort=-cpu&limit=3')).body.items;
    t.ok(cpuOf(top[0]!) >= cpuOf(top[1]!) && cpuOf(top[0]!) > 30, 'busiest first');
  });

  // The usage sorts read a page two ways (KyselyStore.listContainers): a walk of the usage
  // index when the filter passes enough measured containers, else the matches first, sorted
  // (a filter few or no measured containers pass: exited, one agent, a rule, a rare label;
  // decided per page by a bounded probe, so one walk can switch between them). Either way the
  // same rows in the same order, across cursors.
  t.test('usage sorts under filters: every match once, in order, whichever way a page is read', async (t) => {
    const cmpStr = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
    const tie = (a: C, b: C) => cmpStr(a.agentId, b.agentId) || cmpStr(a.name, b.name) || cmpStr(a.id, b.id);
    const orders: Record<string, (a: C, b: C) => number> = {
      cpu: (a, b) => cpuOf(a) - cpuOf(b) || tie(a, b),
      memory: (a, b) => memOf(a) - memOf(b) || tie(a, b),
    };
    const ruleHits = new Set([target(0, 1), target(1, 2), target(2, 3)].map((x) => `${x.agentId}/${x.containerId}`));
    const cases: Array<[string, (c: C) => boolean]> = [
      ['state=exited', (c) => c.state === 'exited'],
      ['state=running', (c) => c.state === 'running'],
      ['project=payments', (c) => c.facts.project === 'payments'],
      ['label=tier=back', (c) => c.facts.labels.tier === 'back'],
      ['agent=agt_c1', (c) => c.agentId === 'agt_c1'],
      ['rule=no-root', (c) => ruleHits.has(key(c))],
      ['q=svc-3', (c) => c.name === '/svc-3'],
      ['state=running&label=tier=front&project=search', (c) => c.state === 'running' && c.facts.labels.tier === 'front' && c.facts.project === 'search'],
    ];
    for (const [q, match] of cases) {
      const expect = all.filter(match);
      t.ok(expect.length >= 2, `${q}: matches several rows (${expect.length})`);
      for (const [field, cmp] of Object.entries(orders)) {
        for (const desc of [false, true]) {
          const sort = (desc ? '-' : '') + field;
          for (const limit of [1, 2, 5, 1000]) {
            const walked = await walk<C>(t, api, `/v1/containers?${q}&sort=${sort}&limit=${limit}`);
            t.same(walked.map(key), [...expect].sort((a, b) => (desc ? -cmp(a, b) : cmp(a, b))).map(key), `${q}&sort=${sort}&limit=${limit}`);
          }
        }
      }
    }
  });

  t.test('bad sort and cursor of another sort: 400 naming the parameter', async (t) => {
    const bad = await json<{ detail: string }>(api, '/v1/containers?sort=size');
    t.equal(bad.status, 400);
    t.match(bad.body.detail, /sort/);
    const page = await json<Page<C>>(api, '/v1/containers?sort=name&limit=2');
    const other = await json<{ detail: string }>(api, `/v1/containers?sort=-name&limit=2&cursor=${page.body.nextCursor}`);
    t.equal(other.status, 400);
    t.match(other.body.detail, /issued for sort=name, not sort=-name/);
    const plain = await json<{ detail: string }>(api, `/v1/containers?limit=2&cursor=${page.body.nextCursor}`);
    t.equal(plain.status, 400, 'a sorted cursor in the default order');
    const dflt = await json<Page<C>>(api, '/v1/containers?limit=2');
    t.equal((await json(api, `/v1/containers?sort=cpu&limit=2&cursor=${dflt.body.nextCursor}`)).status, 400, 'a default cursor in a sorted list');
  });

  t.test('project scope: a payments-only key sees and counts payments only', async (t) => {
    for (const q of ['', 'sort=-cpu', 'rule=no-root', 'q=svc', 'project=search', 'sort=image&label=tier=front']) {
      const rows = await walk<C>(t, api, `/v1/containers?limit=4&${q}`, scoped.plaintext);
      t.ok(rows.every((c) => c.facts.project === 'payments'), `${q || 'no filter'}: payments rows only (${rows.length})`);
    }
    t.same(await walk<C>(t, api, '/v1/containers?project=search', scoped.plaintext), [], 'asking for another project gives nothing');
    const rule = await walk<C>(t, api, '/v1/containers?rule=no-root', scoped.plaintext);
    t.same(rule.map(key), [target(0, 1), target(1, 2), target(2, 3)].filter((x) => x.project === 'payments').map((x) => `${x.agentId}/${x.containerId}`));
    const s = (await json<Summary>(api, '/v1/summary?top=20', scoped.plaintext)).body;
    const mine = seeded.filter((c) => c.project === 'payments');
    t.equal(s.containers.total, mine.length, 'containers counted in scope');
    t.ok(s.busiest.cpu.length > 0 && s.busiest.cpu.every((c) => c.project === 'payments'), 'busiest in scope');
    t.ok(s.busiest.memory.every((c) => c.project === 'payments'));
    t.equal(s.violations.open, [target(0, 1), target(1, 2), target(2, 3)].filter((x) => x.project === 'payments').length, 'open violations in scope');
    t.equal(s.alerts.groups, 1, 'only the payments alert');
    t.equal(s.webhooks.dead, 1, "only the payments alert's dead delivery");
    t.equal(s.agents.total, 3, 'agents are fleet-level, as GET /v1/agents');
    t.equal(s.hosts, null, 'host audits are fleet-wide: no host section for a project-scoped key');
  });

  t.test('summary: every count from the seeded rows, in one request', async (t) => {
    const r = await json<Summary>(api, '/v1/summary');
    t.equal(r.status, 200);
    const s = r.body;
    t.same(
      { total: s.agents.total, online: s.agents.online, offline: s.agents.offline, revoked: s.agents.revoked, certExpiringSoon: s.agents.certExpiringSoon },
      { total: 3, online: 2, offline: 1, revoked: 0, certExpiringSoon: 1 },
    );
    t.same(s.agents.versions, [{ key: '1.0.0', count: 2 }, { key: '1.1.0', count: 1 }]);
    t.equal(s.containers.total, 72);
    t.same(s.containers.byState, [{ key: 'running', count: 36 }, { key: 'exited', count: 18 }, { key: 'paused', count: 18 }]);
    t.equal(s.violations.open, 4, 'three open no-root + one low limits; acknowledged and exempted not open');
    t.same(s.violations.openBySeverity, [{ key: 'critical', count: 3 }, { key: 'low', count: 1 }]);
    t.equal(s.violations.recent, 5, 'reported in the last 24 h (the limits one is 3 days old)');
    t.equal(s.alerts.groups, 2);
    t.equal(s.alerts.occurrences, 4);
    t.same(s.alerts.bySeverity, [{ key: 'high', count: 1 }, { key: 'low', count: 1 }]);
    t.same(s.webhooks, { endpoints: 2, enabled: 1, pending: 1, dead: 2, deliveredRecent: 1, failedAttemptsRecent: 0 });
    t.equal(s.busiest.cpu.length, 5, 'top 5 by default');
    const cpus = seeded.filter((c) => c.cpu >= 0).map((c) => c.cpu + 0.25).sort((a, b) => b - a);
    t.same(s.busiest.cpu.map((c) => c.cpuPercent), cpus.slice(0, 5), 'the five highest CPU readings, highest first');
    const mems = seeded.filter((c) => c.mem >= 0).map((c) => c.mem).sort((a, b) => b - a);
    t.same(s.busiest.memory.map((c) => c.memoryBytes), mems.slice(0, 5));
    t.equal((await json(api, '/v1/summary?top=21')).status, 400, 'top is bounded');
    t.equal((await json(api, '/v1/summary?days=1')).status, 400, 'unknown parameters refused');
    t.equal((await get(api, '/v1/summary')).status, 401, 'needs a credential');
  });

  // Last: it revokes an agent, which the counts above do not expect.
  t.test("summary: hosts' CIS score and open lockdown findings, worst first", async (t) => {
    const h = (await json<Summary>(api, '/v1/summary')).body.hosts!;
    t.same(
      { audited: h.audited, notAudited: h.notAudited, withLockdownFindings: h.withLockdownFindings, lockdownBySeverity: h.lockdownBySeverity, belowFullScore: h.belowFullScore },
      { audited: 3, notAudited: 0, withLockdownFindings: 1, lockdownBySeverity: [{ key: 'high', count: 1 }, { key: 'medium', count: 1 }], belowFullScore: 3 },
      'counted over each host\'s latest report (h0\'s older critical finding is gone)',
    );
    t.same(h.worst.map((x) => [x.hostname, x.score, x.lockdown.total]), [['h1', 80, 2], ['h2', 60, 0], ['h0', 90, 0]], 'a host with a high finding first, then the lowest score');
    t.match(h.worst[0], { agentId: 'agt_c1', status: 'online', cis: { pass: 8, warn: 2 }, lockdown: { high: 1, medium: 1, critical: 0 }, takenAt: new Date(NOW - 1_800_000).toISOString() });
    t.same((await json<Summary>(api, '/v1/summary?hosts=1')).body.hosts!.worst.map((x) => x.hostname), ['h1'], 'bounded by ?hosts');
    const counts = (await json<Summary>(api, '/v1/summary?hosts=0')).body.hosts!;
    t.same([counts.worst, counts.audited], [[], 3], 'hosts=0: the counts only');
    t.equal((await json(api, '/v1/summary?hosts=51')).status, 400, 'hosts is bounded');

    // A revoked agent's audits no longer count; an agent that never sent one is "not audited".
    await api.store.insertAgent(agent('agt_c3', { hostname: 'h3', status: 'revoked' }));
    await audit('agt_c3', NOW - 60_000, 10, 1, 9, { critical: 3 });
    await api.store.insertAgent(agent('agt_c4', { hostname: 'h4' }));
    const after = (await json<Summary>(api, '/v1/summary')).body.hosts!;
    t.same([after.audited, after.notAudited, after.worst[0]!.hostname], [3, 1, 'h1'], 'the revoked host left out; the new one not audited yet');
  });
});
