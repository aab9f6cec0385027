// `bulkhead-agent audit`: options reach the report, text and JSON output,
// --fail-on levels and exit code 4, engine errors.
import t from 'tap';
import { Command } from 'commander';
import { isBulkheadError } from '@bulkhead/shared';
import { AuditFailOnError, AUDIT_FAIL_EXIT_CODE, failingResults, registerAuditCommand, type AuditRunner } from '../../src/cli/audit-command';
import { assemble, type CisReportOptions } from '../../src/cis/cis-report';
import type { CisReport, CisResultKind } from '../../src/cis/cis-types';

const NOW = new Date('2026-11-28T12:00:00Z');

function reportWith(kinds: CisResultKind[]): CisReport {
  return assemble([{ id: '5', desc: 'Container Runtime', results: kinds.map((k, i) => ({ id: `5.${i + 1}`, desc: `check ${i + 1} (Automated)`, result: k, scored: true })) }], NOW, NOW);
}

function cli(report: CisReport | Error): { program: Command; out: string[]; err: string[]; seen: CisReportOptions[] } {
  const out: string[] = [];
  const err: string[] = [];
  const seen: CisReportOptions[] = [];
  const runner: AuditRunner = async (o) => {
    seen.push(o);
    if (report instanceof Error) throw report;
    return report;
  };
  const program = new Command('bulkhead-agent').exitOverride().configureOutput({ writeOut: (s) => out.push(s), writeErr: (s) => err.push(s) });
  registerAuditCommand(program, { out: (s) => out.push(s), err: (s) => err.push(s) }, runner);
  return { program, out, err, seen };
}

t.test('text by default; options reach the report', async (t) => {
  const { program, out, seen } = cli(reportWith(['PASS', 'WARN']));
  await program.parseAsync([
    'audit', '--docker-host', 'unix:///tmp/x/docker.sock', '--host-root', '/host', '--proc-root', '/host/proc', '--containerd-socket', '/run/c.sock',
    '--daemon-json', '/etc/d.json', '--only', '2,5.4', '--only', '1', '--exclude', '2.1', '--trusted-users', 'alice, bob',
  ], { from: 'user' });
  t.match(out.join(''), /\[WARN\] 5\.2 - check 2 \(Automated\)/);
  const o = seen[0]!;
  t.same({ ...o, docker: undefined }, {
    docker: undefined, hostRoot: '/host', procRoot: '/host/proc', dockerSocketPath: '/tmp/x/docker.sock', containerdSocketPath: '/run/c.sock',
    daemonJsonPath: '/etc/d.json', only: ['2', '5.4', '1'], exclude: ['2.1'], trustedUsers: ['alice', 'bob'],
  });
  t.ok(o.docker, 'a Docker client for the given host');
});

t.test('--json prints log.json; --fail-on thresholds (WARN > INFO > NOTE; PASS never)', async (t) => {
  const { program, out } = cli(reportWith(['PASS', 'NOTE']));
  await program.parseAsync(['audit', '--json', '--fail-on', 'warn', '--docker-host', 'tcp://127.0.0.1:2375'], { from: 'user' });
  const parsed = JSON.parse(out.join('')) as CisReport;
  t.equal(parsed.dockerbenchsecurity, '1.6.0');
  t.equal(parsed.checks, 2);
  const c = cli(reportWith(['PASS', 'NOTE', 'INFO']));
  const e = (await c.program.parseAsync(['audit', '--fail-on', 'info'], { from: 'user' }).catch((x: unknown) => x)) as AuditFailOnError;
  t.ok(e instanceof AuditFailOnError);
  t.equal(e.exitCode, AUDIT_FAIL_EXIT_CODE);
  t.equal(AUDIT_FAIL_EXIT_CODE, 4);
  t.same(e.failing, [{ id: '5.3', result: 'INFO' }]);
  t.match(c.err.join(''), /^audit: 1 result\(s\) at or above INFO \(5\.3 INFO\)\n$/);
  t.match(c.out.join(''), /Checks: 3/, 'the report is written before failing');
  const d = cli(reportWith(['PASS', 'PASS']));
  await d.program.parseAsync(['audit', '--fail-on', 'note'], { from: 'user' });
  t.same(d.err, []);
  const many = reportWith(Array.from({ length: 12 }, () => 'WARN' as const));
  t.equal(failingResults(many, 'warn').length, 12);
  t.match(new AuditFailOnError('warn', failingResults(many, 'warn')).message, /5\.10 WARN, …\)$/);
  t.same(failingResults(reportWith(['NOTE', 'INFO', 'WARN', 'PASS']), 'note').map((f) => f.result), ['NOTE', 'INFO', 'WARN']);
});

t.test('bad --fail-on is a usage error; an engine that cannot be audited is BK_ERR_DOCKER_UNAVAILABLE', async (t) => {
  const a = cli(reportWith([]));
  await t.rejects(a.program.parseAsync(['audit', '--fail-on', 'pass'], { from: 'user' }), { code: 'commander.invalidArgument' });
  const b = cli(new Error('connect ENOENT /tmp/x/docker.sock'));
  const e = await b.program.parseAsync(['audit', '--docker-host', 'unix:///tmp/x/docker.sock'], { from: 'user' }).catch((x: unknown) => x);
  t.ok(isBulkheadError(e));
  t.equal((e as { code: string }).code, 'BK_ERR_DOCKER_UNAVAILABLE');
  t.match((e as Error).message, /cannot audit the engine at unix:\/\/\/tmp\/x\/docker\.sock: connect ENOENT/);
  const help: string[] = [];
  const p = new Command('bulkhead-agent').exitOverride().configureOutput({ writeOut: (s) => help.push(s), writeErr: (s) => help.push(s) });
  registerAuditCommand(p, { out: () => undefined, err: () => undefined });
  await t.rejects(p.parseAsync(['audit', '--help'], { from: 'user' }));
  t.match(help.join(''), /Exit status: 0 report written; 4 --fail-on level reached/);
});
