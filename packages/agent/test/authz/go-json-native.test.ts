// The native path (JSON.parse + the struct tables) must give exactly what
// the byte-level Go decoder gives, whenever it takes a body at all; and it
// must take the bodies clients really send. Generated corpus, seeded.
import t from 'tap';
import fc from 'fast-check';
import { goDecode, nativeDecode } from '../../src/authz/go-json';
import { decodeCreate } from '../../src/authz/docker-types';

const SEED = Number(process.env['BK_GOJSON_SEED'] ?? 20261206);
const RUNS = Number(process.env['BK_GOJSON_RUNS'] ?? 3000);

// Field names of the judged structs, with other spellings Go would match, and names it would not.
const NAMES = [
  'Image', 'User', 'Env', 'Cmd', 'Entrypoint', 'Labels', 'Volumes', 'HostConfig', 'NetworkingConfig', 'EndpointsConfig', 'Cpuset',
  'Privileged', 'Binds', 'Mounts', 'Type', 'Source', 'Target', 'ReadOnly', 'BindOptions', 'Propagation', 'VolumeOptions', 'DriverConfig',
  'Name', 'Options', 'CapAdd', 'CapDrop', 'PidMode', 'NetworkMode', 'SecurityOpt', 'Devices', 'PathOnHost', 'DeviceCgroupRules',
  'Memory', 'MemorySwap', 'CpuShares', 'NanoCpus', 'PidsLimit', 'RestartPolicy', 'MaximumRetryCount', 'Tmpfs', 'MaskedPaths',
  'Healthcheck', 'Hostname', 'ShmSize', 'Tty',
];
const spelling = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...NAMES) },
  { weight: 1, arbitrary: fc.constantFrom(...NAMES).map((n) => n.toLowerCase()) },
  { weight: 1, arbitrary: fc.constantFrom(...NAMES).map((n) => n.replace(/s/g, '\u017f').replace(/k/g, '\u212a')) },
  { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor', 'x', 'Unknown', '') },
);
const scalar = fc.oneof(
  fc.string({ maxLength: 6 }), fc.constantFrom('/', '/etc', 'root', '+0', 'host', 'none', '\u00e9', 'a\u0000b'),
  fc.integer({ min: -5, max: 1 << 30 }), fc.constantFrom(0, -0, 2 ** 53, 2 ** 63, 1.5, 1e3), fc.boolean(), fc.constant(null),
);

/** A JSON text with possible repeated keys (which JSON.stringify cannot make). */
const json: fc.Arbitrary<string> = fc.letrec<{ v: string }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 3, arbitrary: scalar.map((x) => JSON.stringify(x)) },
    { weight: 1, arbitrary: fc.array(tie('v'), { maxLength: 3 }).map((xs) => `[${xs.join(',')}]`) },
    { weight: 2, arbitrary: fc.array(fc.tuple(spelling, tie('v')), { maxLength: 5 }).map((kv) => `{${kv.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`) },
  ),
})).v;
const body = fc.array(fc.tuple(spelling, json), { maxLength: 6 }).map((kv) => `{${kv.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`);

const plain = (v: unknown): unknown => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));

t.test('native and byte-level decoding agree on every body the native path takes', async (t) => {
  let taken = 0;
  let total = 0;
  fc.assert(
    fc.property(body, (text) => {
      total++;
      const buf = Buffer.from(text);
      const native = decodeCreate(buf);
      const slow = decodeCreate(buf, { native: false });
      if (!slow.ok) {
        // Go refuses it: the native path must not have produced something else.
        if (native.ok) throw new Error(`native took a body Go refuses (${slow.error}): ${text}`);
        return;
      }
      if (!native.ok) throw new Error(`native refused a body Go takes: ${text}`);
      const a = JSON.stringify(plain(native.body));
      const b = JSON.stringify(plain(slow.body));
      if (a !== b) throw new Error(`differ on ${text}\nnative: ${a}\ngo:     ${b}`);
      taken++;
    }),
    { seed: SEED, numRuns: RUNS },
  );
  t.ok(taken > total / 4, `most generated bodies decode (${taken} of ${total})`);
});

t.test('what clients send takes the native path', async (t) => {
  const cli = Buffer.from(JSON.stringify({
    Hostname: '', User: '1000', Env: ['A=1'], Cmd: ['sleep', '1'], Image: 'app:1', Volumes: {}, Entrypoint: null, Labels: { a: 'b' },
    HostConfig: { Binds: ['/data:/data:ro'], NetworkMode: 'none', RestartPolicy: { Name: 'no', MaximumRetryCount: 0 }, CapAdd: null, CapDrop: ['ALL'],
      Privileged: false, SecurityOpt: ['no-new-privileges'], Memory: 67108864, NanoCpus: 500000000, PidsLimit: 100, Devices: [], MaskedPaths: null,
      Mounts: [{ Type: 'bind', Source: '/srv', Target: '/srv', ReadOnly: true, BindOptions: { Propagation: 'rprivate' } }], LogConfig: { Type: '', Config: {} },
      PortBindings: {}, ConsoleSize: [0, 0], Dns: [], OomKillDisable: false, BlkioWeightDevice: [] },
    NetworkingConfig: { EndpointsConfig: { none: { Aliases: null } } },
  }));
  const wrapperFields = nativeDecode(cli, { k: 'struct', s: { byExact: new Map(), byFolded: new Map() } });
  t.same(wrapperFields, {}, 'a struct without fields takes the body and keeps nothing');
  const d = decodeCreate(cli);
  const g = decodeCreate(cli, { native: false });
  t.ok(d.ok && g.ok);
  t.same(plain(d.ok ? d.body : undefined), plain(g.ok ? g.body : undefined));
  for (const [what, text] of [
    ['repeated key', '{"Image":"a","Image":"b"}'],
    ['another spelling', '{"image":"a"}'],
    ['trailing data', '{"Image":"a"}}'],
    ['an exponent', '{"Image":"a","HostConfig":{"Memory":1e3}}'],
    ['a fraction in a skipped field', '{"Image":"a","Healthcheck":{"Interval":1.5}}'],
    ['invalid UTF-8', Buffer.concat([Buffer.from('{"Image":"a'), Buffer.from([0xff]), Buffer.from('"}')])],
    ['an escaped surrogate', '{"Image":"\\ud800"}'],
    ['deeper than Go allows', `{"Healthcheck":${'['.repeat(10_001)}${']'.repeat(10_001)}}`],
    ['a wrong type', '{"Image":1}'],
    ['not an object', '[1]'],
  ] as const) {
    t.equal(nativeDecode(Buffer.from(text as string | Buffer), { k: 'struct', s: { byExact: new Map([['Image', { name: 'Image', type: { k: 'string' } }]]), byFolded: new Map([['IMAGE', { name: 'Image', type: { k: 'string' } }]]) } }), undefined, `${what}: left to the decoder`);
  }
  t.same(plain(goDecode(Buffer.from('{"a":1}'), { k: 'struct', s: { byExact: new Map([['a', { name: 'a', type: { k: 'float' } }]]), byFolded: new Map() } }).value), { a: 1 }, 'a float field, natively');
});
