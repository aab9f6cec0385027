// stallAwareTimeout with a real event-loop stall and real socket input: a
// timer that comes due while this process cannot run must not act before the
// input that arrived meanwhile is read.
import t from 'tap';
import * as net from 'node:net';
import { STALL_MAX_RECHECKS, stallAwareTimeout } from '../../src/link/stall-aware-timer';

/** Blocks this process's event loop for `ms` (a CPU-starved or busy process). */
function stall(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* busy */ }
}

/** A connected loopback socket pair. */
async function socketPair(t: tap.Test): Promise<{ client: net.Socket; server: net.Socket }> {
  let server!: net.Socket;
  const accepted = new Promise<void>((r) => {
    const srv = net.createServer((s) => {
      server = s;
      r();
    });
    srv.listen(0, '127.0.0.1', () => {
      client = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
    });
    t.teardown(() => {
      client.destroy();
      server?.destroy();
      srv.close();
    });
  });
  let client!: net.Socket;
  await accepted;
  await new Promise<void>((r) => (client.readyState === 'open' ? r() : client.once('connect', () => r())));
  return { client, server };
}

t.test('a deadline that came due during a stall waits for the input that arrived meanwhile', async (t) => {
  const { client, server } = await socketPair(t);
  let received = false;
  server.on('data', () => (received = true));
  let verdict: boolean | undefined;
  const fired = new Promise<void>((r) => {
    const timer = stallAwareTimeout(() => {
      verdict = received; // the old plain setTimeout saw `false` here
      t.ok(timer.rechecks >= 1, `re-checked ${timer.rechecks} time(s) after the stall`);
      r();
    }, 100, { ref: true });
  });
  // The answer arrives in time (the write reaches the kernel at once), but this process stalls
  // past the deadline before it could read it.
  client.write('welcome');
  stall(600);
  await fired;
  t.equal(verdict, true, 'the deadline saw the input that arrived during the stall');
});

t.test('on time, it fires on time; without input it still fires after a stall', async (t) => {
  let started = performance.now();
  await new Promise<void>((r) => stallAwareTimeout(r, 80, { ref: true }));
  const onTime = performance.now() - started;
  t.ok(onTime >= 75 && onTime < 2_000, `fired after ${onTime.toFixed(0)} ms`);

  started = performance.now();
  let rechecks = -1;
  await new Promise<void>((r) => {
    const timer = stallAwareTimeout(() => {
      rechecks = timer.rechecks;
      r();
    }, 50, { ref: true });
    stall(500);
  });
  t.ok(rechecks >= 1 && rechecks <= STALL_MAX_RECHECKS, `fired after ${rechecks} re-check(s)`);
  t.ok(performance.now() - started < 5_000, 'a stall delays the verdict a little, not for ever');
});

t.test('a process that keeps stalling still times out (bounded re-checks)', async (t) => {
  const started = performance.now();
  let rechecks = -1;
  let ticks = 0;
  // Every 20 ms the process stalls 400 ms: each re-check fires late again.
  const staller = setInterval(() => {
    ticks += 1;
    stall(400);
  }, 20);
  t.teardown(() => clearInterval(staller));
  await new Promise<void>((r) => {
    const timer = stallAwareTimeout(() => {
      rechecks = timer.rechecks;
      r();
    }, 30, { ref: true });
  });
  clearInterval(staller);
  t.equal(rechecks, STALL_MAX_RECHECKS, `gave up re-checking after ${rechecks}`);
  t.ok(ticks >= STALL_MAX_RECHECKS, `the process stalled ${ticks} times`);
  t.ok(performance.now() - started < 30_000, 'and fired');
});

t.test('clear() cancels, also during a re-check', async (t) => {
  let ran = false;
  const a = stallAwareTimeout(() => (ran = true), 20);
  a.clear();
  const b = stallAwareTimeout(() => (ran = true), 20);
  stall(400);
  setImmediate(() => b.clear()); // after the late firing scheduled its re-check
  await new Promise((r) => setTimeout(r, 300));
  t.equal(ran, false, 'neither ran');
});

t.test('afterInput: the first verdict comes after the pending input was read', async (t) => {
  const { client, server } = await socketPair(t);
  let received = false;
  server.on('data', () => (received = true));
  client.write('ack');
  let verdict: boolean | undefined;
  await new Promise<void>((r) => stallAwareTimeout(() => {
    verdict = received;
    r();
  }, 0, { afterInput: true, ref: true }));
  t.equal(verdict, true, 'the input was read first');
});
