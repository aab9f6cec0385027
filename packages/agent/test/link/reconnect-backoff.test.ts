// The link's reconnect backoff against a real controller (gRPC, mutual TLS) that goes away and
// comes back on the same port: the ceiling doubles per attempt but never exceeds half the time
// since the link was lost, is at least the spread once the link has been down a while, and
// the attempt after the controller is back really connects (a new channel per attempt), so the
// agent is back within one ceiling of the controller. The outage is timed on a monotonic
// clock: a wall clock stepped back does not make the agent retry every few hundred ms. Last,
// the fleet spread the backoff gives, simulated over 2000 agents with the link's own functions.
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
import { DEFAULT_RECONNECT_BACKOFF, reconnectCeilingMs, reconnectDelayMs } from '../../src/link/reconnect-backoff';

const silent = createLogger({ name: 'test', level: 'silent' });
const host = async () => ({ hostname: 'h1', osPlatform: 'linux', cpus: 2, memoryBytes: 1024, dockerVersion: '20.10', cgroupVersion: 1 });
const clock = (): number => performance.now();

// Small numbers so the test is short; the same rules as the defaults (500 ms, 30 s, 4 s after 1 s).
const MIN_MS = 100;
const SPREAD_MS = 1_500;
const SPREAD_AFTER_MS = 1_000;
/**
 * The controller serves again this long before the agent's pending attempt: the moment a
 * reused channel would still be failing calls from its cached state (grpc-js retries in the
 * background every 200–1000 ms), and room for the server to start on a loaded machine.
 */
const LEAD_MS = 300;
/** Allowed beyond the ceiling in force when the controller came back; under LEAD_MS, so one more ceiling cannot fit. */
const SLACK_MS = 250;

type Line = Record<string, unknown> & { at: number };

function capture(): { logger: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const logger = createLogger({ name: 'link', level: 'info', destination: { write: (s: string) => void lines.push({ ...(JSON.parse(s) as Record<string, unknown>), at: clock() }) } });
  return { logger, lines };
}

const until = async (what: string, pred: () => boolean, ms: number): Promise<void> => {
  const end = clock() + ms;
  while (!pred()) {
    if (clock() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

/**
 * A controller and an enrolled agent linked to it; `outage` takes the controller away for
 * `ms` (calling `whileDown` once it is gone) and serves again on the same port.
 */
async function linked(t: Test): Promise<{
  lines: Line[];
  /** When each connection attempt began. */
  attempts: number[];
  outage: (ms: number | ((shutAt: number) => Promise<void>), whileDown?: () => void) => Promise<{ shutAt: number; backAt: number }>;
}> {
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
  const link = new ControllerLink({
    credentials: creds, inventory: { inventory: () => [], subscribe: () => () => undefined }, hostFacts: host, logger,
    minBackoffMs: MIN_MS, maxBackoffMs: 30_000, backoffSpreadMs: SPREAD_MS, backoffSpreadAfterMs: SPREAD_AFTER_MS, random: () => 1,
  });
  const attempts: number[] = [];
  link.onState((s) => void (s === 'connecting' && attempts.push(clock())));
  link.start();
  t.teardown(() => link.stop());
  await until('first connect', () => connects(lines) === 1, 10_000);
  return {
    lines,
    attempts,
    outage: async (ms, whileDown) => {
      const shutAt = clock();
      await server!.shutdown();
      server = undefined;
      whileDown?.();
      await (typeof ms === 'number' ? new Promise((r) => setTimeout(r, ms)) : ms(shutAt));
      server = await startGrpcServer({ listen: `127.0.0.1:${port}`, store, pki, logger: silent });
      const backAt = clock();
      await until('reconnect', () => connects(lines) === 2, 20_000);
      return { shutAt, backAt };
    },
  };
}

const connects = (lines: Line[]): number => lines.filter((l) => l['msg'] === 'connected to controller').length;
const downs = (lines: Line[]): Line[] => lines.filter((l) => l['msg'] === 'controller link down');

/** The largest ceiling the link can have drawn at `at`: it lost the link no earlier than `shutAt`. */
const ceilingBound = (at: number, shutAt: number): number => {
  const downFor = at - shutAt;
  return downFor >= SPREAD_AFTER_MS ? Math.max(SPREAD_MS, downFor / 2) : Math.max(MIN_MS, downFor / 2);
};

t.test('after a controller restart the agent reconnects within one backoff ceiling of it', async (t: Test) => {
  const { lines, attempts, outage } = await linked(t);
  // Down at least 2 s, then back LEAD_MS before the agent's next attempt.
  let pendingAt = 0;
  const { shutAt, backAt } = await outage(async (shutAt) => {
    await until('a failure 2 s into the outage', () => downs(lines).some((l) => l.at - shutAt >= 2_000), 10_000);
    const last = downs(lines).at(-1)!;
    pendingAt = last.at + Number(last['retryInMs']);
    await new Promise((r) => setTimeout(r, pendingAt - LEAD_MS - clock()));
  });
  const reconnectedAt = lines.filter((l) => l['msg'] === 'connected to controller')[1]!.at;
  const failed = downs(lines);
  const delays = failed.map((l) => Number(l['retryInMs']));
  t.comment(`retry delays ${delays.join(', ')} ms; controller back ${Math.round(pendingAt - backAt)} ms before the next attempt; reconnected ${Math.round(reconnectedAt - backAt)} ms after it was back (outage ${Math.round(backAt - shutAt)} ms)`);
  t.ok(failed.length >= 3, `several attempts failed during the outage (${failed.length})`);
  t.equal(delays[0], MIN_MS, 'the first retry after losing a live stream waits the minimum');
  for (const l of failed) {
    const bound = Math.round(ceilingBound(l.at, shutAt));
    t.ok(Number(l['retryInMs']) <= bound, `attempt ${String(l['attempt'])}: ${String(l['retryInMs'])} ms ≤ half the outage so far, or the spread (${bound} ms)`);
    // The lower bound only once the link itself has been down that long: its outage starts when it
    // saw the stream fail (no later than its first 'link down' line), which under load is later
    // than shutAt. Both times are the lines' own (pino `time`), not when this test read them.
    if (Number(l['time']) - Number(failed[0]!['time']) >= SPREAD_AFTER_MS + 50) t.ok(Number(l['retryInMs']) >= SPREAD_MS, `attempt ${String(l['attempt'])}: ${String(l['retryInMs'])} ms ≥ the spread once down ${SPREAD_AFTER_MS} ms`);
  }
  // The first attempt begun after the controller was back must connect. A channel that fails it
  // from a cached TRANSIENT_FAILURE costs one more ceiling: a failure logged after that attempt
  // began, and a reconnect later than the limit below.
  const firstAfter = attempts.find((a) => a >= backAt);
  t.ok(firstAfter !== undefined && firstAfter >= backAt, `an attempt began after the controller was back (${firstAfter === undefined ? 'none' : `${Math.round(firstAfter - backAt)} ms after`})`);
  const lateFailures = failed.filter((l) => firstAfter !== undefined && l.at >= firstAfter);
  t.same(lateFailures.map((l) => `attempt ${String(l['attempt'])}: ${String(l['reason'])}`), [], 'the first attempt after the controller was back connected');
  const limit = Math.round(ceilingBound(backAt, shutAt) + SLACK_MS);
  t.ok(reconnectedAt - backAt <= limit, `reconnected ${Math.round(reconnectedAt - backAt)} ms after the controller was back (≤ the ceiling then, max(spread, half the ${Math.round(backAt - shutAt)} ms outage), + ${SLACK_MS} ms: ${limit} ms)`);
});

t.test('a wall clock stepped back during the outage does not shorten the backoff', async (t: Test) => {
  const { lines, outage } = await linked(t);
  const realNow = Date.now;
  t.teardown(() => void (Date.now = realNow));
  // An hour back, right after the link is lost: with the outage timed on Date.now it would be
  // negative, the ceiling the minimum, and the agent would retry every 100 ms (≈ 25 attempts).
  const { shutAt } = await outage(2_500, () => void (Date.now = () => realNow() - 3_600_000));
  Date.now = realNow;
  const failed = downs(lines);
  const delays = failed.map((l) => Number(l['retryInMs']));
  t.comment(`retry delays ${delays.join(', ')} ms`);
  const late = failed.filter((l) => l.at - shutAt >= SPREAD_AFTER_MS + 50);
  t.ok(late.length >= 1, `attempts failed after the spread applies (${late.length})`);
  for (const l of late) t.ok(Number(l['retryInMs']) >= SPREAD_MS, `attempt ${String(l['attempt'])}: ${String(l['retryInMs'])} ms ≥ the spread`);
  t.ok(failed.length <= 12, `few attempts in a 2.5 s outage (${failed.length})`);
});

t.test('the default backoff spreads a fleet over seconds and keeps one agent quick', async (t: Test) => {
  // 2000 agents lose the link together; each retries with the link's own ceiling and delay
  // (attempts against a dead controller fail at once) until the controller is back. A seeded
  // generator keeps the numbers the same run to run.
  let seed = 42;
  const random = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const b = DEFAULT_RECONNECT_BACKOFF;
  const fleet = (outageMs: number, n = 2000): { mean: number; all: number; peakPerS: number } => {
    const back: number[] = [];
    for (let i = 0; i < n; i++) {
      let at = 0;
      for (let attempt = 0; at < outageMs; attempt++) at += reconnectDelayMs(b, reconnectCeilingMs(b, attempt, at), random);
      back.push(at - outageMs);
    }
    const per100 = new Map<number, number>();
    for (const x of back) per100.set(Math.floor(x / 100), (per100.get(Math.floor(x / 100)) ?? 0) + 1);
    return { mean: back.reduce((s, x) => s + x, 0) / n, all: Math.max(...back), peakPerS: Math.max(...per100.values()) * 10 };
  };
  for (const outageMs of [2_000, 3_000, 9_000]) {
    const f = fleet(outageMs);
    t.comment(`${outageMs} ms outage: one agent back ${Math.round(f.mean)} ms after the controller on average, all within ${f.all} ms, at most ${f.peakPerS}/s`);
    t.ok(f.mean <= 2_000, `${outageMs} ms outage: one agent is back within 2 s on average (${Math.round(f.mean)} ms)`);
    t.ok(f.all >= 3_000, `${outageMs} ms outage: the fleet spreads over at least 3 s (${f.all} ms)`);
    t.ok(f.peakPerS <= 1_500, `${outageMs} ms outage: at most 1500 agents/s in any 100 ms (${f.peakPerS}/s)`);
  }
});

t.test('the first retry after a dropped stream is quick and spread evenly over its window', async (t: Test) => {
  // A replica dies: every agent it held sees its stream drop in the same instant and draws its
  // first delay (attempt 0, down for 0 ms). Each must retry within 250–500 ms (quick: the other
  // replica is up), and the draws must not pile up at one moment (they used to: half of them
  // were exactly 250 ms, so half a dead replica's agents handshook with the survivor at once).
  let seed = 7;
  const random = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const b = DEFAULT_RECONNECT_BACKOFF;
  const n = 1000;
  const delays = Array.from({ length: n }, () => reconnectDelayMs(b, reconnectCeilingMs(b, 0, 0), random));
  t.equal(Math.min(...delays) >= 250 && Math.max(...delays) <= 500, true, `every first retry within 250–500 ms (${Math.min(...delays)}–${Math.max(...delays)} ms)`);
  const per25 = new Map<number, number>();
  for (const d of delays) per25.set(Math.floor(Math.min(d, 499) / 25), (per25.get(Math.floor(Math.min(d, 499) / 25)) ?? 0) + 1);
  const peak = Math.max(...per25.values());
  t.equal(per25.size, 10, 'every 25 ms of the window gets retries');
  t.ok(peak <= n / 10 * 1.5, `no 25 ms slot gets more than 1.5× its even share (${peak} of ${n})`);
  t.equal(delays.filter((d) => d === 250).length <= n / 50, true, `few draws sit on the floor itself (${delays.filter((d) => d === 250).length})`);
  // The bounds: random() = 0 gives the floor, random() = 1 the ceiling.
  t.equal(reconnectDelayMs(b, 500, () => 0), 250);
  t.equal(reconnectDelayMs(b, 500, () => 1), 500);
  t.equal(reconnectDelayMs(b, 4_000, () => 1), 4_000);
});
