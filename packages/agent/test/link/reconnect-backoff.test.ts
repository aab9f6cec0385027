// The link's reconnect backoff against a real controller (gRPC, mutual TLS) that goes away and
// comes back on the same port: the ceiling doubles per attempt but never exceeds half the time
// since the link was lost, so the agent is back soon after the controller is (issue 12: a
// doubling-only ceiling kept it away up to 8 s after a 9 s restart).
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { createLogger, type Logger } from '@bulkhead/shared';
import { initPki } from '../../../controller/src/pki/data-dir';
import { openStore } from '../../../controller/src/store/open-store';
import { startGrpcServer, type RunningGrpcServer } from '../../../controller/src/grpc/grpc-server';
import { createJoinToken } from '../../../controller/src/enrollment/join-tokens';
import type { Store } from '../../../controller/src/store/store';
import { enroll } from '../../src/enroll/enroll';
import { ControllerLink } from '../../src/link/controller-link';

const silent = createLogger({ name: 'test', level: 'silent' });
const host = async () => ({ hostname: 'h1', osPlatform: 'linux', cpus: 2, memoryBytes: 1024, dockerVersion: '20.10', cgroupVersion: 1 });

function capture(): { logger: Logger; lines: Array<Record<string, unknown> & { at: number }> } {
  const lines: Array<Record<string, unknown> & { at: number }> = [];
  const logger = createLogger({ name: 'link', level: 'info', destination: { write: (s: string) => void lines.push({ ...(JSON.parse(s) as Record<string, unknown>), at: Date.now() }) } });
  return { logger, lines };
}

t.test('after a controller restart the agent reconnects within about half the outage', async (t: Test) => {
  const dir = t.testdir();
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  const store: Store = await openStore({ kind: 'sqlite', path: join(dir, 'ctl', 'bulkhead.db') });
  let server: RunningGrpcServer | undefined = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger: silent });
  const port = server.port;
  t.teardown(async () => {
    await server?.shutdown();
    await store.close();
  });
  const { token } = await createJoinToken(store, 60_000, new Date());
  const creds = await enroll({ controller: `127.0.0.1:${port}`, token, caFingerprint: pki.caFingerprint, stateDir: join(dir, 'agent'), hostname: 'h1' });
  const { logger, lines } = capture();
  // random() = 1: every delay is the ceiling itself (the worst case full jitter can draw).
  const link = new ControllerLink({ credentials: creds, inventory: { inventory: () => [], subscribe: () => () => undefined }, hostFacts: host, logger, minBackoffMs: 100, maxBackoffMs: 30_000, random: () => 1 });
  const connects = (): number => lines.filter((l) => l['msg'] === 'connected to controller').length;
  link.start();
  t.teardown(() => link.stop());
  const until = async (what: string, pred: () => boolean, ms: number): Promise<void> => {
    const end = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  await until('first connect', () => connects() === 1, 10_000);

  // The controller goes away for OUTAGE_MS, then serves on the same port again.
  const OUTAGE_MS = 3_000;
  await server.shutdown();
  server = undefined;
  const lostAt = Date.now();
  await new Promise((r) => setTimeout(r, OUTAGE_MS));
  server = await startGrpcServer({ listen: `127.0.0.1:${port}`, store, pki, logger: silent });
  const backAt = Date.now();
  await until('reconnect', () => connects() === 2, 20_000);
  const reconnectedAt = lines.filter((l) => l['msg'] === 'connected to controller')[1]!.at;

  const downs = lines.filter((l) => l['msg'] === 'controller link down');
  const delays = downs.map((l) => Number(l['retryInMs']));
  t.comment(`retry delays ${delays.join(', ')} ms; reconnected ${reconnectedAt - backAt} ms after the controller was back (outage ${backAt - lostAt} ms)`);
  t.ok(downs.length >= 3, `several attempts failed during the outage (${downs.length})`);
  t.equal(delays[0], 100, 'the first retry after losing a live stream waits the minimum');
  for (const l of downs) {
    const bound = Math.max(100, (l.at - lostAt) / 2) + 50; // + the time the failed attempt itself took to be logged
    t.ok(Number(l['retryInMs']) <= bound, `attempt ${String(l['attempt'])}: ${String(l['retryInMs'])} ms ≤ half the outage so far (${Math.round(bound)} ms)`);
  }
  // Doubling alone would wait 100, 200, 400, 800, 1600, 3200 ms: back ~3.1 s after a 3 s outage.
  t.ok(reconnectedAt - backAt <= OUTAGE_MS / 2 + 500, `reconnected ${reconnectedAt - backAt} ms after the controller was back (≤ half the outage + 0.5 s)`);
});
