import t from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLogger, startOptionalMetricsListener } from '../src/index';

const render = async () => ({ contentType: 'text/plain; version=0.0.4', body: 'up 1\n' });

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({ name: 'test', level: 'info', destination: { write: (s: string) => void lines.push(JSON.parse(s)) } });
  return { lines, logger };
}

t.test('off when no address is given', async (t) => {
  const { lines, logger } = capture();
  t.equal(await startOptionalMetricsListener({ listen: undefined, allowRemote: false, render, logger }), undefined);
  t.same(lines, []);
});

t.test('listens and logs where', async (t) => {
  const { lines, logger } = capture();
  const l = await startOptionalMetricsListener({ listen: '127.0.0.1:0', allowRemote: false, render, logger });
  t.ok(l, 'a listener');
  t.teardown(() => l?.close());
  t.ok(l!.port > 0);
  t.match(lines, [{ msg: 'metrics listening', component: 'metrics', port: l!.port }]);
});

t.test('a port that is taken is logged and skipped, not fatal', async (t) => {
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => blocker.close(() => r())));
  const port = (blocker.address() as AddressInfo).port;
  const { lines, logger } = capture();
  t.equal(await startOptionalMetricsListener({ listen: `127.0.0.1:${port}`, allowRemote: false, render, logger }), undefined);
  t.match(lines, [{ level: 50, msg: 'metrics listener failed; running without metrics', listen: `127.0.0.1:${port}` }]);
});
