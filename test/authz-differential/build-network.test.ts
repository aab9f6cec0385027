// `docker build --network host`, judged at `POST /build`, on every engine
// version with the real dockerd as the judge (found in session 8: the build's
// RUN steps ran in the host's network namespace while the plugin allowed
// every /build unread; those containers are made inside dockerd, so no create
// ever reached the plugin).
//
// Per engine: with host-namespaces in monitor mode the build is allowed and
// its RUN step sees the host's interfaces (dockerd acts on it); enforced, it
// is refused naming the rule. A `docker build` sends its context as a body
// plugins are not given, and dockerd takes build options from a form-encoded
// body past its first 4 KiB (test/e2e/authz-bypass-formbody.test.ts), so while
// host-namespaces is enforced `--network none` is refused too unless the
// exemption names: [build-body] accepts that; with it, `--network none` is
// allowed and `--network host` still refused. Nothing is sent over any
// network: the RUN step only lists interfaces.
import t from 'tap';
import { createLogger, parsePolicy } from '@bulkhead/shared';
import type { PolicyState } from '../../packages/agent/src/policy/policy-holder';
import { startJudgedEngine } from './judged-engine';
import { ENGINE_VERSIONS, TEST_IMAGE } from '../helpers/engine';

const logger = createLogger({ name: 'build-network', level: process.env['BULKHEAD_LOG_LEVEL'] ?? 'silent' });

function policyState(mode: 'enforce' | 'monitor', exemptBuildBody = false): PolicyState {
  return {
    policy: parsePolicy(`apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: build }
spec:
  rules:
    - { id: host.host-namespaces, description: no host namespaces, severity: critical, mode: ${mode}, action: { type: kill }, check: { type: host-namespaces }${exemptBuildBody ? ', exemptions: [ { who: ops, why: the build host, match: { names: [build-body] } } ]' : ''} }
    - { id: host.privileged, description: no privileged, severity: critical, mode: enforce, action: { type: kill }, check: { type: privileged } }
`, 'build.yaml'),
    scans: new Map(), version: 1, source: 'bundle', sha256: `build-${mode}-${exemptBuildBody}`, projectLabel: 'bulkhead.project',
  };
}

// The legacy builder: BuildKit needs a session the CLI cannot open over this
// plugin-less path in 20.10; the `networkmode` query is the same for both.
process.env['DOCKER_BUILDKIT'] = '0';
const DOCKERFILE = `FROM ${TEST_IMAGE}\nRUN echo "IF=$(ls /sys/class/net | tr '\\n' ' ')"\n`;
/** The interfaces the RUN step printed (not the echo of the step itself, which holds "$("). */
const ifacesOf = (out: string): string => /^IF=([^$\n]*)$/m.exec(out)?.[1]?.trim() ?? '';

for (const version of ENGINE_VERSIONS) {
  t.test(`Docker ${version}: a build's network mode is judged`, async (t) => {
    let state = policyState('monitor');
    const { engine: e, pluginName: name, plugin } = await startJudgedEngine(t, version, 'bk-bn', () => state, logger);
    const build = async (network: string) => {
      const r = await e.docker(['build', '--no-cache', '--rm', '--force-rm', '--network', network, '-q', '-'], { input: DOCKERFILE, timeoutMs: 60_000 });
      const all = `${r.stdout}\n${r.stderr}`;
      return { code: r.code, all, ifaces: ifacesOf(all) };
    };
    // -q hides RUN output: build without it for the judge.
    const verbose = async (network: string) => {
      const r = await e.docker(['build', '--no-cache', '--rm', '--force-rm', '--network', network, '-'], { input: DOCKERFILE, timeoutMs: 60_000 });
      return { code: r.code, ifaces: ifacesOf(`${r.stdout}\n${r.stderr}`), all: `${r.stdout}\n${r.stderr}` };
    };
    const none = await verbose('none');
    t.equal(none.ifaces, 'lo', `--network none: only lo (${none.code} ${none.all.slice(-300)})`);
    const host = await verbose('host');
    t.equal(host.code, 0, 'monitor mode: the host-network build is allowed');
    t.match(host.ifaces, /\S+ .*lo|lo \S+/, `monitor mode: dockerd ran the RUN step in the host's network namespace (${host.ifaces})`);
    state = policyState('enforce');
    const refused = await build('host');
    t.not(refused.code, 0, 'enforced: refused');
    t.match(refused.all, new RegExp(`authorization denied by plugin ${name}: .*\\[host\\.host-namespaces\\]`, 's'), 'enforced: names the rule');
    const unread = await build('none');
    t.not(unread.code, 0, 'enforced: a --network none build is refused too (its body could set the network mode)');
    t.match(unread.all, new RegExp(`authorization denied by plugin ${name}: .*\\[host\\.host-namespaces\\].*form-encoded body.*names: \\[build-body\\]`, 's'), 'enforced: says why and names the exemption');
    state = policyState('enforce', true);
    const still = await verbose('none');
    t.equal(still.ifaces, 'lo', 'enforced, build-body exempted: a --network none build is allowed');
    const hostExempt = await build('host');
    t.not(hostExempt.code, 0, 'enforced, build-body exempted: --network host is still refused');
    t.equal(plugin.stats.failOpen, 0);
  });
}
