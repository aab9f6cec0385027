// ProcNetUsageReader against REAL containers of a private engine, all with
// --network none (their own namespace, only `lo`): traffic stays inside the
// namespaces these tests made.
// - one holds 500 TCP connections to busybox httpd on 127.0.0.1 inside itself
//   (each httpd child waits 60 s for a request line, so they stay open);
// - one pushes 64 MiB through nc over its loopback to an echoing nc (so 128
//   MiB cross lo), measured as growth between reads;
// - both ways of counting sockets agree with what was opened, and what each costs;
// - --network host → null; a removed container's pid → null.
import t from 'tap';
import { LABEL_ARGS, removeLabelledContainers, useEngine, type Engine } from '../../../../test/helpers/engine';
import { ProcNetUsageReader } from '../../src/resources/net-usage';
import type { NetUsage, ResourceTarget } from '../../src/resources/types';

const CONNECTIONS = 500;
const MiB = 1024 * 1024;

async function target(engine: Engine, id: string): Promise<ResourceTarget> {
  const pid = Number(await engine.dockerOk(['inspect', '-f', '{{.State.Pid}}', id]));
  return { id, pid };
}

/** Reads until `ok` holds or the time is up; returns the last reading. */
async function readUntil(reader: ProcNetUsageReader, tg: ResourceTarget, ok: (u: NetUsage | null) => boolean, ms: number): Promise<NetUsage | null> {
  const end = Date.now() + ms;
  let u = await reader.read(tg);
  while (!ok(u) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 250));
    u = await reader.read(tg);
  }
  return u;
}

t.test('real namespaces: connections counted, loopback traffic measured, host network and gone pids are null', async (t) => {
  const engine = await useEngine(t);
  t.teardown(() => removeLabelledContainers(engine));
  const reader = await ProcNetUsageReader.create();
  const scanner = await ProcNetUsageReader.create({ sockets: 'scan' });
  const uniq = `${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
  const run = (name: string, net: string, script: string): Promise<string> =>
    engine.dockerOk(['run', '-d', '--network', net, ...LABEL_ARGS, '--name', `${name}-${uniq}`, engine.image, 'sh', '-c', script]);

  // Clients hold their connection with stdin on a fifo nobody writes; paced in
  // batches of 20 so httpd's small listen backlog (9) keeps up accepting.
  const conns = await run('conns', 'none', [
    'httpd -f -p 127.0.0.1:9000 -h /tmp &',
    'sleep 0.2; mkfifo /hold; exec 3<>/hold; i=0',
    `while [ $i -lt ${CONNECTIONS} ]; do nc 127.0.0.1 9000 <&3 >/dev/null & i=$((i+1)); [ $((i % 20)) = 0 ] && sleep 0.1; done`,
    'echo opened; sleep 120',
  ].join('\n'));
  const pusher = await run('pusher', 'none', 'nc -ll -p 9100 -e cat >/dev/null & sleep 120');
  const host = await run('hostnet', 'host', 'sleep 120');

  // 500 client sockets plus 500 accepted ones, all ESTABLISHED, plus the listener.
  const tc = await target(engine, conns);
  const started = Date.now();
  // Until every connection is up (both ends, plus the listener): under load the clients are
  // still being started when 2 × CONNECTIONS sockets first show (seen in CI: one short).
  let u = await readUntil(reader, tc, (x) => (x?.tcpConnections ?? 0) >= 2 * CONNECTIONS + 1, 30_000);
  t.ok(u, 'own namespace: measured');
  t.ok(u!.tcpConnections >= CONNECTIONS, `${u!.tcpConnections} TCP connections ≥ ${CONNECTIONS} (took ${Date.now() - started} ms)`);
  let s: NetUsage | null;
  if (u!.tcpConnections === 2 * CONNECTIONS + 1) {
    t.equal(u!.sockets, 2 * CONNECTIONS + 1, 'sockstat: both ends of every connection are in the namespace, plus the listener');
    s = await scanner.read(tc);
    t.equal(s!.tcpConnections, 2 * CONNECTIONS, 'scan: the same connections, the LISTEN socket excluded');
  } else {
    // Under CI load a few clients never got past busybox httpd's listen backlog of 9
    // within 30 s (seen: 7 of 500, both ends missing, in the landing CI) and later ones
    // would meet httpd's 60 s request timeout. The reader is what is under test, not
    // httpd: wait until the table stops changing, then the two independent ways of
    // counting must agree on the connections that are there, and most must be there.
    let before: NetUsage | null;
    let tries = 0;
    do {
      before = await reader.read(tc);
      s = await scanner.read(tc);
      u = await reader.read(tc);
    } while ((before!.tcpConnections !== u!.tcpConnections || s!.tcpConnections !== u!.tcpConnections - 1) && ++tries < 20 && (await new Promise((r) => setTimeout(r, 250))) === undefined);
    t.comment(`only ${u!.tcpConnections} of ${2 * CONNECTIONS + 1} sockets up after 30 s; comparing the two counts on what is there (${tries} re-reads)`);
    t.ok(u!.tcpConnections >= 1.9 * CONNECTIONS, `most connections up: ${u!.tcpConnections}`);
    t.equal(s!.tcpConnections, u!.tcpConnections - 1, 'scan: the same connections as sockstat, the LISTEN socket excluded');
    t.equal(u!.sockets, u!.tcpConnections, 'sockstat: every TCP socket is a socket (no UDP or unix in the namespace)');
  }
  t.ok(u!.rxBytes > 0 && u!.rxBytes === u!.loopbackRxBytes, 'the handshakes went over lo, the only interface');
  t.equal(s!.sockets, u!.sockets, 'scan counts the same sockets as sockstat');
  t.notOk(s!.socketsTruncated);
  // Cost per read on the real /proc, kernel time included (process CPU: the thread pool's too).
  for (const [name, r] of [['sockstat', reader], ['scan', scanner]] as const) {
    const runs = 20;
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < runs; i++) await r.read(tc);
    const c = process.cpuUsage(c0);
    t.comment(`${name}: read() with ${u!.sockets} real sockets: ${(Number(process.hrtime.bigint() - t0) / runs / 1e6).toFixed(2)} ms wall, ` +
      `${(c.user / runs / 1000).toFixed(2)} ms user + ${(c.system / runs / 1000).toFixed(2)} ms system CPU per read`);
  }

  // Traffic: 64 MiB through nc over the pusher's loopback (docker exec joins its namespace).
  const tp = await target(engine, pusher);
  const before = await readUntil(reader, tp, (x) => (x?.sockets ?? 0) >= 1, 5000);
  t.ok(before, 'pusher measured');
  await engine.dockerOk(['exec', pusher, 'sh', '-c', 'dd if=/dev/zero bs=65536 count=1024 2>/dev/null | nc -w 5 127.0.0.1 9100 >/dev/null']);
  const after = await reader.read(tp);
  const rx = after!.rxBytes - before!.rxBytes;
  const tx = after!.txBytes - before!.txBytes;
  t.ok(rx >= 128 * MiB && rx < 150 * MiB, `rx grew by ${(rx / MiB).toFixed(1)} MiB (64 MiB each way; over lo every byte sent is also received)`);
  t.ok(tx >= 128 * MiB && tx < 150 * MiB, `tx grew by ${(tx / MiB).toFixed(1)} MiB`);
  t.ok(after!.rxPackets > before!.rxPackets && after!.txPackets > before!.txPackets, 'packets too');
  t.equal(after!.loopbackRxBytes, after!.rxBytes, 'all of it on lo');
  t.equal(after!.rxDropped, 0);

  // --network host: the host's counters are not this container's.
  t.equal(await reader.read(await target(engine, host)), null, '--network host → null');
  t.equal(await scanner.read(await target(engine, host)), null, 'in either mode');

  // Gone: the pid of a removed container.
  await engine.dockerOk(['rm', '-f', pusher]);
  t.equal(await reader.read(tp), null, 'removed container (pid gone) → null, no throw');
  t.equal(await scanner.read(tp), null, 'in either mode');
});
