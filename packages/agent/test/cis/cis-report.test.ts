// The CIS report's contract: every check docker-bench-security 1.6.0
// automates, same ids and order, log.json's shape, the score, selection, and
// the human form.
import t, { type Test } from 'tap';
import { assemble, CIS_CHECK_IDS, CIS_SECTIONS, runCisReport } from '../../src/cis/cis-report';
import { formatCisText } from '../../src/cis/cis-format';
import { toAuditReportMessage } from '../../src/cis/audit-message';
import type { CisReport, CisSection } from '../../src/cis/cis-types';
import { HostTree } from '../lockdown/fixtures/host-tree';
import { fakeEngine } from './fixtures/fake-engine';

const range = (prefix: string, from: number, to: number): string[] => Array.from({ length: to - from + 1 }, (_, i) => `${prefix}${from + i}`);

/** The ids docker-bench-security 1.6.0 reports, in its order (117 checks). */
const DOCKER_BENCH_1_6_0_IDS = [
  ...range('1.1.', 1, 18), '1.2.1', '1.2.2',
  ...range('2.', 1, 18),
  ...range('3.', 1, 24),
  ...range('4.', 1, 12),
  ...range('5.', 1, 32),
  '6.1', '6.2',
  ...range('7.', 1, 9),
];

const NOW = new Date('2026-11-28T12:00:00Z');

t.test('the catalogue: every docker-bench-security 1.6.0 check, same ids, same order', async (t) => {
  t.same(CIS_CHECK_IDS, DOCKER_BENCH_1_6_0_IDS);
  t.equal(CIS_CHECK_IDS.length, 117);
  t.same(CIS_SECTIONS.map((s) => [s.id, s.desc]), [
    ['1', 'Host Configuration'], ['2', 'Docker daemon configuration'], ['3', 'Docker daemon configuration files'],
    ['4', 'Container Images and Build File'], ['5', 'Container Runtime'], ['6', 'Docker Security Operations'], ['7', 'Docker Swarm Configuration'],
  ]);
  for (const s of CIS_SECTIONS) {
    for (const c of s.checks) {
      t.match(c.desc, /\((Automated|Manual|Scored)\)$/, `${c.id} says how it is assessed`);
      // 5.23 says Automated, but needs the daemon's audit log; docker-bench reports it as NOTE, unscored.
      t.equal(c.scored, !c.desc.endsWith('(Manual)') && c.id !== '5.23', `${c.id}: Manual checks are not scored`);
      t.ok(c.remediation.length > 10 && c.impact.length > 0, `${c.id} has remediation and impact`);
      t.ok(c.id.startsWith(`${s.id}.`), `${c.id} is in section ${s.id}`);
    }
  }
});

const ALLOWED_RESULT_KEYS = new Set(['id', 'desc', 'result', 'details', 'items', 'remediation', 'remediation-impact', 'scored']);

function checkShape(t: Test, r: CisReport): void {
  t.same(Object.keys(r).slice(0, 6), ['dockerbenchsecurity', 'start', 'tests', 'checks', 'score', 'end'], "log.json's keys, in its order");
  t.equal(r.dockerbenchsecurity, '1.6.0');
  t.ok(Number.isInteger(r.start) && Number.isInteger(r.end) && r.end >= r.start, 'unix seconds');
  t.equal(r.checks, r.tests.reduce((n, s) => n + s.results.length, 0));
  for (const s of r.tests) {
    t.same(Object.keys(s), ['id', 'desc', 'results']);
    for (const x of s.results) {
      for (const k of Object.keys(x)) t.ok(ALLOWED_RESULT_KEYS.has(k), `${x.id}: key ${k}`);
      t.ok(['PASS', 'WARN', 'INFO', 'NOTE'].includes(x.result));
      if (x.result === 'PASS') t.notOk('remediation' in x, `${x.id}: no remediation on PASS`);
      else t.ok(x.remediation && x['remediation-impact'] !== undefined, `${x.id}: remediation on ${x.result}`);
      if (x.items) t.ok(x.items.length > 0 && x.details, `${x.id}: items come with details`);
    }
  }
}

t.test('an empty host and engine: every check reports, log.json shape, JSON round trip', async (t) => {
  const h = new HostTree();
  t.teardown(() => h.close());
  const report = await runCisReport({ docker: fakeEngine({}), hostRoot: h.root, now: () => NOW, env: {} });
  checkShape(t, report);
  t.same(report.tests.flatMap((s) => s.results.map((r) => r.id)), DOCKER_BENCH_1_6_0_IDS);
  t.same(JSON.parse(JSON.stringify(report)), report);
  t.equal(report.start, Math.floor(NOW.getTime() / 1000));
  t.equal(report.benchmark, 'CIS Docker Benchmark 1.6.0');
  t.match(report.generator, /^bulkhead-agent /);
  const byId = new Map(report.tests.flatMap((s) => s.results).map((r) => [r.id, r]));
  t.same(byId.get('5.5'), {
    id: '5.5', desc: 'Ensure that privileged containers are not used (Automated)', result: 'INFO', details: 'No containers running',
    remediation: 'You should not run containers with the --privileged flag.',
    'remediation-impact': 'If you start a container without the --privileged flag, it will not have excessive default capabilities.', scored: true,
  });
  t.equal(byId.get('5.1')!.result, 'PASS', 'swarm is checked without containers');
  t.equal(byId.get('7.1')!.details, 'Swarm mode not enabled');
});

t.test('score: +1 PASS / −1 WARN for scored checks only; percent', async (t) => {
  const tests: CisSection[] = [
    { id: '9', desc: 'x', results: [
      { id: '9.1', desc: 'a', result: 'PASS', scored: true },
      { id: '9.2', desc: 'b', result: 'PASS', scored: true },
      { id: '9.3', desc: 'c', result: 'PASS', scored: true },
      { id: '9.4', desc: 'd', result: 'WARN', scored: true },
      { id: '9.5', desc: 'e', result: 'WARN', scored: false },
      { id: '9.6', desc: 'f', result: 'PASS', scored: false },
      { id: '9.7', desc: 'g', result: 'INFO', scored: true },
      { id: '9.8', desc: 'h', result: 'NOTE', scored: false },
    ] },
  ];
  const r = assemble(tests, NOW, new Date(NOW.getTime() + 2500));
  t.equal(r.score, 2);
  t.equal(r.checks, 8);
  t.same(r.summary, { pass: 4, warn: 2, info: 1, note: 1, percent: 75 });
  t.equal(r.end - r.start, 2);
  t.equal(assemble([], NOW, NOW).summary.percent, 100);
});

t.test('only / exclude select checks and sections; a failing check becomes INFO', async (t) => {
  const h = new HostTree();
  t.teardown(() => h.close());
  const docker = fakeEngine({});
  const r = await runCisReport({ docker, hostRoot: h.root, only: ['2', '5.4', '1.1'], exclude: ['2.1', '1.1.5'], now: () => NOW });
  const ids = r.tests.flatMap((s) => s.results.map((x) => x.id));
  t.same(ids, [...range('1.1.', 1, 4), ...range('1.1.', 6, 18), ...range('2.', 2, 18), '5.4']);
  t.same(r.tests.map((s) => s.id), ['1', '2', '5'], 'empty sections are left out');
  const broken = { ...docker, listNetworks: async () => { throw new Error('boom'); } };
  const s = await runCisReport({ docker: broken, hostRoot: h.root, only: ['7.3'], now: () => NOW });
  t.equal(s.tests[0]!.results[0]!.result, 'PASS', 'not in a swarm: networks are not even listed');
  const swarm = fakeEngine({ info: { Swarm: { LocalNodeState: 'active', ControlAvailable: true, Managers: 1 } } });
  const u = await runCisReport({ docker: { ...swarm, listNetworks: async () => { throw new Error('boom'); } }, hostRoot: h.root, only: ['7.3'], now: () => NOW });
  t.same(u.tests[0]!.results[0]!.result, 'INFO');
  t.match(u.tests[0]!.results[0]!.details, /Check could not run: boom/);
});

t.test('docker info failing is an error (the report would be meaningless)', async (t) => {
  const h = new HostTree();
  t.teardown(() => h.close());
  const docker = { ...fakeEngine({}), info: async () => { throw new Error('connect ENOENT'); } };
  await t.rejects(runCisReport({ docker, hostRoot: h.root }), /docker info failed: connect ENOENT/);
});

t.test('human output: sections, results, items, details, remediation, colours, score', async (t) => {
  const tests: CisSection[] = [
    { id: '5', desc: 'Container Runtime', results: [
      { id: '5.5', desc: 'Ensure that privileged containers are not used (Automated)', result: 'WARN', details: 'Containers running in privileged mode: a b', items: ['a', 'b'], remediation: 'Do not.', 'remediation-impact': 'None.', scored: true },
      { id: '5.1', desc: 'Swarm (Automated)', result: 'PASS', scored: true },
      { id: '5.28', desc: 'latest (Manual)', result: 'INFO', details: 'Something to review', scored: false },
      { id: '5.9', desc: 'ports (Manual)', result: 'INFO', details: 'Port in use: ' + 'x '.repeat(12), items: range('c', 1, 12), scored: false },
    ] },
  ];
  const r = assemble(tests, NOW, NOW);
  const text = formatCisText(r);
  t.match(text, /^# CIS Docker Benchmark 1\.6\.0 — bulkhead-agent/);
  t.match(text, /\[INFO\] 5 - Container Runtime\n\[WARN\] 5\.5 - Ensure that privileged containers are not used \(Automated\)\n {7}\* Containers running in privileged mode:\n {9}- a\n {9}- b\n/);
  t.match(text, /\[INFO\] 5\.28 - latest \(Manual\)\n {7}\* Something to review\n/);
  t.match(text, / {9}… and 2 more\n/);
  t.match(text, /\[INFO\] Checks: 4\n\[INFO\] Score: 0 {2}\(PASS 1, WARN 1, INFO 2, NOTE 0; 50 % of scored checks pass\)\n$/);
  t.notMatch(text, /Remediation/);
  t.match(formatCisText(r, { remediation: true }), / {7}> Remediation: Do not\.\n/);
  t.match(formatCisText(r, { color: true }), /\x1b\[1;31m\[WARN\]\x1b\[0m 5\.5/);
  const warnOnly = formatCisText(r, { show: ['WARN'] });
  t.notMatch(warnOnly, /5\.1 - /);
  t.match(warnOnly, /5\.5 - /);
  t.notMatch(formatCisText(r, { show: ['NOTE'] }), /Container Runtime/, 'a section with nothing shown is left out');
});

t.test('the wire message: JSON texts and the percentage score', async (t) => {
  const cis = assemble([{ id: '2', desc: 'd', results: [{ id: '2.2', desc: 'x', result: 'PASS', scored: true }, { id: '2.3', desc: 'y', result: 'WARN', scored: true }] }], NOW, NOW);
  const lockdown = [{ id: 'daemon.icc', severity: 'medium' as const, title: 't', detail: 'd', remediation: 'r', fixable: false }];
  const m = toAuditReportMessage({ cis, lockdown, takenAtMs: 42 });
  t.equal(m.takenAtMs, 42);
  t.equal(m.score, 50);
  t.same(JSON.parse(m.cisJson!), cis);
  t.same(JSON.parse(m.lockdownJson!), lockdown);
  t.equal(m.fixesJson, '[]');
});
