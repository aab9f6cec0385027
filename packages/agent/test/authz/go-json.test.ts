// go-json.ts / docker-types.ts: request bodies read the way dockerd's Go
// decoder reads them. Expected values follow encoding/json's documented and
// observed behaviour (the differential test in test/authz-differential
// checks the same against a real dockerd).
import t from 'tap';
import {
  BOOL, decodeRune, FLOAT64, foldName, goDecode, goStruct, INT64, mapOf, ptrTo, SKIP, sliceOf, STRING, STRSLICE, UINT16,
} from '../../src/authz/go-json';
import { decodeCreate, decodeExec, decodeNetworkConnect, decodeUpdate, decodeVolumeCreate } from '../../src/authz/docker-types';

const b = (s: string): Buffer => Buffer.from(s, 'utf8');
const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v));

function create(s: string | Buffer): Record<string, unknown> {
  const d = decodeCreate(typeof s === 'string' ? b(s) : s);
  if (!d.ok) throw new Error(d.error);
  return plain(d.body.body) as Record<string, unknown>;
}

t.test('keys match fields case-insensitively, with Unicode simple folding', async (t) => {
  t.same(create('{"image":"x","hostconfig":{"PRIVILEGED":true,"binds":["/:/h"]}}'), { Image: 'x', HostConfig: { Privileged: true, Binds: ['/:/h'] }, NetworkingConfig: null });
  // U+017F (long s) folds to S, U+212A (Kelvin) to K.
  t.same(create('{"HostConfig":{"Bind\u017f":["/etc:/e"],"CapAdd":["SYS_ADMIN"],"Networ\u212aMode":"host"}}').HostConfig, { Binds: ['/etc:/e'], CapAdd: ['SYS_ADMIN'], NetworkMode: 'host' });
  // Other non-ASCII letters fold to nothing ASCII: no match.
  t.same(create('{"HostConfig":{"Pr\u0131vileged":true}}').HostConfig, {});
  t.equal(foldName('bind\u017f'), 'BINDS');
  t.equal(foldName('\u212aey'), 'KEY');
  t.equal(foldName('caf\u00e9'), 'CAF\u00e9');
});

t.test('repeated keys: scalars last wins, structs and maps merge, null clears what Go clears', async (t) => {
  t.same(create('{"Image":"a","Image":"b"}').Image, 'b');
  t.same(create('{"HostConfig":{"Binds":["/:/h"]},"HostConfig":{"Privileged":true}}').HostConfig, { Binds: ['/:/h'], Privileged: true }, 'second HostConfig merges');
  t.same(create('{"HostConfig":{"Privileged":true},"hostConfig":{"Privileged":false}}').HostConfig, { Privileged: false });
  t.same(create('{"Labels":{"a":"1"},"Labels":{"b":"2"}}').Labels, { a: '1', b: '2' }, 'maps keep earlier entries');
  t.same(create('{"HostConfig":{"Privileged":true,"Privileged":null}}').HostConfig, { Privileged: true }, 'null into a bool: no effect');
  t.same(create('{"HostConfig":{"Binds":["/:/h"],"Binds":null}}').HostConfig, { Binds: null }, 'null clears a slice');
  t.same(create('{"HostConfig":{"Binds":["/:/h","/etc:/e"],"Binds":["/tmp:/t"]}}').HostConfig, { Binds: ['/tmp:/t'] }, 'slices are replaced');
});

t.test('a slice reuses its elements: a later struct element keeps what it leaves out', async (t) => {
  const hc = create('{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/","Target":"/h"}],"Mounts":[{"Target":"/x"}]}}').HostConfig as Record<string, unknown>;
  t.same(hc['Mounts'], [{ Type: 'bind', Source: '/', Target: '/x' }]);
  const dev = create('{"HostConfig":{"Mounts":[{"Source":"/a","Target":"/x"},{"Source":"/b","Target":"/y"}],"Mounts":[{"Target":"/z"}],"Mounts":[{},{}]}}').HostConfig as Record<string, unknown>;
  t.same(dev['Mounts'], [{ Source: '/a', Target: '/z' }, { Source: '/b', Target: '/y' }], 'elements past the shorter decode survive in the backing array');
  const empty = create('{"HostConfig":{"Devices":[{"PathOnHost":"/dev/sda"}],"Devices":[],"Devices":[{}]}}').HostConfig as Record<string, unknown>;
  t.same(empty['Devices'], [{}], 'an empty array starts a new slice');
  const nul = create('{"Env":["A=1","B=2"],"Env":[null,"C"]}');
  t.same(nul['Env'], ['A=1', 'C'], 'null into a reused string element keeps it');
});

t.test('legacy top-level host config fields', async (t) => {
  const d = decodeCreate(b('{"Image":"x","Privileged":true,"Binds":["/:/h"]}'));
  t.ok(d.ok);
  if (d.ok) {
    t.same(plain(d.body.body.HostConfig), { Privileged: true, Binds: ['/:/h'] });
    t.equal(d.body.legacyHostConfig, true);
  }
  t.same(create('{"Image":"x","HostConfig":{"Memory":1},"HostConfig":null,"Privileged":true}').HostConfig, { Privileged: true }, 'HostConfig null: the top-level fields apply');
  t.same(create('{"HostConfig":{"Privileged":false},"Privileged":true,"Memory":5,"CpuShares":7,"VolumeDriver":"v","Cpuset":"0"}').HostConfig,
    { Privileged: false, Memory: 5, CpuShares: 7, VolumeDriver: 'v', CpusetCpus: '0' }, 'with an inner HostConfig only the documented fields come from the top');
  t.same(create('{"Image":"x"}').HostConfig, null);
});

t.test('trailing data after the first value is not read', async (t) => {
  t.same(create('{"Image":"x","HostConfig":{"Privileged":true}}}').HostConfig, { Privileged: true });
  t.same(create('{"Image":"x"}]garbage').Image, 'x');
  t.same(create('  \n{"Image":"x"} {"Image":"y"}').Image, 'x');
});

t.test('strings: escapes, invalid UTF-8 and lone surrogates as Go decodes them', async (t) => {
  t.equal(create('{"User":"\\u0072oot"}').User, 'root');
  t.equal(create('{"User":"a\\ud83d\\ude00b"}').User, 'a\u{1F600}b');
  t.equal(create('{"User":"\\ud800x"}').User, '\ufffdx');
  t.equal(create('{"User":"\\udc00\\ud800"}').User, '\ufffd\ufffd');
  t.equal(create('{"User":"\\ud800\\u0041"}').User, '\ufffdA');
  t.equal(create(Buffer.concat([b('{"User":"a'), Buffer.from([0xe0, 0xa0]), b('x"}')])).User, 'a\ufffd\ufffdx', 'one U+FFFD per invalid byte');
  t.equal(create(Buffer.concat([b('{"User":"'), Buffer.from([0xc3, 0xa9, 0xf0, 0x9f, 0x98, 0x80]), b('"}')])).User, '\u00e9\u{1F600}');
  t.equal(create('{"User":"\\"\\\\\\/\\b\\f\\n\\r\\t"}').User, '"\\/\b\f\n\r\t');
  t.same(decodeRune(Buffer.from([0xed, 0xa0, 0x80]), 0), [0xfffd, 1], 'surrogates are invalid UTF-8');
  t.same(decodeRune(Buffer.from([0xc0, 0x80]), 0), [0xfffd, 1], 'overlong');
  t.same(decodeRune(Buffer.from([0xf4, 0x90, 0x80, 0x80]), 0), [0xfffd, 1], 'beyond U+10FFFF');
  t.same(decodeRune(Buffer.from([0xf0, 0x90, 0x80, 0x80]), 0), [0x10000, 4]);
  t.same(decodeRune(Buffer.from([0xe2, 0x82, 0xac]), 0), [0x20ac, 3]);
});

t.test('syntax errors: Go refuses, so the result is an error', async (t) => {
  for (const bad of ['', '   ', '{', '{"Image":}', '{"Image":"x",}', '{"Image" "x"}', '{Image:"x"}', '{"Image":"x\u0001"}', '{"a":01}', '{"a":1.}',
    '{"a":-}', '{"a":1e}', '{"a":tru}', '{"a":nul}', '{"a":"\\x"}', '{"a":"\\u12"}', '\ufeff{}', '{"a":[1,]}', '{"a":[1 2]}', '{"a" : "b" "c"}', '{"a":"b"']) {
    const d = decodeCreate(b(bad));
    t.equal(d.ok, false, JSON.stringify(bad));
  }
  const deep = '{"Healthcheck":' + '['.repeat(10_001) + ']'.repeat(10_001) + '}';
  const d = decodeCreate(b(deep));
  t.equal(d.ok, false, 'deeper than Go allows');
  if (!d.ok) t.match(d.error, /max depth/);
  t.equal(decodeCreate(b('{"Healthcheck":' + '['.repeat(9_000) + ']'.repeat(9_000) + '}')).ok, true, 'deep but within Go\'s limit: skipped without recursion');
});

t.test('type errors: dockerd refuses, so the result is an error', async (t) => {
  for (const bad of ['{"HostConfig":{"Privileged":"true"}}', '{"HostConfig":{"Privileged":1}}', '{"HostConfig":{"Memory":1.5}}', '{"HostConfig":{"Memory":1e3}}',
    '{"HostConfig":{"Memory":9223372036854775808}}', '{"HostConfig":{"Memory":-9223372036854775809}}', '{"HostConfig":[]}',
    '{"HostConfig":"x"}', '{"Env":"A=1"}', '{"Env":[1]}', '{"Cmd":1}', '{"Cmd":[1]}', '{"Labels":[]}', '{"Volumes":{"/d":1}}', '{"User":1}', '{"HostConfig":{"Binds":{}}}']) {
    t.equal(decodeCreate(b(bad)).ok, false, bad);
  }
  t.same(create('{"HostConfig":{"Memory":9223372036854775807,"CpuShares":-0}}').HostConfig, { Memory: 9223372036854775807, CpuShares: 0 });
  t.same(create('{"Hostname":7,"HostConfig":{"BlkioWeight":-1,"ShmSize":"x","Memory":1}}').HostConfig, { Memory: 1 }, 'fields no fact is read from are skipped, whatever their type');
  t.same(create('{"Cmd":"sh","Entrypoint":["a","b"],"HostConfig":{"CapAdd":"SYS_ADMIN","CapDrop":null}}'), { Cmd: ['sh'], Entrypoint: ['a', 'b'], HostConfig: { CapAdd: ['SYS_ADMIN'], CapDrop: null }, NetworkingConfig: null });
  t.same(create('{"Volumes":{"/d":{},"/e":null},"Healthcheck":{"Test":[1,2,{"x":[]}]},"ExposedPorts":7}').Volumes, { '/d': {}, '/e': {} }, 'unjudged fields are skipped whatever their type');
});

t.test('the top-level value: null decodes to nothing, other non-objects are errors', async (t) => {
  const d = decodeCreate(b('null'));
  t.ok(d.ok);
  if (d.ok) t.same(plain(d.body.body), { HostConfig: null, NetworkingConfig: null });
  t.equal(decodeCreate(b('[]')).ok, false);
  t.equal(decodeCreate(b('"x"')).ok, false);
  t.equal(decodeExec(b('7')).ok, false);
});

t.test('maps: keys taken exactly, prototype keys are plain data', async (t) => {
  const c = create('{"Labels":{"__proto__":"x","constructor":"y","A":"1","a":"2"}}');
  t.same(c['Labels'], { ['__proto__']: 'x', constructor: 'y', A: '1', a: '2' });
  t.equal(({} as Record<string, unknown>)['x'], undefined, 'no prototype pollution');
  const n = create('{"NetworkingConfig":{"EndpointsConfig":{"net1":{},"net2":null,"net3":{"Aliases":["a"]}}}}');
  t.same(Object.keys((n['NetworkingConfig'] as { EndpointsConfig: object }).EndpointsConfig), ['net1', 'net2', 'net3']);
});

t.test('the other judged bodies', async (t) => {
  const e = decodeExec(b('{"user":"+0","PRIVILEGED":true,"Cmd":["sh"],"Tty":"x"}}'));
  t.ok(e.ok);
  if (e.ok) t.same(plain(e.body), { User: '+0', Privileged: true, Cmd: ['sh'] });
  const u = decodeUpdate(b('{"memory":1,"restartpolicy":{"name":"always"},"PidsLimit":null}'));
  t.ok(u.ok);
  if (u.ok) t.same(plain(u.body), { Memory: 1, RestartPolicy: { Name: 'always' }, PidsLimit: null });
  const v = decodeVolumeCreate(b('{"driveropts":{"type":"none","o":"bind","device":"/etc"},"NAME":"v","Name":"w"}'));
  t.ok(v.ok);
  if (v.ok) t.same(plain(v.body), { DriverOpts: { type: 'none', o: 'bind', device: '/etc' }, Name: 'w' });
  const n = decodeNetworkConnect(b('{"container":"abc","EndpointConfig":{"x":1}}'));
  t.ok(n.ok);
  if (n.ok) t.same(plain(n.body), { Container: 'abc' });
  t.equal(decodeExec(b('')).ok, false, 'an empty body is EOF');
});

t.test('goDecode directly: floats, pointers, skip', async (t) => {
  const T = goStruct([{ name: 'F', type: FLOAT64 }, { name: 'P', type: ptrTo(INT64) }, { name: 'S', type: SKIP }, { name: 'L', type: sliceOf(BOOL) },
    { name: 'M', type: mapOf(STRING) }, { name: 'X', type: STRSLICE }, { name: 'U', type: UINT16 }]);
  t.same(plain(goDecode(b('{"F":1.5e3,"P":-7,"S":{"a":[1]},"L":[true,false,null],"M":{"a":"b"},"X":["q"],"U":3}'), T).value),
    { F: 1500, P: -7, L: [true, false, false], M: { a: 'b' }, X: ['q'], U: 3 });
  t.match(goDecode(b('{"F":1e999}'), T).error, /cannot decode/);
  t.match(goDecode(b('{"F":"1"}'), T).error, /cannot decode a string into a Go float/);
  t.match(goDecode(b('{"X":{}}'), T).error, /string or list of strings/);
  t.match(goDecode(b('{"U":-1}'), T).error, /unsigned integer/);
  t.match(goDecode(b('{"L":{}}'), T).error, /into a Go list/);
  t.match(goDecode(b('{"M":[]}'), T).error, /into a Go map/);
  t.same(plain(goDecode(b('{"P":1,"P":null}'), T).value), { P: null });
  t.same(plain(goDecode(b('{}'), T).value), {});
  t.same(plain(goDecode(b('{"M":{}}'), T).value), { M: {} });
});

t.test('host limits: LogConfig, Ulimits, block-IO throttles, StorageOpt typed as dockerd types them', async (t) => {
  const hc = create(`{"hostconfig":{"LOGCONFIG":{"type":"json-file","config":{"max-size":"10m"}},"ulimits":[{"name":"nofile","soft":1024,"hard":2048},null],
    "BlkioDeviceWriteBps":[{"Path":"/dev/sda","Rate":1048576}],"blkiodevicereadiops":[{"path":"/dev/sdb","rate":100}],"StorageOpt":{"size":"10G"}}}`).HostConfig;
  t.same(hc, {
    LogConfig: { Type: 'json-file', Config: { 'max-size': '10m' } },
    Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 2048 }, null],
    BlkioDeviceWriteBps: [{ Path: '/dev/sda', Rate: 1048576 }],
    BlkioDeviceReadIOps: [{ Path: '/dev/sdb', Rate: 100 }],
    StorageOpt: { size: '10G' },
  }, 'keys folded, values typed');
  t.same(create('{"HostConfig":{"LogConfig":{"Config":{"max-size":"1m"}},"LogConfig":{"Type":"json-file"}}}').HostConfig, { LogConfig: { Type: 'json-file', Config: { 'max-size': '1m' } } }, 'a repeated struct merges');
  for (const bad of [
    '{"HostConfig":{"LogConfig":{"Config":{"max-size":10}}}}', '{"HostConfig":{"LogConfig":[]}}', '{"HostConfig":{"Ulimits":[{"Name":"nofile","Soft":"1"}]}}',
    '{"HostConfig":{"Ulimits":{}}}', '{"HostConfig":{"BlkioDeviceWriteBps":[{"Path":"/dev/sda","Rate":-1}]}}', '{"HostConfig":{"BlkioDeviceReadBps":[{"Rate":1.5}]}}',
    '{"HostConfig":{"StorageOpt":{"size":10}}}',
  ]) t.equal(decodeCreate(b(bad)).ok, false, `dockerd refuses ${bad}`);
});
