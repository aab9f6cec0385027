// The CIS report against a REAL private dockerd running a fleet of
// deliberately misconfigured containers (each one wrong in one way, all
// --network none): the verdict and the flagged containers of each check,
// including docker-bench-security's known false results (0:0 and root:root
// users, a sensitive SUBPATH mount). Then `bulkhead-agent audit` end to end.
// A dedicated engine, so section 5 sees exactly this fleet.
import t from 'tap';
import { Command } from 'commander';
import { startPrivateEngine, LABEL_ARGS, removeLabelledContainers } from '../../../../test/helpers/engine';
import { createDockerClient } from '../../src/docker/client';
import { runCisReport } from '../../src/cis/cis-report';
import { AuditFailOnError, registerAuditCommand } from '../../src/cli/audit-command';
import type { CisReport, CisResult } from '../../src/cis/cis-types';

/** Flags that pass every automated section 5 check. */
const GOOD = [
  '--user', '1000:1000', '--read-only', '--memory', '64m', '--cpus', '0.5', '--pids-limit', '50', '--security-opt', 'no-new-privileges',
  '--health-cmd', 'true', '--health-interval', '60s', '--ulimit', 'nofile=1024:2048', '--restart', 'on-failure:5',
];

t.test('a misconfigured fleet on a private engine gives the expected verdicts', async (t) => {
  const engine = await startPrivateEngine({ t });
  t.teardown(() => removeLabelledContainers(engine));
  const run = (name: string, ...args: string[]): Promise<string> =>
    engine.dockerOk(['run', '-d', '--network', 'none', ...LABEL_ARGS, '--name', name, ...args, 'sleep', '600']);
  // GOOD minus one flag (and its value; --read-only has none).
  const without = (flag: string): string[] => {
    const i = GOOD.indexOf(flag);
    return [...GOOD.slice(0, i), ...GOOD.slice(i + (flag === '--read-only' ? 1 : 2))];
  };
  await Promise.all([
    run('good', ...GOOD, engine.image),
    run('user00', ...without('--user'), '--user', '0:0', engine.image),
    run('rootroot', ...without('--user'), '--user', 'root:root', engine.image),
    run('imageroot', ...without('--user'), engine.image),
    run('imageuser', ...without('--user'), engine.imageUser1000),
    run('sslcerts', ...GOOD, '-v', '/etc/ssl/certs:/certs', engine.image),
    run('sock', ...GOOD, '-v', `${engine.socketPath}:/var/run/docker.sock`, engine.image),
    run('caps', ...GOOD, '--cap-add', 'NET_ADMIN', '--cap-add', 'CHOWN', engine.image),
    run('hostpid', ...GOOD, '--pid', 'host', engine.image),
    run('hostipc', ...GOOD, '--ipc', 'host', engine.image),
    run('hostuts', ...GOOD, '--uts', 'host', engine.image),
    run('noseccomp', ...GOOD, '--security-opt', 'seccomp=unconfined', engine.image),
    run('always', ...without('--restart'), '--restart', 'always', engine.image),
    run('device', ...GOOD, '--device', '/dev/null:/dev/xnull', engine.image),
    run('userns', ...GOOD, '--userns', 'host', engine.image),
    run('rwroot', ...without('--read-only'), engine.image),
    run('nolimits', '--user', '1000', '--read-only', '--security-opt', 'no-new-privileges', '--health-cmd', 'true', '--ulimit', 'nofile=1024:2048', engine.image),
  ]);
  const docker = createDockerClient({ dockerHost: engine.dockerHost });
  const report = await runCisReport({ docker, dockerSocketPath: engine.socketPath, env: {} });
  const r = new Map(report.tests.flatMap((s) => s.results).map((x) => [x.id, x]));
  const expect: Record<string, [CisResult['result'], string[] | undefined]> = {
    '4.1': ['WARN', ['imageroot', 'rootroot', 'user00']],
    '5.1': ['PASS', undefined],
    '5.4': ['WARN', ['caps:NET_ADMIN']],
    '5.5': ['PASS', undefined],
    '5.6': ['WARN', ['sslcerts:/etc/ssl/certs']],
    '5.7': ['PASS', undefined],
    '5.10': ['PASS', undefined],
    '5.11': ['WARN', ['nolimits']],
    '5.12': ['WARN', ['nolimits']],
    '5.13': ['WARN', ['rwroot']],
    '5.15': ['WARN', ['always:always']],
    '5.16': ['WARN', ['hostpid']],
    '5.17': ['WARN', ['hostipc']],
    '5.18': ['INFO', ['device']],
    '5.19': ['PASS', undefined],
    '5.21': ['WARN', ['hostuts']],
    '5.22': ['WARN', ['noseccomp']],
    '5.25': ['PASS', undefined],
    '5.26': ['PASS', undefined],
    '5.27': ['PASS', undefined],
    '5.29': ['WARN', ['nolimits']],
    '5.30': ['PASS', undefined],
    '5.31': ['WARN', ['userns']],
    '5.32': ['WARN', ['sock']],
  };
  for (const [id, [result, items]] of Object.entries(expect)) {
    const x = r.get(id);
    t.equal(x?.result, result, `${id} ${x?.desc ?? ''} ${x?.details ?? ''}`);
    t.same(x?.items ? [...x.items].sort() : undefined, items, `${id} items`);
  }
  // The private engine's own configuration (engine.sh flags) as section 2 sees it.
  t.equal(r.get('2.4')!.result, 'WARN', '--iptables=false on its command line');
  t.equal(r.get('2.16')!.result, 'PASS', '--userland-proxy=false on its command line');
  t.equal(r.get('3.16')!.result, 'PASS', 'its socket is 0660');
  t.match(r.get('6.2')!.details, /total of 17 containers, with 17 of them currently running/);
  t.equal(report.checks, 117);

  // The CLI, end to end against the same engine.
  const out: string[] = [];
  const err: string[] = [];
  const program = new Command('bulkhead-agent').exitOverride();
  registerAuditCommand(program, { out: (s) => out.push(s), err: (s) => err.push(s) });
  const e = await program.parseAsync(['audit', '--json', '--fail-on', 'warn', '--docker-host', engine.dockerHost], { from: 'user' }).catch((x: unknown) => x);
  t.ok(e instanceof AuditFailOnError, 'WARN results → exit code 4');
  const json = JSON.parse(out.join('')) as CisReport;
  t.equal(json.checks, 117);
  t.same(json.tests.find((s) => s.id === '5')!.results.find((x) => x.id === '5.32')!.items, ['sock']);
  t.match(err.join(''), /^audit: \d+ result\(s\) at or above WARN/);
});
