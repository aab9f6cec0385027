// The gRPC port's accept queue: a replica taking over a dead one's agents gets hundreds of
// connects within a second while its event loop is busy with their handshakes. With Node's
// default backlog (511) the kernel dropped the SYNs past the queue and those agents' TCP stacks
// tried again only 1 s later, then 3 s, 7 s (BENCHMARKS.md, failover at fleet size). Here the
// real controller gRPC server's process is kept busy (a busy-wait, as a takeover keeps it) while
// N raw TCP connects arrive; the kernel completes a connect only while the queue has room, so
// the connects completed right after the busy spell show the queue's size. Linux only (the
// kernel's accept queue; capped by net.core.somaxconn, read here).
import t, { type Test } from 'tap';
import { connect, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '@bulkhead/shared';
import { initPki } from '../../src/pki/data-dir';
import { openStore } from '../../src/store/open-store';
import { newDatabase } from '../store/fixtures/backend';
import { GRPC_LISTEN_BACKLOG, startGrpcServer } from '../../src/grpc/grpc-server';

const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim());
/** More connects than Node's default backlog holds (511 + 1), fewer than the kernel's cap. */
const N = Math.min(900, somaxconn - 1);

async function server(t: Test, listenBacklog?: number) {
  const dir = t.testdir();
  const logger = createLogger({ name: 'backlog-test', level: 'error' });
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  const store = await openStore(await newDatabase(join(dir, 'ctl', 'bulkhead.db')));
  await store.migrate();
  const g = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger, ...(listenBacklog !== undefined ? { listenBacklog } : {}) });
  t.teardown(async () => {
    await g.shutdown();
    await store.close();
  });
  return g;
}

/** Opens n connects, keeps this process busy for busyMs, then counts those completed 300 ms later (a dropped SYN is retried after 1 s). */
async function connectsDuringBusySpell(port: number, n: number, busyMs: number): Promise<number> {
  const sockets: Socket[] = [];
  let connected = 0;
  for (let i = 0; i < n; i++) {
    const s = connect({ host: '127.0.0.1', port });
    s.on('connect', () => (connected += 1));
    s.on('error', () => undefined);
    sockets.push(s);
  }
  // The connect() calls go out before this runs; the kernel answers them meanwhile, but
  // nothing accepts: the server's loop is this one.
  await new Promise<void>((r) => setImmediate(r));
  const until = Date.now() + busyMs;
  while (Date.now() < until) { /* busy, as a replica in a takeover */ }
  await new Promise((r) => setTimeout(r, 300));
  const n2 = connected;
  for (const s of sockets) s.destroy();
  return n2;
}

t.test('the gRPC port queues a takeover\'s connects instead of dropping them', { skip: N < 600 ? `net.core.somaxconn is ${somaxconn}: too small to tell` : false }, async (t) => {
  t.ok(GRPC_LISTEN_BACKLOG >= 4096, 'the default backlog is the kernel\'s usual cap, not Node\'s 511');
  const g = await server(t);
  const done = await connectsDuringBusySpell(g.port, N, 500);
  t.equal(done, N, `all ${N} connects completed at once with the default backlog`);
});

t.test('with Node\'s backlog (511) the same connects past the queue wait for a SYN retransmit', { skip: N < 600 ? `net.core.somaxconn is ${somaxconn}: too small to tell` : false }, async (t) => {
  // The control: shows the test can fail (what bindAsync gave before).
  const g = await server(t, 511);
  const done = await connectsDuringBusySpell(g.port, N, 500);
  t.ok(done <= 512 + 10 && done < N, `${done} of ${N} completed (the queue holds 512)`);
});
