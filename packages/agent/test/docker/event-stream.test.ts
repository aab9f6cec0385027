// The /events line parser, fed the way TCP delivers: several events per
// chunk, events split across chunks, multi-byte characters split in two.
// The lines are captured from dockerd 20.10's event stream.
import t from 'tap';
import {
  EventLineParser, parseEventLine, formatSince, relevantContainerEvent, execStartEvent, MAX_EVENT_LINE_BYTES, type DockerEvent,
} from '../../src/docker/event-stream';

const ID = '656f8aed8003f3ff7556187aca566395143934eea54fc26d28a350be0aac009d';
const NET = 'd8b47c1d332d26ba1e0f114d9828d02f9d713cb581e600acf1505b1d9859678b';
const LINES = [
  `{"status":"create","id":"${ID}","from":"bulkhead-test/busybox:1","Type":"container","Action":"create","Actor":{"ID":"${ID}","Attributes":{"image":"bulkhead-test/busybox:1","name":"exciting_mclaren"}},"scope":"local","time":1795883017,"timeNano":1795883017237250368}`,
  `{"Type":"network","Action":"connect","Actor":{"ID":"${NET}","Attributes":{"container":"${ID}","name":"none","type":"null"}},"scope":"local","time":1795883017,"timeNano":1795883017242240951}`,
  // a label value with multi-byte UTF-8 (3 bytes for €, 4 for the emoji)
  `{"status":"start","id":"${ID}","from":"bulkhead-test/busybox:1","Type":"container","Action":"start","Actor":{"ID":"${ID}","Attributes":{"cost":"5€ 🐳","image":"bulkhead-test/busybox:1","name":"exciting_mclaren"}},"scope":"local","time":1795883017,"timeNano":1795883017420619167}`,
  `{"status":"die","id":"${ID}","from":"bulkhead-test/busybox:1","Type":"container","Action":"die","Actor":{"ID":"${ID}","Attributes":{"exitCode":"0","image":"bulkhead-test/busybox:1","name":"exciting_mclaren"}},"scope":"local","time":1795883017,"timeNano":1795883017436023094}`,
];
const STREAM = Buffer.from(LINES.map((l) => `${l}\n`).join(''), 'utf8');

function feed(chunks: Buffer[]): { events: DockerEvent[]; bad: string[] } {
  const events: DockerEvent[] = [];
  const bad: string[] = [];
  const p = new EventLineParser({ onEvent: (e) => events.push(e), onBadLine: (l) => bad.push(l) });
  for (const c of chunks) p.push(c);
  p.end();
  return { events, bad };
}

function splitEvery(buf: Buffer, n: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += n) out.push(buf.subarray(i, i + n));
  return out;
}

const euro = STREAM.indexOf(Buffer.from('€'));

const chunkings: Array<[string, Buffer[]]> = [
  ['one chunk with all events', [STREAM]],
  ['one byte at a time', splitEvery(STREAM, 1)],
  ['7-byte chunks', splitEvery(STREAM, 7)],
  ['1000-byte chunks (several events per chunk, split inside others)', splitEvery(STREAM, 1000)],
  ['split inside the 3-byte €', [STREAM.subarray(0, euro + 1), STREAM.subarray(euro + 1)]],
  ['one chunk per line', LINES.map((l) => Buffer.from(`${l}\n`))],
];

t.test('every chunking yields the same events', async (t) => {
  for (const [name, chunks] of chunkings) {
    const { events, bad } = feed(chunks);
    t.same(bad, [], `${name}: no bad lines`);
    t.same(events.map((e) => `${e.type}/${e.action}`), ['container/create', 'network/connect', 'container/start', 'container/die'], name);
    t.equal(events[2]?.attributes['cost'], '5€ 🐳', `${name}: UTF-8 intact`);
  }
});

t.test('timeNano is exact although it exceeds 2^53', async (t) => {
  const { events } = feed([STREAM]);
  t.same(events.map((e) => e.timeNano), [1795883017237250368n, 1795883017242240951n, 1795883017420619167n, 1795883017436023094n]);
  t.not(BigInt(JSON.parse(LINES[0]!).timeNano as number), 1795883017237250368n, 'JSON.parse alone would round it');
  t.equal(events[0]?.time, 1795883017);
});

t.test('parsed fields', async (t) => {
  const { events } = feed([STREAM]);
  t.match(events[0], { type: 'container', action: 'create', actorId: ID, attributes: { name: 'exciting_mclaren' } });
  t.match(events[1], { type: 'network', action: 'connect', actorId: NET, attributes: { container: ID } });
});

t.test('a final line without newline is flushed on end()', async (t) => {
  const { events } = feed([Buffer.from(`${LINES[0]}\n${LINES[3]}`)]);
  t.equal(events.length, 2);
});

t.test('bad lines are reported and skipped, the stream goes on', async (t) => {
  const { events, bad } = feed([Buffer.from(`{"oops\n[1,2]\n{"Type":"container"}\n\n${LINES[0]}\n`)]);
  t.equal(events.length, 1);
  t.equal(bad.length, 3, 'broken JSON, a non-object, and an object without Action');
});

t.test('an endless line is dropped instead of buffered without bound', async (t) => {
  const bad: string[] = [];
  const events: DockerEvent[] = [];
  const p = new EventLineParser({ onEvent: (e) => events.push(e), onBadLine: (l) => bad.push(l) });
  p.push(Buffer.alloc(MAX_EVENT_LINE_BYTES + 10, 'x'));
  t.equal(bad.length, 1);
  p.push(`\n${LINES[0]}\n`);
  t.equal(events.length, 1, 'recovers at the next line');
});

t.test('parseEventLine: old-style and missing fields', async (t) => {
  t.equal(parseEventLine('null'), undefined);
  t.equal(parseEventLine('{"Type":"container","Action":"start","Actor":{"ID":"a"}}')?.timeNano, 0n);
  t.equal(parseEventLine('{"Type":"container","Action":"start","Actor":{"ID":"a"},"time":12}')?.timeNano, 12_000_000_000n);
  t.equal(parseEventLine('{"Type":"container","status":"start","id":"a"}')?.actorId, 'a');
  t.throws(() => parseEventLine('{'));
});

t.test('formatSince', async (t) => {
  t.equal(formatSince(1795883017237250368n), '1795883017.237250368');
  t.equal(formatSince(1795883017000000005n), '1795883017.000000005');
  t.equal(formatSince(0n), '0.000000000');
});

t.test('relevantContainerEvent', async (t) => {
  const ev = (type: string, action: string, attributes: Record<string, string> = {}): DockerEvent =>
    ({ type, action, actorId: 'C', attributes, time: 0, timeNano: 0n });
  const table: Array<[DockerEvent, { containerId: string; action: string } | undefined]> = [
    [ev('container', 'create'), { containerId: 'C', action: 'create' }],
    [ev('container', 'start'), { containerId: 'C', action: 'start' }],
    [ev('container', 'pause'), { containerId: 'C', action: 'pause' }],
    [ev('container', 'unpause'), { containerId: 'C', action: 'unpause' }],
    [ev('container', 'die'), { containerId: 'C', action: 'die' }],
    [ev('container', 'stop'), { containerId: 'C', action: 'stop' }],
    [ev('container', 'restart'), { containerId: 'C', action: 'restart' }],
    [ev('container', 'rename'), { containerId: 'C', action: 'rename' }],
    [ev('container', 'update'), { containerId: 'C', action: 'update' }],
    [ev('container', 'oom'), { containerId: 'C', action: 'oom' }],
    [ev('container', 'destroy'), { containerId: 'C', action: 'destroy' }],
    [ev('container', 'health_status: unhealthy'), { containerId: 'C', action: 'health_status' }],
    [ev('container', 'kill'), undefined],
    [ev('container', 'attach'), undefined],
    [ev('container', 'exec_start: sh -c true'), undefined],
    [ev('container', 'resize'), undefined],
    [ev('image', 'pull'), undefined],
    [ev('network', 'connect', { container: 'X' }), { containerId: 'X', action: 'network_connect' }],
    [ev('network', 'disconnect', { container: 'X' }), { containerId: 'X', action: 'network_disconnect' }],
    [ev('network', 'create'), undefined],
    [ev('network', 'connect'), undefined],
  ];
  for (const [e, want] of table) t.same(relevantContainerEvent(e), want, `${e.type}/${e.action}`);
});

t.test('execStartEvent: container, exec id and command of an exec_start, nothing for anything else', async (t) => {
  // Captured from dockerd 20.10 (`docker exec -u +0 hc id` and a health check): the
  // command is in the action, the attributes carry the exec id but no user.
  const EXEC = 'b77985e201d35c6c5509f010edd53fcbc01d9ce2eff98e6695191ec12377ea75';
  const line = `{"status":"exec_start: id ","id":"${ID}","from":"bulkhead-test/busybox:1","Type":"container","Action":"exec_start: id ","Actor":{"ID":"${ID}","Attributes":{"execID":"${EXEC}","image":"bulkhead-test/busybox:1","name":"hc"}},"scope":"local","time":1796529916,"timeNano":1796529916579926829}`;
  t.same(execStartEvent(parseEventLine(line)!), { containerId: ID, execId: EXEC, command: 'id', timeMs: 1796529916579 });
  const health = `{"Type":"container","Action":"exec_start: /bin/sh -c curl -f http://localhost/","Actor":{"ID":"${ID}","Attributes":{"execID":"e1"}},"time":1,"timeNano":1000000000}`;
  t.equal(execStartEvent(parseEventLine(health)!)?.command, '/bin/sh -c curl -f http://localhost/', 'a colon inside the command is kept');

  const ev = (type: string, action: string, attributes: Record<string, string> = { execID: 'E' }, actorId = 'C'): DockerEvent =>
    ({ type, action, actorId, attributes, time: 0, timeNano: 0n });
  t.same(execStartEvent(ev('container', 'exec_start')), { containerId: 'C', execId: 'E', command: '', timeMs: 0 }, 'no command after the action');
  t.equal(execStartEvent(ev('container', 'exec_create: sh')), undefined, 'exec_create');
  t.equal(execStartEvent(ev('container', 'exec_die')), undefined, 'exec_die');
  t.equal(execStartEvent(ev('container', 'start')), undefined, 'a container start');
  t.equal(execStartEvent(ev('container', 'exec_start: sh', {})), undefined, 'no execID');
  t.equal(execStartEvent(ev('container', 'exec_start: sh', { execID: 'E' }, '')), undefined, 'no container');
  t.equal(execStartEvent(ev('network', 'exec_start: sh')), undefined, 'not a container event');
});
