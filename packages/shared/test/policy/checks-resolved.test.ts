// What the agent resolves on the host and in the engine (Mount.hostPath,
// effective{Network,Pid,Ipc}Mode) as the checks read it: a symlinked bind
// source, a local volume bound to a host path, a namespace joined from a
// container that shares the host's — and applicableRules, which the authz
// door uses to fail closed when such a lookup fails.
import t from 'tap';
import { runCases } from './run-cases';
import { applicableRules, evaluate } from '../../src/policy/evaluator';
import { policyFromJson } from '../../src/policy/parse';
import type { Mount__Output } from '../../src/proto/index';
import type { EvaluationContext, Neighbour } from '../../src/policy/types';
import { facts, NOW, policyOf, rule } from './helpers';

const bind = (source: string, hostPath: string | undefined, readOnly = false, destination = '/mnt'): Mount__Output =>
  ({ type: 'bind', source, destination, readOnly, propagation: 'rprivate', ...(hostPath === undefined ? {} : { hostPath }) });
const volume = (source: string, hostPath: string | undefined, readOnly = false, destination = '/data'): Mount__Output =>
  ({ type: 'volume', source, destination, readOnly, propagation: '', ...(hostPath === undefined ? {} : { hostPath }) });

t.test('sensitive-mounts judges the resolved host path besides the source', async (t) => {
  const check = { type: 'sensitive-mounts' };
  runCases(t, [
    { name: 'symlink to /etc/ssl', check, facts: { mounts: [bind('/srv/link', '/etc/ssl', true)] }, broken: true, detail: /host path \/srv\/link \(resolves to \/etc\/ssl\) mounted read-only at \/mnt is under the sensitive path \/etc/ },
    { name: 'symlink to an application dir', check, facts: { mounts: [bind('/srv/link', '/srv/app')] }, broken: false },
    { name: 'sensitive literal, harmless target: the literal still counts', check, facts: { mounts: [bind('/etc/resolv.conf', '/run/systemd/resolve/stub-resolv.conf', true)] }, broken: true, detail: /under the sensitive path \/etc/ },
    { name: 'same path resolved (no symlink)', check, facts: { mounts: [bind('/etc/ssl', '/etc/ssl', true)] }, broken: true, detail: /^host path \/etc\/ssl mounted read-only/ },
    { name: 'read-only exception named by the literal path (a root-owned link)', check, facts: { mounts: [bind('/etc/ssl/certs', '/etc/pki/tls/certs', true)] }, broken: false },
    { name: 'read-only exception reached through a link', check, facts: { mounts: [bind('/srv/certs', '/etc/ssl/certs', true)] }, broken: false },
    { name: 'exception through a link, read-write', check, facts: { mounts: [bind('/srv/certs', '/etc/ssl/certs', false)] }, broken: true, detail: /read-write/ },
    { name: 'a link to a parent of a sensitive path', check, facts: { mounts: [bind('/srv/v', '/var', true)] }, broken: true, detail: /contains the sensitive path \/var\/lib\/docker/ },
    { name: 'local volume bound to /etc', check, facts: { mounts: [volume('etcvol', '/etc')] }, broken: true, detail: /^volume etcvol \(host path \/etc\) mounted read-write at \/data is a sensitive path$/ },
    { name: 'local volume on a block device', check, facts: { mounts: [volume('disk', '/dev/sdb1')] }, broken: true, detail: /under the sensitive path \/dev/ },
    { name: 'anonymous volume bound to /root', check, facts: { mounts: [volume('', '/root')] }, broken: true, detail: /volume \(anonymous\)/ },
    { name: 'volume bound to an application dir', check, facts: { mounts: [volume('app', '/srv/app')] }, broken: false },
    { name: 'plain named volume', check, facts: { mounts: [volume('data', undefined)] }, broken: false },
    { name: 'a relative hostPath is ignored', check, facts: { mounts: [volume('odd', 'etc')] }, broken: false },
    { name: 'volume create (no destination yet)', check, facts: { mounts: [volume('v', '/etc', false, '')] }, broken: true, detail: /mounted read-write at \(not mounted yet\)/ },
  ]);
});

t.test('docker-socket judges the resolved host path besides the source', async (t) => {
  const check = { type: 'docker-socket' };
  runCases(t, [
    { name: 'literal socket (unchanged wording)', check, facts: { mounts: [bind('/var/run/docker.sock', '/run/docker.sock', true)] }, broken: true, detail: /^runtime socket \/var\/run\/docker\.sock is mounted at \/mnt \(read-only does not protect a socket\)$/ },
    { name: 'symlink to the socket', check, facts: { mounts: [bind('/srv/d.sock', '/run/docker.sock')] }, broken: true, detail: /^runtime socket \/run\/docker\.sock is mounted at \/mnt through host path \/srv\/d\.sock \(resolves to \/run\/docker\.sock\)$/ },
    { name: 'symlink to the socket dir', check, facts: { mounts: [bind('/srv/r', '/run')] }, broken: true, detail: /host path \/srv\/r \(resolves to \/run\) mounted at \/mnt contains the runtime socket \/run\/docker\.sock/ },
    { name: 'literal socket dir (unchanged wording)', check, facts: { mounts: [bind('/var/run', undefined)] }, broken: true, detail: /^host directory \/var\/run mounted at \/mnt contains the runtime socket/ },
    { name: 'volume bound to the socket dir', check, facts: { mounts: [volume('sock', '/run')] }, broken: true, detail: /volume sock \(host path \/run\) mounted at \/data contains/ },
    { name: 'volume bound to the socket', check, facts: { mounts: [volume('sock', '/run/docker.sock')] }, broken: true, detail: /through volume sock/ },
    { name: 'symlink elsewhere', check, facts: { mounts: [bind('/srv/x', '/srv/y')] }, broken: false },
  ]);
});

t.test('host-namespaces: a namespace joined from a container that shares the host\'s', async (t) => {
  const check = { type: 'host-namespaces' };
  const id = 'f'.repeat(64);
  runCases(t, [
    { name: '--pid container:<host pid>', check, facts: { pidMode: `container:${id}`, effectivePidMode: 'host' }, broken: true, detail: /joins the PID namespace of container ffffffffffff, which is the host's \(--pid container:f{64}\)/ },
    { name: '--ipc container:<host ipc>', check, facts: { ipcMode: 'container:web', effectiveIpcMode: 'host' }, broken: true, detail: /IPC namespace of container web.*--ipc container:web/ },
    { name: '--network container:<host net>', check, facts: { networkMode: 'container:web', networks: [], effectiveNetworkMode: 'host' }, broken: true, detail: /network namespace of container web/ },
    { name: 'joined, private', check, facts: { pidMode: 'container:web', effectivePidMode: '' }, broken: false },
    { name: 'joined, not resolved', check, facts: { pidMode: 'container:web' }, broken: false },
    { name: 'an effective mode without a join is ignored', check, facts: { pidMode: '', effectivePidMode: 'host' }, broken: false },
    { name: 'pid not forbidden', check: { type: 'host-namespaces', namespaces: ['network'] }, facts: { pidMode: 'container:web', effectivePidMode: 'host' }, broken: false },
    { name: 'all three', check, facts: { networkMode: 'container:a', networks: [], effectiveNetworkMode: 'host', pidMode: 'container:a', effectivePidMode: 'host', ipcMode: 'container:a', effectiveIpcMode: 'host' }, broken: true, evidence: 3 },
  ]);
});

t.test('default-bridge: the network namespace of a container on the default bridge', async (t) => {
  const check = { type: 'default-bridge' };
  runCases(t, [
    { name: 'joined a default-bridge container', check, facts: { networkMode: `container:${'e'.repeat(64)}`, networks: [], effectiveNetworkMode: 'default' }, broken: true, detail: /joins the network namespace of container eeeeeeeeeeee, which is on the default bridge/ },
    { name: 'joined a bridge-mode container', check, facts: { networkMode: 'container:x', networks: [], effectiveNetworkMode: 'bridge' }, broken: true },
    { name: 'joined a user-network container', check, facts: { networkMode: 'container:x', networks: [], effectiveNetworkMode: 'shop_default' }, broken: false },
  ]);
});

t.test('project-network-sharing reads neighbours only for containers that have networks to share', async (t) => {
  const policy = policyFromJson(policyOf(rule({ type: 'project-network-sharing' })));
  let reads = 0;
  const lazy = (list: Neighbour[]): EvaluationContext => ({
    now: NOW,
    get neighbours() {
      reads++;
      return list;
    },
  });
  const other: Neighbour = { id: 'o', name: 'other', project: 'other', networks: ['shared'] };
  t.same(evaluate(policy, { container: facts({ networkMode: 'none', networks: [{ name: 'none', networkId: '', ipAddress: '' }] }) }, lazy([other])), []);
  t.equal(reads, 0, 'only ignored networks: neighbours never read');
  const f = evaluate(policy, { container: facts({ labels: { 'bulkhead.project': 'a' }, networks: [{ name: 'shared', networkId: '', ipAddress: '' }] }) }, lazy([other]));
  t.equal(f.length, 1);
  t.equal(reads, 1, 'a user network: read once');
});

t.test('applicableRules: in scope and not exempted, whatever the check finds', async (t) => {
  const policy = policyFromJson(policyOf(
    rule({ type: 'privileged' }, { id: 'all' }),
    rule({ type: 'privileged' }, { id: 'scoped', scope: { containerLabels: { team: 'x' } } }),
    rule({ type: 'privileged' }, { id: 'exempt', exemptions: [{ who: 'a', why: 'b', match: { names: ['web'] } }] }),
    rule({ type: 'privileged' }, { id: 'expired', exemptions: [{ who: 'a', why: 'b', until: '2000-01-01T00:00:00Z' }] }),
  ));
  t.same(applicableRules(policy, { container: facts() }, NOW).map((r) => r.id), ['all', 'expired']);
  t.same(applicableRules(policy, { container: facts({ labels: { team: 'x' }, name: 'api' }) }, NOW).map((r) => r.id), ['all', 'scoped', 'exempt', 'expired']);
});
