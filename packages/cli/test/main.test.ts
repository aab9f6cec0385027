import t from 'tap';
import { execFile } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { createCa } from '@bulkhead/shared';
import { ApiClient } from '../src/client';
import { main, type OpsCliIo } from '../src/main';
import { formatTable, scrub } from '../src/table';
import { startApi } from '../../controller/test/api/fixtures/api-server';
import { IDS, NOW, seed } from '../../controller/test/api/fixtures/seed';
import { facts } from '../../controller/test/store/fixtures/records';

interface Run {
  code: number;
  out: string;
  err: string;
}

async function run(argv: string[], env: Record<string, string | undefined>): Promise<Run> {
  let out = '';
  let err = '';
  const io: Partial<OpsCliIo> = { out: (s) => void (out += s), err: (s) => void (err += s), env, now: () => NOW };
  const code = await main(argv, io);
  return { code, out, err };
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

t.test('table formatter', async (t) => {
  t.equal(formatTable(['A', 'BB', 'C'], [['xxx', 'y', 'z'], ['', 'long value', '']]), 'A    BB          C\nxxx  y           z\n     long value\n');
  t.equal(scrub('evil\u001b[31mred\u0007\r'), 'evil?[31mred??', 'control characters are neutralised');
});

t.test('ops CLI against the real API', async (t) => {
  const api = await startApi();
  t.teardown(() => api.close());
  await seed(api.store);
  // A hostile label value must not reach the terminal raw.
  await api.store.upsertContainer('agt_beta', facts({ id: IDS.api, name: '/api', imageRef: 'registry.example/nginx-api:2', labels: { env: 'prod', team: 'api', x: '\u001b]0;pwned\u0007' } }), NOW);
  const env = { BULKHEAD_API: api.url, BULKHEAD_CA: api.caFile, BULKHEAD_API_KEY: api.apiKey };

  t.test('agents (default list) as a table', async (t) => {
    const r = await run(['agents'], env);
    t.equal(r.code, 0, r.err);
    const lines = r.out.trimEnd().split('\n');
    t.match(lines[0], /^ID\s+HOSTNAME\s+STATUS\s+VERSION\s+CONTAINERS\s+LAST SEEN\s+CERT EXPIRES\s+POLICY$/);
    t.match(lines[1], /^agt_alpha\s+alpha\s+online\s+0\.1\.0\s+4\s+5s ago\s+2030-01-01\s+-$/);
    t.match(lines[2], /^agt_beta\s+beta\s+offline\s+-\s+1\s+never\s+2030-01-01\s+-$/);
    t.equal(lines[0]!.indexOf('HOSTNAME'), lines[1]!.indexOf(' alpha') + 1, 'columns align');
    t.equal((await run(['agents', 'list'], env)).out, r.out, '"agents list" is the same');
  });

  t.test('agents --json prints the API response', async (t) => {
    for (const argv of [['--json', 'agents'], ['agents', '--json']]) {
      const r = await run(argv, env);
      t.equal(r.code, 0);
      const body = JSON.parse(r.out) as { items: Array<{ id: string; containerCount: number }> };
      t.same(body.items.map((a) => [a.id, a.containerCount]), [['agt_alpha', 4], ['agt_beta', 1]]);
    }
  });

  t.test('agents get', async (t) => {
    const r = await run(['agents', 'get', 'agt_alpha'], env);
    t.equal(r.code, 0, r.err);
    t.match(r.out, /^ID:\s+agt_alpha$/m);
    t.match(r.out, /^Docker:\s+27\.3\.1 \(API 1\.47\)$/m);
    t.match(r.out, /^Memory:\s+8\.0 GiB$/m);
    t.match(r.out, /^Last seen:\s+2025-06-01T11:59:55\.000Z \(5s ago\)$/m);
    t.match(r.out, /^Policy:\s+none reported yet$/m);
    // A bundle the agent could not receive: the status and the reason, in the table and in `get`.
    await api.store.setAgentPolicyStatus({ agentId: 'agt_alpha', version: 4, applied: false, error: 'policy bundle could not be received: RESOURCE_EXHAUSTED: Received message larger than max (9437290 vs 8388608)', updatedAt: NOW });
    const failed = await run(['agents', 'get', 'agt_alpha'], env);
    t.match(failed.out, /^Policy:\s+v4 not applied: policy bundle could not be received: RESOURCE_EXHAUSTED: Received message larger than max \(9437290 vs 8388608\) \(0s ago\)$/m);
    const table = (await run(['agents'], env)).out.split('\n');
    t.match(table[1], /^agt_alpha\s+alpha\s+online\s+.*\s+v4 NOT APPLIED$/);
    t.match(table[2], /^agt_beta\s+.*\s+-$/);
    t.equal(table[3], '', 'a blank line after the table');
    t.match(table[4], /^agt_alpha:\s+v4 not applied: policy bundle could not be received: RESOURCE_EXHAUSTED/);
    const missing = await run(['agents', 'get', 'agt_nope'], env);
    t.equal(missing.code, 1, 'API error → 1');
    t.match(missing.err, /BK_ERR_NOT_FOUND: agent "agt_nope" not found \(HTTP 404\)/);
  });

  t.test('containers list with filters', async (t) => {
    // Live usage (issue 4) of one container, as an agent would have reported it.
    await api.store.usage!.applyUsage('agt_alpha', [{
      agentId: 'agt_alpha', containerId: IDS.web, takenAt: NOW, receivedAt: NOW, cpuPercent: 49.5, cpuPercentOfQuota: 99, cpuLimitCores: 0.5,
      memoryBytes: 24 * 1024 * 1024, memoryLimitBytes: 64 * 1024 * 1024, pids: 3, pidsLimit: 0,
      writableBytes: 200 * 1024 * 1024, logBytes: 12 * 1024 * 1024, blkioReadBytes: 1024 * 1024, blkioWriteBytes: 200 * 1024 * 1024, blkioReadOps: 7, blkioWriteOps: 1600,
      netRxBytes: 4096, netTxBytes: 8192, netRxPackets: 40, netTxPackets: 80, netRxDropped: 0, netTxDropped: 1, netRxBytesPerSec: 1024, netTxBytesPerSec: 512, tcpConnections: 2001, sockets: 2003,
    }], []);
    const all = await run(['containers'], env);
    t.equal(all.code, 0, all.err);
    const lines = all.out.trimEnd().split('\n');
    t.match(lines[0], /^AGENT\s+CONTAINER ID\s+NAME\s+IMAGE\s+STATE\s+CPU\s+MEM\s+DISK\s+NET\s+CONNS\s+UPDATED$/);
    t.equal(lines.length, 6, 'header + 5 live containers');
    t.match(all.out, new RegExp(`^agt_alpha\\s+${IDS.web.slice(0, 12)}\\s+web\\s+nginx:1\\.27\\s+running\\s+50%\\s+24\\.0 MiB/64\\.0 MiB\\s+212\\.0 MiB\\s+1\\.5 KiB/s\\s+2001\\s+1m ago$`, 'm'), 'disk = writable layer + logs, network = rx + tx per second, TCP connections');
    t.match(all.out, new RegExp(`^agt_alpha\\s+${IDS.job.slice(0, 12)}\\s+job\\s+\\S+\\s+exited\\s+-\\s+-\\s+-\\s+-\\s+-\\s+`, 'm'), 'no usage: dashes');

    const f = await run(['containers', '--agent', 'agt_alpha', '--image', 'nginx', '--label', 'env=prod', '--label', 'team'], env);
    t.equal(f.code, 0, f.err);
    t.equal(f.out.trimEnd().split('\n').length, 2);
    t.match(f.out, /\bweb\b/);

    const removed = await run(['containers', 'list', '--all', '--image', 'alpine'], env);
    t.match(removed.out, /old\s+alpine:3\s+running \(removed\)/);
    t.notMatch((await run(['containers', '--image', 'alpine'], env)).out, /\bold\b/, 'removed hidden without --all');

    const json = await run(['containers', '--state', 'exited', '--json'], env);
    t.equal(json.code, 0);
    t.match(JSON.parse(json.out), { items: [{ id: IDS.job, name: '/job', state: 'exited', facts: { labels: { env: 'dev' } } }] });

    const limited = await run(['--json', 'containers', '--limit', '2'], env);
    t.equal((JSON.parse(limited.out) as { items: unknown[] }).items.length, 2);
  });

  t.test('paging follows nextOffset', async (t) => {
    const client = new ApiClient({ baseUrl: api.url, apiKey: api.apiKey, caPem: api.ca.certPem });
    const items = await client.listAllContainers({}, Infinity, 2);
    t.same(items.map((c) => c.name), ['/job', '/twin-a', '/twin-b', '/web', '/api']);
  });

  t.test('containers get by name and prefix', async (t) => {
    const r = await run(['containers', 'get', 'agt_alpha', 'web'], env);
    t.equal(r.code, 0, r.err);
    t.match(r.out, new RegExp(`^ID:\\s+${IDS.web}$`, 'm'));
    t.match(r.out, /^Cap add:\s+NET_ADMIN$/m);
    t.match(r.out, /^Labels:\s+env=prod\n\s+team=web$/m);
    t.match(r.out, /^CPU:\s+50% of one core \(99% of its quota\)$/m, 'live usage (issue 4)');
    t.match(r.out, /^Memory:\s+24\.0 MiB\/64\.0 MiB$/m);
    t.match(r.out, /^Pids:\s+3 \(no limit\)$/m);
    t.match(r.out, /^Disk:\s+writable layer 200\.0 MiB, logs 12\.0 MiB$/m);
    t.match(r.out, /^Block IO:\s+read 1\.0 MiB \(7 ops\), written 200\.0 MiB \(1600 ops\)$/m);
    t.match(r.out, /^Network:\s+rx 4\.0 KiB \(1\.0 KiB\/s, 40 packets, 0 dropped\), tx 8\.0 KiB \(512 B\/s, 80 packets, 1 dropped\)$/m);
    t.match(r.out, /^Connections:\s+2001 TCP connections, 2003 sockets$/m);
    const byPrefix = await run(['--json', 'containers', 'get', 'agt_alpha', IDS.job.slice(0, 12)], env);
    t.equal((JSON.parse(byPrefix.out) as { name: string }).name, '/job');
    const ambiguous = await run(['containers', 'get', 'agt_alpha', 'abcdef012345'], env);
    t.equal(ambiguous.code, 1);
    t.match(ambiguous.err, /BK_ERR_BAD_REQUEST: .*matches 2 containers/);
    const hostile = await run(['containers', 'get', 'agt_beta', 'api'], env);
    t.notMatch(hostile.out, /\u001b/, 'no escape sequences reach the terminal');
    t.match(hostile.out, /x=\?\]0;pwned\?/);
  });

  t.test('a bad key is an API error (exit 1)', async (t) => {
    const r = await run(['agents'], { ...env, BULKHEAD_API_KEY: 'bk_ak_0000000000000000_' + '0'.repeat(64) });
    t.equal(r.code, 1);
    t.equal(r.out, '');
    t.match(r.err, /^bulkhead: BK_ERR_UNAUTHENTICATED: invalid API key \(HTTP 401\)\n$/);
    const flag = await run(['--api-key', 'garbage', 'agents'], env);
    t.equal(flag.code, 1, '--api-key overrides the environment');
    t.match(flag.err, /BK_ERR_UNAUTHENTICATED: malformed API key/);
  });

  t.test('connection and TLS failures exit 3', async (t) => {
    const port = await freePort();
    const down = await run(['agents'], { ...env, BULKHEAD_API: `https://127.0.0.1:${port}` });
    t.equal(down.code, 3);
    t.match(down.err, `bulkhead: cannot reach https://127.0.0.1:${port}: ECONNREFUSED`);

    const otherCa = await createCa('Someone Else');
    const otherCaFile = join(api.dir, 'other-ca.crt');
    writeFileSync(otherCaFile, otherCa.certPem);
    const tls = await run(['--ca', otherCaFile, 'agents'], env);
    t.equal(tls.code, 3);
    t.match(tls.err, /TLS handshake with https:\/\/127\.0\.0\.1:\d+ failed: .*\((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\).*--ca/);

    const plain = createHttpServer((_req, res) => res.end('hello'));
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    t.teardown(() => new Promise<void>((r) => plain.close(() => r())));
    const wrongPort = await run(['agents'], { ...env, BULKHEAD_API: `https://127.0.0.1:${(plain.address() as AddressInfo).port}` });
    t.equal(wrongPort.code, 3, 'plain HTTP port');
    t.match(wrongPort.err, /TLS handshake with .* failed: .*does it speak HTTPS\?/);

    const noCa = await run(['agents'], { ...env, BULKHEAD_CA: undefined });
    t.equal(noCa.code, 3, 'system trust store does not know the Bulkhead CA');

    const byName = await run(['agents'], { ...env, BULKHEAD_API: `https://localhost:${api.port}` });
    t.equal(byName.code, 0, 'a SAN host name works too');
  });

  t.test('usage errors exit 2', async (t) => {
    const cases: Array<[string[], Record<string, string | undefined>, RegExp]> = [
      [['agents'], { ...env, BULKHEAD_API: undefined }, /no controller API URL/],
      [['agents'], { ...env, BULKHEAD_API_KEY: undefined }, /no API key/],
      [['agents'], { ...env, BULKHEAD_API: `http://127.0.0.1:${api.port}` }, /HTTPS-only/],
      [['--ca', '/nonexistent/ca.crt', 'agents'], env, /cannot read CA file \/nonexistent\/ca\.crt: ENOENT/],
      [['agents', 'get'], env, /missing required argument 'id'/],
      [['containers', '--limit', 'x'], env, /--limit <n>.*invalid/],
      [['containers', '--label', '=v'], env, /expected KEY or KEY=VALUE/],
      [['frobnicate'], env, /unknown command/],
      [['containers', '--bogus'], env, /unknown option/],
      [[], env, /Usage: bulkhead/],
    ];
    for (const [argv, e, msg] of cases) {
      const r = await run(argv, e);
      t.equal(r.code, 2, `bulkhead ${argv.join(' ')} → 2`);
      t.match(r.err, msg);
    }
  });

  t.test('--help on every command, with examples', async (t) => {
    for (const argv of [['--help'], ['agents', '--help'], ['agents', 'list', '--help'], ['agents', 'get', '--help'], ['containers', '--help'], ['containers', 'list', '--help'], ['containers', 'get', '--help']]) {
      const r = await run(argv, {});
      t.equal(r.code, 0, argv.join(' '));
      t.match(r.out, /Usage: bulkhead/);
      t.match(r.out, /Examples?:/);
    }
    t.match((await run(['containers', 'list', '--help'], {})).out, /--label <label>/);
  });

  const bin = resolve(__dirname, '../dist/main.js');
  t.test('the compiled bin runs as a child process', { skip: existsSync(bin) ? false : 'build first: npx tsc -b packages/cli' }, async (t) => {
    const child = (argv: string[], e: Record<string, string>) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
        execFile(process.execPath, [bin, ...argv], { env: { PATH: process.env['PATH'] ?? '', ...e } }, (err, stdout, stderr) =>
          done({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
        );
      });
    const ok = await child(['--json', 'agents'], env);
    t.equal(ok.code, 0, ok.stderr);
    t.equal((JSON.parse(ok.stdout) as { items: unknown[] }).items.length, 2);
    const bad = await child(['agents'], { ...env, BULKHEAD_API_KEY: 'bk_nope' });
    t.equal(bad.code, 1);
    const usage = await child(['agents', 'get'], env);
    t.equal(usage.code, 2);
    const port = await freePort();
    const down = await child(['agents'], { ...env, BULKHEAD_API: `https://127.0.0.1:${port}` });
    t.equal(down.code, 3);
  });
});
