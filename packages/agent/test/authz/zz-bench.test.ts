import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger, parsePolicy } from '@bulkhead/shared';
import { startPrivateEngine } from '../../../../test/helpers/engine';
import { createDockerClient } from '../../src/docker/client';
import { ContainerWatcher } from '../../src/docker/watcher';
import { AuthzDecider, type AuthzDecisionReport } from '../../src/authz/authz-decider';
import { AuthzPlugin, DOCKER_PLUGIN_DIR } from '../../src/authz/plugin-server';
const pct = (a: number[], p: number) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]!; };
t.test('bench', async (t) => {
  const logger = createLogger({ name: 'x', level: 'silent' });
  const name = `bk-bench-${process.pid}`;
  const policy = parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: b }
spec:
  rules:
    - { id: a, description: a, severity: high, mode: enforce, action: { type: kill }, check: { type: privileged } }
    - { id: b, description: b, severity: high, mode: enforce, action: { type: kill }, check: { type: resource-limits, maxMemory: 256m, requireCpu: false, requirePids: false } }
    - { id: c, description: c, severity: high, mode: monitor, action: { type: alert }, check: { type: secrets } }
    - { id: d, description: d, severity: high, mode: monitor, action: { type: alert }, check: { type: root-user } }
`, 'b');
  const engine = await startPrivateEngine({ t });
  const docker = createDockerClient({ dockerHost: engine.dockerHost });
  const w = await ContainerWatcher.start({ docker, logger, reconcileIntervalMs: 0 });
  const reps: AuthzDecisionReport[] = [];
  const decider = new AuthzDecider({ policy: () => ({ policy, scans: new Map(), version: 1, source: 'bundle', sha256: 'b', projectLabel: 'bulkhead.project' }), containers: w, docker, logger, onDecision: (r) => reps.push(r) });
  const plugin = await AuthzPlugin.start({ socketPath: `${DOCKER_PLUGIN_DIR}/${name}.sock`, evaluate: process.env["TRIVIAL"] ? () => ({ allow: true }) : (r) => decider.decide(r), logger });
  t.teardown(async () => { await w.stop(); await engine.stop(); await plugin.stop(); });
  const reload = async (cfg: object) => { writeFileSync(join(engine.dir, 'daemon.json'), JSON.stringify(cfg)); process.kill(Number(readFileSync(join(engine.dir, 'dockerd.pid'), 'utf8').trim()), 'SIGHUP'); await new Promise((r) => setTimeout(r, 1000)); };
  const N = 200;
  const measure = async () => {
    const ms: number[] = [];
    for (let i = 0; i < N; i++) {
      const t0 = performance.now();
      await docker.createContainer({ Image: engine.image, Cmd: ['true'], Labels: { 'bulkhead.test': '1' }, HostConfig: { NetworkMode: 'none', Memory: 64 * 1024 * 1024 } });
      ms.push(performance.now() - t0);
    }
    return ms;
  };
  await measure();
  const without1 = await measure();
  await reload({ 'authorization-plugins': [name] });
  await measure();
  const withP = await measure();
  await reload({});
  const without2 = await measure();
  const without = [...without1, ...without2];
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  t.comment(`create without plugin: mean ${mean(without).toFixed(2)} p50 ${pct(without, 0.5).toFixed(2)} p99 ${pct(without, 0.99).toFixed(2)}`);
  t.comment(`create with plugin:    mean ${mean(withP).toFixed(2)} p50 ${pct(withP, 0.5).toFixed(2)} p99 ${pct(withP, 0.99).toFixed(2)}  ratio(mean) ${(mean(withP) / mean(without)).toFixed(3)} ratio(p50) ${(pct(withP, 0.5) / pct(without, 0.5)).toFixed(3)}`);
  const d = reps.map((r) => r.decisionMs);
  t.comment(`decisions reported: ${d.length}; decision ms p50 ${d.length ? pct(d, 0.5).toFixed(3) : '-'} p99 ${d.length ? pct(d, 0.99).toFixed(3) : '-'}; stats ${JSON.stringify(plugin.stats)}`);
});
