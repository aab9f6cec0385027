import t from 'tap';
import { createLogger, parsePolicy } from '@bulkhead/shared';
import { startPrivateEngine, LABEL_ARGS } from '../../../../test/helpers/engine';
import { createDockerClient } from '../../src/docker/client';
import { ContainerWatcher } from '../../src/docker/watcher';
import { Enforcer } from '../../src/enforce/enforcer';
import { SecretScanner } from '../../src/secrets/secret-scanner';
const pct = (a: number[], p: number) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]!.toFixed(1); };
t.test('bench', async (t) => {
  const engine = await startPrivateEngine({ t });
  const docker = createDockerClient({ dockerHost: engine.dockerHost });
  const logger = createLogger({ name: 'x', level: 'silent' });
  const policy = parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: b }
spec:
  rules:
    - { id: p, description: p, severity: high, mode: enforce, action: { type: pause }, scope: { containerLabels: { path: enforcer } }, check: { type: root-user } }
`, 'b');
  const w = await ContainerWatcher.start({ docker, logger, reconcileIntervalMs: 0 });
  const ours: number[] = []; const floor: number[] = [];
  const e = new Enforcer({ docker, logger, containers: w, secrets: new SecretScanner({ docker, logger }), policy: () => ({ policy, scans: new Map(), version: 1, source: 'bundle', sha256: 'b', projectLabel: 'bulkhead.project' }),
    onViolation: (r, timing) => { if (timing) ours.push(timing.sinceEventMs); } });
  e.attach(w);
  const raw = await docker.getEvents({ filters: { type: ['container'], event: ['start'], label: ['path=floor'] } } as never);
  raw.on('data', (c: Buffer) => { for (const l of c.toString().split('\n').filter(Boolean)) { const ev = JSON.parse(l); const tm = Number(BigInt(ev.timeNano) / 1000000n); void docker.getContainer(ev.id).pause().then(() => floor.push(performance.timeOrigin + performance.now() - tm)); } });
  const N = Number(process.env['N'] ?? 100);
  for (let i = 0; i < 2 * N; i++) {
    const c = await docker.createContainer({ Image: engine.image, Cmd: ['sleep', '600'], Labels: { path: i % 2 ? 'floor' : 'enforcer', 'bulkhead.test': '1' }, HostConfig: { NetworkMode: 'none' } });
    await c.start();
    await new Promise((r) => setTimeout(r, 150));
  }
  await new Promise((r) => setTimeout(r, 1000));
  t.comment(`enforcer (start→paused): n=${ours.length} p50=${pct(ours, 0.5)} p99=${pct(ours, 0.99)} max=${pct(ours, 1)}`);
  t.comment(`floor (start event→pause done, raw): n=${floor.length} p50=${pct(floor, 0.5)} p99=${pct(floor, 0.99)} max=${pct(floor, 1)}`);
  (raw as any).destroy(); await e.stop(); await w.stop();
});
