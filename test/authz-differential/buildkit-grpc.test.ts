// BuildKit's gRPC API (`POST /grpc`, h2c upgrade: buildx's docker driver)
// with the real dockerd as the judge, on every engine version. After the
// upgrade the build is an HTTP/2 stream no authorization plugin sees, so the
// door cannot judge e.g. a RUN --network host (the network.host entitlement
// dockerd's builder grants by default): refused while host-namespaces is
// enforced, upgraded (101) in monitor mode. `/session` (the client side of
// a classic `POST /build?version=2`, which is judged) is not refused.
// Loopback only: the request goes to the private engine's unix socket.
import t from 'tap';
import { connect } from 'node:net';
import { createLogger, parsePolicy } from '@bulkhead/shared';
import type { PolicyState } from '../../packages/agent/src/policy/policy-holder';
import { startJudgedEngine } from './judged-engine';
import { ENGINE_VERSIONS } from '../helpers/engine';

const logger = createLogger({ name: 'buildkit-grpc', level: process.env['BULKHEAD_LOG_LEVEL'] ?? 'silent' });

function policyState(mode: 'enforce' | 'monitor'): PolicyState {
  return {
    policy: parsePolicy(`apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: grpc }
spec:
  rules:
    - { id: host.host-namespaces, description: no host namespaces, severity: critical, mode: ${mode}, action: { type: kill }, check: { type: host-namespaces } }
`, 'grpc.yaml'),
    scans: new Map(), version: 1, source: 'bundle', sha256: `grpc-${mode}`, projectLabel: 'bulkhead.project',
  };
}

/** A raw upgrade request as buildx sends it (client.DialHijack: POST, Upgrade: h2c); status line and what follows, read for ≤ 5 s. */
function upgrade(socketPath: string, target: string, extra: string[] = []): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const s = connect(socketPath);
    let buf = '';
    const done = (): void => {
      clearTimeout(timer);
      s.destroy();
      const m = /^HTTP\/1\.1 (\d{3})/.exec(buf);
      if (m) resolve({ status: Number(m[1]), text: buf });
      else reject(new Error(`no HTTP status from dockerd: ${JSON.stringify(buf.slice(0, 200))}`));
    };
    const timer = setTimeout(done, 5000);
    s.on('connect', () => s.write([`POST ${target} HTTP/1.1`, 'Host: docker', 'Connection: Upgrade', 'Upgrade: h2c', 'Content-Length: 0', ...extra, '', ''].join('\r\n')));
    s.on('data', (d) => {
      buf += d.toString('latin1');
      // A 101 leaves the connection open (HTTP/2 follows); an error answer is complete once its body is in.
      if (/^HTTP\/1\.1 101/.test(buf) || (/\r\n\r\n/.test(buf) && /authorization denied|"message"/.test(buf))) done();
    });
    s.on('end', done);
    s.on('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

for (const version of ENGINE_VERSIONS) {
  t.test(`Docker ${version}: POST /grpc refused in enforce mode, passed in monitor mode`, async (t) => {
    let state = policyState('monitor');
    const { engine: e, pluginName: name, plugin } = await startJudgedEngine(t, version, 'bk-gr', () => state, logger);
    const api = version === '20.10' ? '/v1.41' : '/v1.45';
    const monitor = await upgrade(e.socketPath, `${api}/grpc`);
    t.equal(monitor.status, 101, `monitor mode: dockerd upgrades /grpc to BuildKit's h2c stream (${monitor.text.split('\r\n')[0]})`);
    state = policyState('enforce');
    const enforced = await upgrade(e.socketPath, `${api}/grpc`);
    t.equal(enforced.status, 403, `enforce mode: refused (${enforced.text.split('\r\n')[0]})`);
    t.match(enforced.text, new RegExp(`authorization denied by plugin ${name}: .*\\[host\\.host-namespaces\\].*BuildKit's gRPC API.*DOCKER_BUILDKIT=0 docker build`, 's'), 'names the rule, why and what to use instead');
    const unversioned = await upgrade(e.socketPath, '/grpc');
    t.equal(unversioned.status, 403, 'without a version prefix too');
    const session = await upgrade(e.socketPath, `${api}/session`, ['X-Docker-Expose-Session-Uuid: bk-test-session', 'X-Docker-Expose-Session-Name: bk', 'X-Docker-Expose-Session-Sharedkey: k']);
    t.notMatch(session.text, /authorization denied/, `enforce mode: /session is not refused by the plugin (${session.text.split('\r\n')[0]})`);
    t.equal(plugin.stats.failOpen, 0);
  });
}
