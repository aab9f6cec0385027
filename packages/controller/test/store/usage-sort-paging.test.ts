// The usage sorts (sort=cpu|memory) under filters, page by page from every position, against
// a reference sorted here row by row: the latest reading (-1 without one), then agent, name,
// id. The store reads such a page three ways — the usage index's walk, the measured part found
// from the filter's matches when few measured containers pass it (usageWalkIsSparse:
// state=exited, one agent on SQLite), or one sorted statement with an offset — and a walk may
// switch between them page to page, so every cursor position and several limits are asked.
// SQLite here; PostgreSQL in usage-sort-paging.postgres.test.ts.
import t from 'tap';
import type { ContainerQuery, ContainerRecord } from '../../src/store/store';
import type { ContainerUsageRecord } from '../../src/store/usage-store';
import { agent, facts, hexId } from './fixtures/records';
import { openTestStore } from './fixtures/backend';

const T0 = new Date('2026-01-01T00:00:00Z');
const STATES = ['running', 'running', 'exited', 'created'];
// Letters after one prefix: the same order under SQLite's binary collation and PostgreSQL's.
const NAMES = ['/w-a', '/w-b', '/w-c', '/w-d', '/w-e'];

t.test('usage sorts: every page from every cursor equals the reference, whichever read the store picks', async (t) => {
  const store = await openTestStore(t);
  type Row = { agentId: string; id: string; name: string; state: string; project: string; tier: string; cpu: number; mem: number; removed: boolean };
  const rows: Row[] = [];
  for (let a = 0; a < 3; a++) {
    const agentId = `agt_u${a}`;
    await store.insertAgent(agent(agentId));
    const list = Array.from({ length: 16 }, (_, n) =>
      facts({ id: hexId(`${agentId}-${n}`), name: NAMES[n % NAMES.length]!, state: STATES[(n + a) % STATES.length]!, project: n % 3 === 0 ? 'payments' : '', labels: { tier: n % 2 === 0 ? 'front' : 'back' } }),
    );
    await store.replaceContainers(agentId, list, T0);
    const usage: ContainerUsageRecord[] = [];
    for (const [n, f] of list.entries()) {
      // Most running containers have a reading, a few exited ones too (a reading taken
      // before they stopped); equal values across agents and names: ties.
      const measured = f.state === 'running' ? n % 5 !== 0 : f.state === 'exited' && n % 3 === 0;
      const cpu = measured ? (n % 4) + 0.5 : -1;
      const mem = measured ? (n % 3) * 1_048_576 : -1;
      rows.push({ agentId, id: f.id, name: f.name, state: f.state, project: f.project, tier: f.labels.tier!, cpu, mem, removed: false });
      if (measured) usage.push({ agentId, containerId: f.id, takenAt: T0, receivedAt: T0, cpuPercent: cpu, cpuPercentOfQuota: null, cpuLimitCores: 0, memoryBytes: mem, memoryLimitBytes: 0, pids: 1, pidsLimit: 0 });
    }
    await store.usage!.applyUsage(agentId, usage, []);
  }
  // A removed container keeps its reading row; the list leaves it out unless asked.
  const gone = rows.find((r) => r.state === 'exited' && r.cpu >= 0)!;
  await store.removeContainer(gone.agentId, gone.id, T0);
  gone.removed = true;

  const str = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  const cases: Array<[string, ContainerQuery, (r: Row) => boolean]> = [
    ['state=exited', { state: 'exited' }, (r) => r.state === 'exited' && !r.removed],
    ['state=exited, removed too', { state: 'exited', includeRemoved: true }, (r) => r.state === 'exited'],
    ['state=created (no reading at all)', { state: 'created' }, (r) => r.state === 'created' && !r.removed],
    ['agent=agt_u1', { agentId: 'agt_u1' }, (r) => r.agentId === 'agt_u1' && !r.removed],
    ['project=payments', { project: 'payments' }, (r) => r.project === 'payments' && !r.removed],
    ['state=exited&label=tier=back', { state: 'exited', labels: ['tier=back'] }, (r) => r.state === 'exited' && r.tier === 'back' && !r.removed],
    ['no filter', {}, (r) => !r.removed],
  ];
  const failures: string[] = [];
  let pages = 0;
  let fewMeasured = 0;
  for (const [what, q, match] of cases) {
    const matches = rows.filter(match);
    t.ok(matches.length >= 4, `${what}: matches several rows (${matches.length})`);
    for (const field of ['cpu', 'memory'] as const) {
      const v = (r: Row) => (field === 'cpu' ? r.cpu : r.mem);
      for (const desc of [true, false]) {
        const asc = [...matches].sort((a, b) => v(a) - v(b) || str(a.agentId, b.agentId) || str(a.name, b.name) || str(a.id, b.id));
        const want = desc ? asc.reverse() : asc;
        const k = (r: { agentId: string; id: string }) => `${r.agentId}/${r.id}`;
        const all = await store.listContainers({ ...q, sort: { field, desc } });
        if (JSON.stringify(all.map(k)) !== JSON.stringify(want.map(k))) failures.push(`${what} ${field} desc=${desc}: no limit`);
        for (let i = -1; i < want.length; i++) {
          const p = want[i];
          const after = p && { agentId: p.agentId, name: p.name, id: p.id, sortValue: v(p) };
          for (const limit of [1, 2, 3, 5, 1000]) {
            const expect = want.slice(i + 1, i + 1 + limit);
            const page: ContainerRecord[] = await store.listContainers({ ...q, sort: { field, desc }, limit, after });
            pages++;
            const measuredLeft = want.slice(i + 1).filter((r) => v(r) >= 0).length;
            if (desc && measuredLeft > 0 && measuredLeft < limit && expect.some((r) => v(r) < 0)) fewMeasured++;
            const got = page.map((r) => `${k(r)}=${Number(r.sortValue)}`);
            const exp = expect.map((r) => `${k(r)}=${v(r)}`);
            if (JSON.stringify(got) !== JSON.stringify(exp)) failures.push(`${what} ${field} desc=${desc} after #${i} limit ${limit}: got ${JSON.stringify(got)}, want ${JSON.stringify(exp)}`);
          }
          // An offset page (one sorted statement) from the first row.
          if (i === -1) {
            const off = await store.listContainers({ ...q, sort: { field, desc }, limit: 3, offset: 2 });
            if (JSON.stringify(off.map(k)) !== JSON.stringify(want.slice(2, 5).map(k))) failures.push(`${what} ${field} desc=${desc}: offset 2`);
          }
        }
      }
    }
  }
  t.same(failures, [], `${pages} pages (${cases.length} filters × cpu, memory × both directions × every cursor × limits 1, 2, 3, 5, 1000) equal the reference`);
  t.ok(fewMeasured > 20, `pages that begin with fewer measured matches than the page and end in unmeasured ones were asked (${fewMeasured})`);
});
