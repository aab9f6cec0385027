// ProcNetUsageReader on /proc fixture trees in the kernel's format (captured
// from a real container namespace, see fixtures/README.md), on generated
// socket files of 2,000 and 20,000 lines (parse cost, lines split across
// reads, the byte cap), and on this process's real /proc.
import t, { type Test } from 'tap';
import { cpSync, linkSync, mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { symlinkSync } from 'node:fs';
import { countSocketLines, parseNetDev, parseSockstat, parseStartTime, ProcNetUsageReader } from '../../src/resources/net-usage';
import type { ResourceTarget } from '../../src/resources/types';

const FIX = join(__dirname, 'fixtures/proc');
const target = (pid: number): ResourceTarget => ({ id: `c${pid}`, pid });

function copy(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'bk-net-'));
  cpSync(FIX, dir, { recursive: true });
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const TCP4_HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     \n';
const TCP6_HEADER = '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';

/** n IPv4 TCP lines in the kernel's fixed-width format (149 chars + newline), states cycling through `states`. */
function tcp4(n: number, states: string[]): string {
  let s = TCP4_HEADER;
  for (let i = 0; i < n; i++) {
    const port = (1024 + (i % 60000)).toString(16).toUpperCase().padStart(4, '0');
    const line = `${String(i).padStart(4)}: 0100007F:2328 0100007F:${port} ${states[i % states.length]} 00000000:00000000 00:00000000 00000000     0        0 ${6000000 + i} 1 00000000dc725226 20 4 30 10 -1`;
    s += `${line.padEnd(149)}\n`;
  }
  return s;
}

function tcp6(n: number, state: string): string {
  let s = TCP6_HEADER;
  for (let i = 0; i < n; i++) {
    s += `${String(i).padStart(4)}: 0000000000000000FFFF00000100007F:238C 0000000000000000FFFF00000100007F:${(2000 + i).toString(16).toUpperCase().padStart(4, '0')} ${state} 00000000:00000000 02:000AFB6E 00000000     0        0 ${7000000 + i} 2 00000000dc725227 20 4 30 10 -1\n`;
  }
  return s;
}

t.test('parseNetDev: every interface summed, loopback included and reported apart', async (t) => {
  const d = parseNetDev(
    'Inter-|   Receive                                                |  Transmit\n' +
      ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n' +
      '    lo:     616      11    0    0    0     0          0         0      616      11    0    0    0     0       0          0\n' +
      '  eth0: 1048576     800    0    3    0     0          0         0   524288     400    0    1    0     0       0          0\n' +
      'eth1:12345678901 5 0 0 0 0 0 0 9 1 0 0 0 0 0 0\n' +
      '  bad: 1 2 3\n',
  );
  t.same(d, {
    rxBytes: 616 + 1048576 + 12345678901, txBytes: 616 + 524288 + 9, rxPackets: 816, txPackets: 412, rxDropped: 3, txDropped: 1,
    loopbackRxBytes: 616, loopbackTxBytes: 616,
  }, 'no space after the colon (wide counters) is parsed too; short lines are skipped');
  t.same(parseNetDev(''), { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, rxDropped: 0, txDropped: 0, loopbackRxBytes: 0, loopbackTxBytes: 0 });
});

t.test('countSocketLines: connections are every TCP state but LISTEN, TIME_WAIT and CLOSE', async (t) => {
  // 01 ESTABLISHED 02 SYN_SENT 03 SYN_RECV 04 FIN_WAIT1 05 FIN_WAIT2 06 TIME_WAIT 07 CLOSE 08 CLOSE_WAIT 09 LAST_ACK 0A LISTEN 0B CLOSING
  const all = ['01', '02', '03', '04', '05', '06', '07', '08', '09', '0A', '0B'];
  t.same(countSocketLines(tcp4(11, all), true), { sockets: 11, connections: 8, truncated: false });
  t.same(countSocketLines(tcp6(5, '01'), true), { sockets: 5, connections: 5, truncated: false });
  t.same(countSocketLines(tcp6(5, '0A'), true), { sockets: 5, connections: 0, truncated: false });
  t.same(countSocketLines(TCP4_HEADER, true), { sockets: 0, connections: 0, truncated: false }, 'header only');
  t.same(countSocketLines('', true), { sockets: 0, connections: 0, truncated: false });
  t.equal(countSocketLines(tcp4(3, ['01']).trimEnd(), true).sockets, 3, 'a last line without a newline counts');
  t.same(countSocketLines(`${TCP4_HEADER}   0: 0100007F:2328    0100007F:0001   01 junk\n   1: x y ZZ\n`, true), { sockets: 2, connections: 1, truncated: false }, 'odd spacing: found by the field scan; an unreadable state is no connection');
  t.same(countSocketLines(tcp4(4, ['01']), false), { sockets: 4, connections: 0, truncated: false }, 'UDP: lines only');
});

t.test('parseSockstat: per-namespace TCP/UDP counters of both families', async (t) => {
  t.same(parseSockstat('sockets: used 42\nTCP: inuse 41 orphan 0 tw 3 alloc 48 mem 165\nUDP: inuse 2 mem 0\nUDPLITE: inuse 9\nRAW: inuse 9\nTCP6: inuse 4\nUDP6: inuse 1\n'),
    { tcpInuse: 45, tcpTimeWait: 3, udpInuse: 3 });
  t.same(parseSockstat('TCP: inuse x\n\n'), { tcpInuse: 0, tcpTimeWait: 0, udpInuse: 0 });
});

t.test('read(): the fixture namespace, both ways of counting sockets', async (t) => {
  const r = await ProcNetUsageReader.create({ procRoot: FIX });
  t.equal(r.hostNetns.size, 2, 'pid 1 and self');
  t.equal(r.mode, 'sockstat', 'the O(1) counters by default');
  const traffic = { rxBytes: 1049192, txBytes: 524904, rxPackets: 811, txPackets: 411, rxDropped: 3, txDropped: 1, loopbackRxBytes: 616, loopbackTxBytes: 616 };
  t.same(await r.read(target(4242)), { ...traffic, tcpConnections: 10, sockets: 14 }, 'sockstat: listeners counted as connections');
  const scan = await ProcNetUsageReader.create({ procRoot: FIX, sockets: 'scan' });
  t.same(await scan.read(target(4242)), { ...traffic, tcpConnections: 8, sockets: 15 }, 'scan: exact states');
  await t.rejects(ProcNetUsageReader.create({ procRoot: FIX, sockets: 'netlink' as 'scan' }), /expected 'sockstat' or 'scan'/);
  t.equal(await r.read(target(0)), null, 'pid 0 (not running) → null');
  t.equal(await r.read(target(99999)), null, 'no such pid → null, no throw');
  r.forget('c4242');
});

t.test('read(): host namespace → null; gone mid-read → null; no IPv6 → 0 sockets there', async (t) => {
  const root = copy(t);
  const r0 = await ProcNetUsageReader.create({ procRoot: root, sockets: 'scan' });
  const counters = await ProcNetUsageReader.create({ procRoot: root });
  // --network host: the container's ns/net is the host's (same inode).
  mkdirSync(join(root, '777/ns'), { recursive: true });
  cpSync(join(root, '4242/net'), join(root, '777/net'), { recursive: true });
  linkSync(join(root, '1/ns/net'), join(root, '777/ns/net'));
  t.equal(await r0.read(target(777)), null, "same namespace as pid 1 → null");
  t.equal(await counters.read(target(777)), null, 'in either mode');
  unlinkSync(join(root, '777/ns/net'));
  linkSync(join(root, 'self/ns/net'), join(root, '777/ns/net'));
  t.equal(await r0.read(target(777)), null, "same namespace as the agent → null");
  // A sandbox where pid 1's links cannot be read: self alone is the host.
  rmSync(join(root, '1'), { recursive: true });
  const r1 = await ProcNetUsageReader.create({ procRoot: root });
  t.equal(r1.hostNetns.size, 1);
  t.equal(await r1.read(target(777)), null);
  rmSync(join(root, 'self'), { recursive: true });
  await t.rejects(ProcNetUsageReader.create({ procRoot: root }), /cannot read the host's network namespace/);
  // The process exits between the namespace check and the files.
  rmSync(join(root, '4242/net/dev'));
  t.equal(await r0.read(target(4242)), null, 'net/dev gone → null');
  t.equal(await counters.read(target(4242)), null, 'in either mode');
  cpSync(join(FIX, '4242/net/dev'), join(root, '4242/net/dev'));
  rmSync(join(root, '4242/net/tcp6'));
  rmSync(join(root, '4242/net/udp6'));
  const v4 = await r0.read(target(4242));
  t.same([v4?.tcpConnections, v4?.sockets], [7, 11], 'a kernel without IPv6 has no tcp6/udp6: counted as none');
  rmSync(join(root, '4242/net/sockstat6'));
  const c4 = await counters.read(target(4242));
  t.same([c4?.tcpConnections, c4?.sockets], [8, 11], 'nor sockstat6');
  // A permission error is not "gone": it surfaces.
  writeFileSync(join(root, '4242/net/tcp6'), tcp6(1, '01'));
  const denied = join(root, '4242/net/udp');
  rmSync(denied);
  mkdirSync(denied);
  await t.rejects(r0.read(target(4242)), { code: 'EISDIR' });
});

t.test('parse cost, lines split across 64 KiB reads, and the byte cap', async (t) => {
  const root = copy(t);
  const r = await ProcNetUsageReader.create({ procRoot: root, sockets: 'scan' });
  const net = join(root, '4242/net');
  for (const n of [2_000, 20_000]) {
    // Half established, a quarter TIME_WAIT, a quarter LISTEN/CLOSE.
    writeFileSync(join(net, 'tcp'), tcp4(n, ['01', '06', '01', '0A', '01', '07', '01', '08']));
    writeFileSync(join(net, 'tcp6'), tcp6(n / 10, '01'));
    const first = await r.read(target(4242));
    t.equal(first?.tcpConnections, n * 5 / 8 + n / 10, `${n} lines: every line of every 64 KiB read is counted`);
    t.equal(first?.sockets, n + n / 10 + 2 + 1);
    t.notOk(first?.socketsTruncated);
    const runs = 20;
    for (let i = 0; i < 5; i++) await r.read(target(4242)); // warm up the JIT
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < runs; i++) await r.read(target(4242));
    const perRead = Number(process.hrtime.bigint() - t0) / runs / 1e6;
    // Only the scan (no I/O): the part that runs on the event loop.
    const text = Buffer.from(tcp4(n, ['01']), 'latin1');
    for (let i = 0; i < 5; i++) countSocketLines(text, true);
    const s0 = process.hrtime.bigint();
    for (let i = 0; i < runs; i++) countSocketLines(text, true);
    const scan = Number(process.hrtime.bigint() - s0) / runs / 1e6;
    t.comment(`${n} TCP lines (${(text.length / 1024).toFixed(0)} KiB): read() ${perRead.toFixed(2)} ms (file I/O included), scan alone ${scan.toFixed(2)} ms`);
    t.ok(scan < 100, `scan of ${n} lines well under 100 ms (${scan.toFixed(2)} ms)`);
  }
  const capped = await ProcNetUsageReader.create({ procRoot: root, sockets: 'scan', maxSocketFileBytes: 64 * 1024 });
  const c = await capped.read(target(4242));
  t.equal(c?.socketsTruncated, true, '3 MB tcp file, 64 KiB cap → truncated');
  t.ok(c!.sockets > 400 && c!.sockets < 2000 + 3, `lower-bound counts (${c!.sockets} sockets)`);
});

t.test('read(): a net/dev larger than one read (many interfaces)', async (t) => {
  const root = copy(t);
  let dev = 'Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n';
  for (let i = 0; i < 2000; i++) dev += `  veth${i}: 1000 10 0 1 0 0 0 0 500 5 0 2 0 0 0 0\n`;
  writeFileSync(join(root, '4242/net/dev'), dev);
  const u = await (await ProcNetUsageReader.create({ procRoot: root, maxDevFileBytes: 1024 * 1024 })).read(target(4242));
  t.same([u?.rxBytes, u?.txPackets, u?.rxDropped, u?.txDropped], [2_000_000, 10_000, 2000, 4000], `${dev.length} bytes (more than the 64 KiB buffer), every line counted`);
  t.notOk(u?.devTruncated, 'under the cap: not truncated');
});

t.test('read(): net/dev between the 4 KiB first buffer and the cap is read whole, in both modes; reads repeat with reused buffers', async (t) => {
  const root = copy(t);
  for (const n of [1, 40, 60, 300, 1000]) {
    let dev = 'Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n';
    for (let i = 0; i < n; i++) dev += `  veth${i}: 1000 10 0 1 0 0 0 0 500 5 0 2 0 0 0 0\n`;
    writeFileSync(join(root, '4242/net/dev'), dev);
    for (const mode of ['sockstat', 'scan'] as const) {
      const r = await ProcNetUsageReader.create({ procRoot: root, sockets: mode });
      // Three rounds of 40 reads at once: more than the buffers kept (32), each answer whole.
      for (let round = 0; round < 3; round++) {
        const all = await Promise.all(Array.from({ length: 40 }, () => r.read(target(4242))));
        for (const u of all) {
          if (u?.rxBytes !== n * 1000 || u.txDropped !== n * 2 || u.devTruncated) {
            t.fail(`${mode}, ${n} interfaces (${dev.length} bytes), round ${round}: ${JSON.stringify(u)}`);
            return;
          }
        }
      }
      t.pass(`${mode}: ${n} interfaces (${dev.length} bytes) counted whole, 120 reads`);
    }
  }
});

t.test('net/dev is read and parsed up to a cap: 100,000 interfaces do not hold the event loop', async (t) => {
  const root = copy(t);
  const header = 'Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n';
  let dev = header;
  const line = (i: number): string => `dummy${String(i).padStart(6, '0')}: 123456789 12345 0 1 0 0 0 0 987654321 54321 0 2 0 0 0 0\n`;
  for (let i = 0; i < 100_000; i++) dev += line(i);
  writeFileSync(join(root, '4242/net/dev'), dev);
  t.ok(dev.length > 6 * 1024 * 1024, `${dev.length} bytes of net/dev`);
  for (const mode of ['sockstat', 'scan'] as const) {
    const r = await ProcNetUsageReader.create({ procRoot: root, sockets: mode });
    await r.read(target(4242)); // warm up
    const t0 = process.hrtime.bigint();
    const u = await r.read(target(4242));
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    t.equal(u?.devTruncated, true, `${mode}: marked truncated`);
    // Whole lines within the default 64 KiB only: each adds exactly its own figures.
    const fit = Math.floor((64 * 1024 - header.length) / line(0).length);
    t.equal(u?.rxBytes, fit * 123456789, `${mode}: the ${fit} whole lines within 64 KiB, no cut line`);
    t.equal(u?.txDropped, fit * 2);
    t.ok(ms < 50, `${mode}: read() took ${ms.toFixed(1)} ms (the whole file: ~600 ms to parse)`);
  }
  // Exactly at the cap: all of it, not truncated.
  let exact = header;
  for (let i = 0; exact.length + line(i).length <= 64 * 1024; i++) exact += line(i);
  exact = exact.padEnd(64 * 1024, '\n');
  writeFileSync(join(root, '4242/net/dev'), exact);
  const u = await (await ProcNetUsageReader.create({ procRoot: root })).read(target(4242));
  t.notOk(u?.devTruncated, 'a file of exactly the cap is whole');
  await t.rejects(ProcNetUsageReader.create({ procRoot: root, maxDevFileBytes: 10 }), /maxDevFileBytes/);
});

t.test("this process's real /proc: own namespace → null", async (t) => {
  const r = await ProcNetUsageReader.create();
  t.equal(await r.read(target(process.pid)), null, 'the agent is in the host namespace: nothing to charge');
});

t.test('parseStartTime: field 22 counted from the last parenthesis', async (t) => {
  t.equal(parseStartTime('4242 (my (weird) init) S 4200 4242 4242 0 -1 4194560 1200 0 0 0 3 2 0 0 20 0 1 0 98765432 4567040 210 1 2\n'), '98765432');
  t.equal(parseStartTime('1 (a b) S 0 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 7 8 9\n'), '7');
  t.equal(parseStartTime('garbage'), null);
  t.equal(parseStartTime('1 (x) S 0 1'), null, 'too short');
});

/** A `sleep` in a network namespace of its own (unshare -n execs it in place: same pid). */
async function nsSleeper(t: Test): Promise<ChildProcess> {
  const c = spawn('unshare', ['-n', 'sleep', '30'], { stdio: 'ignore' });
  t.teardown(() => {
    c.kill('SIGKILL');
  });
  // Wait for the exec: until then /proc/<pid> is unshare itself, still in our namespace.
  const { readlinkSync, readFileSync } = await import('node:fs');
  for (let i = 0; i < 200; i++) {
    try {
      if (readFileSync(`/proc/${c.pid}/comm`, 'utf8').trim() === 'sleep' && readlinkSync(`/proc/${c.pid}/ns/net`) !== readlinkSync('/proc/self/ns/net')) return c;
    } catch {
      // not there yet
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('unshare -n sleep did not start');
}

t.test('a reused pid is not charged to the container: the start time names the process', { skip: process.getuid?.() === 0 ? false : 'needs root for unshare -n' }, async (t) => {
  // Real processes and the real /proc; "pid 4242" is a slot in a proc root of symlinks, so the
  // test can hand the same pid number to another process, as the kernel does on pid reuse.
  const root = mkdtempSync(join(tmpdir(), 'bk-netpid-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  symlinkSync('/proc/1', join(root, '1'));
  symlinkSync(`/proc/${process.pid}`, join(root, 'self'));
  const first = await nsSleeper(t);
  symlinkSync(`/proc/${first.pid}`, join(root, '4242'));
  const r = await ProcNetUsageReader.create({ procRoot: root });
  const c = { id: 'c1', pid: 4242 };
  const u1 = await r.read(c);
  t.ok(u1, 'the container\'s own process: read');
  t.equal(u1?.rxBytes, 0, 'a fresh namespace: nothing yet');
  t.ok(await r.read(c), 'and again');
  first.kill('SIGKILL');
  await new Promise((res) => first.once('exit', res));
  // The pid now names another process (its own namespace too, started later).
  const second = await nsSleeper(t);
  rmSync(join(root, '4242'));
  symlinkSync(`/proc/${second.pid}`, join(root, '4242'));
  t.equal(await r.read(c), null, 'another process under the old pid: null');
  t.equal(await r.read(c), null, 'and stays so (not re-learnt on the next read)');
  t.ok(await r.read({ id: 'c2', pid: 4242 }), 'another container id first seen with it: its own identity');
  symlinkSync(`/proc/${second.pid}`, join(root, '4243'));
  t.ok(await r.read({ id: 'c1', pid: 4243 }), 'the target\'s pid changed (container restarted): read again');
  r.forget('c1');
  t.ok(await r.read(c), 'after forget(): learnt anew');
  // Without the slot trick: the real pid of a process that exited is gone → null.
  t.equal(await (await ProcNetUsageReader.create()).read({ id: 'c3', pid: first.pid! }), null, 'the exited pid itself → null');
});
