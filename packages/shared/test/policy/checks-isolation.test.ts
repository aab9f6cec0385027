import t from 'tap';
import { runCases } from './run-cases';
import { effectiveCpus } from '../../src/policy/checks/isolation';
import type { Neighbour } from '../../src/policy/types';

const MiB = 1024 * 1024;

t.test('resource-limits', async (t) => {
  const check = { type: 'resource-limits' };
  const none = { memoryLimitBytes: 0, nanoCpus: 0, cpuQuota: 0, cpuPeriod: 0, pidsLimit: 0 };
  runCases(t, [
    { name: 'all limits set', check, broken: false },
    { name: 'nothing set', check, facts: none, broken: true, evidence: 3, detail: /no memory limit\nno CPU limit\nno pids limit/ },
    { name: 'pids -1 is unlimited', check, facts: { pidsLimit: -1 }, broken: true, evidence: 1, detail: /no pids limit/ },
    { name: 'cpu via quota/period', check, facts: { nanoCpus: 0, cpuQuota: 50000, cpuPeriod: 100000 }, broken: false },
    { name: 'cpu via quota with default period', check, facts: { nanoCpus: 0, cpuQuota: 50000, cpuPeriod: 0 }, broken: false },
    { name: 'cpu shares are not a limit', check, facts: { nanoCpus: 0, cpuShares: 512 }, broken: true, detail: /no CPU limit/ },
    { name: 'memory not required', check: { type: 'resource-limits', requireMemory: false }, facts: { memoryLimitBytes: 0 }, broken: false },
    { name: 'cpu and pids not required', check: { type: 'resource-limits', requireCpu: false, requirePids: false }, facts: { nanoCpus: 0, pidsLimit: 0 }, broken: false },
    { name: 'max memory string ok', check: { type: 'resource-limits', maxMemory: '512m' }, facts: { memoryLimitBytes: 512 * MiB }, broken: false },
    { name: 'max memory exceeded', check: { type: 'resource-limits', maxMemory: '256m' }, facts: { memoryLimitBytes: 512 * MiB }, broken: true, detail: /512 MiB exceeds the maximum 256 MiB/ },
    { name: 'max memory in bytes', check: { type: 'resource-limits', maxMemory: 1024 }, facts: { memoryLimitBytes: 2048 }, broken: true },
    { name: 'max memory GiB spelling', check: { type: 'resource-limits', maxMemory: '1GiB' }, facts: { memoryLimitBytes: 512 * MiB }, broken: false },
    { name: 'max memory and none set', check: { type: 'resource-limits', requireMemory: false, maxMemory: '1g' }, facts: { memoryLimitBytes: 0 }, broken: true, detail: /no memory limit \(max 1 GiB\)/ },
    { name: 'max cpus exceeded (nanoCpus)', check: { type: 'resource-limits', maxCpus: 0.5 }, facts: { nanoCpus: 2e9 }, broken: true, detail: /2 CPUs exceeds the maximum 0.5/ },
    { name: 'max cpus exceeded (quota)', check: { type: 'resource-limits', maxCpus: 1 }, facts: { nanoCpus: 0, cpuQuota: 300000, cpuPeriod: 100000 }, broken: true },
    { name: 'max cpus equal', check: { type: 'resource-limits', maxCpus: 1 }, facts: { nanoCpus: 1e9 }, broken: false },
    { name: 'max pids exceeded', check: { type: 'resource-limits', maxPids: 100 }, facts: { pidsLimit: 256 }, broken: true, detail: /pids limit 256 exceeds the maximum 100/ },
  ]);
  t.equal(effectiveCpus({ nanoCpus: 0, cpuQuota: 150000, cpuPeriod: 100000 }), 1.5);
  t.equal(effectiveCpus({ nanoCpus: 0, cpuQuota: -1, cpuPeriod: 100000 }), 0);
});

t.test('project-network-sharing', async (t) => {
  const check = { type: 'project-network-sharing' };
  const self = { id: 'c0ffee0000000000000000000000000000000000000000000000000000000001', name: '/web', project: 'shop', networks: ['shop_default'] };
  const mk = (id: string, project: string | undefined, networks: string[]): Neighbour => ({ id, name: `/${id}`, project, networks });
  const shop = { labels: { 'bulkhead.project': 'shop' } };
  runCases(t, [
    { name: 'no neighbours', check, facts: shop, broken: false },
    { name: 'same project on the network', check, facts: shop, ctx: { neighbours: [self, mk('db', 'shop', ['shop_default'])] }, broken: false },
    { name: 'other project on another network', check, facts: shop, ctx: { neighbours: [self, mk('pay', 'payments', ['payments_default'])] }, broken: false },
    {
      name: 'other project on the same network',
      check,
      facts: shop,
      ctx: { neighbours: [self, mk('pay', 'payments', ['shop_default', 'payments_default'])] },
      broken: true,
      detail: /shares network shop_default with pay of project payments/,
    },
    { name: 'network matched by id', check, facts: shop, ctx: { neighbours: [mk('pay', 'payments', ['n1'])] }, broken: true },
    { name: 'unlabelled neighbour counts', check, facts: shop, ctx: { neighbours: [mk('x', undefined, ['shop_default'])] }, broken: true, detail: /project \(none\)/ },
    { name: 'unlabelled neighbour ignored', check: { type: 'project-network-sharing', ignoreUnlabelled: true }, facts: shop, ctx: { neighbours: [mk('x', undefined, ['shop_default'])] }, broken: false },
    { name: 'unlabelled container ignored', check: { type: 'project-network-sharing', ignoreUnlabelled: true }, ctx: { neighbours: [mk('x', 'pay', ['shop_default'])] }, broken: false },
    { name: 'project from facts.project', check, facts: { project: 'shop' }, ctx: { neighbours: [mk('db', 'shop', ['shop_default'])] }, broken: false },
    {
      name: 'default bridge is ignored (own rule)',
      check,
      facts: { ...shop, networks: [{ name: 'bridge', networkId: 'b', ipAddress: '' }] },
      ctx: { neighbours: [mk('pay', 'payments', ['bridge'])] },
      broken: false,
    },
    {
      name: 'ignored networks param',
      check: { type: 'project-network-sharing', ignoreNetworks: ['shop_default'] },
      facts: shop,
      ctx: { neighbours: [mk('pay', 'payments', ['shop_default'])] },
      broken: false,
    },
    {
      name: 'network namespace of another project',
      check,
      facts: { ...shop, networkMode: 'container:pay', networks: [] },
      ctx: { neighbours: [mk('pay', 'payments', ['payments_default'])] },
      broken: true,
      detail: /network namespace of pay/,
    },
    {
      name: 'many sharers are summarised',
      check,
      facts: shop,
      ctx: { neighbours: Array.from({ length: 15 }, (_, i) => mk(`p${i}`, 'payments', ['shop_default'])) },
      broken: true,
      evidence: 11,
      detail: /and 5 more/,
    },
  ]);
});

t.test('default-bridge', async (t) => {
  const check = { type: 'default-bridge' };
  runCases(t, [
    { name: 'user-defined network', check, broken: false },
    { name: 'bridge mode', check, facts: { networkMode: 'bridge', networks: [{ name: 'bridge', networkId: 'x', ipAddress: '' }] }, broken: true, detail: /default bridge/ },
    { name: 'default mode', check, facts: { networkMode: 'default', networks: [] }, broken: true },
    { name: 'attached to bridge as a second network', check, facts: { networks: [{ name: 'shop_default', networkId: 'n1', ipAddress: '' }, { name: 'bridge', networkId: 'b', ipAddress: '' }] }, broken: true },
    { name: 'no mode and no network (create without --network)', check, facts: { networkMode: '', networks: [] }, broken: true },
    { name: 'none', check, facts: { networkMode: 'none', networks: [] }, broken: false },
    { name: 'host (own rule)', check, facts: { networkMode: 'host', networks: [] }, broken: false },
  ]);
});
