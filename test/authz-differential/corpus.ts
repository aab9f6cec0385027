// The corpus of the differential test: SEEDED fast-check arbitraries for raw
// Docker API request variants, and the function that renders one variant
// into exact request bytes for a given engine.
//
// A variant = a judged route, a dangerous setting planted in it (or none: a
// control), and one to three "tricks" — the ways a request can say the same
// thing to dockerd while looking different to a reader that is not Go's
// encoding/json and Go's net/http: key case, Unicode simple folding (ſ for s,
// K for k), repeated keys and objects, trailing data, legacy body shapes,
// request-target forms, user spellings, bodies dockerd does not pass on
// (padding past 1 MiB, chunked framing, Content-Type spellings). The trick
// list of a variant is its class in the report.
//
// Everything a variant needs from the engine (ids, names, the engine's own
// socket) comes in through BuildCtx, so one seed gives the same corpus on
// every engine; only those values differ.
import fc from 'fast-check';
import { caseVariant, foldable, foldVariant, j, lit, obj, pick, prng, serialize, type JNode } from './raw-json';
import type { RawRequestSpec } from './raw-http';

export type Route = 'create' | 'exec' | 'update' | 'volume' | 'connect' | 'start' | 'legacy-start';

export type Trick =
  | 'plain'
  | 'key-case'
  | 'key-fold'
  | 'dup-key-case'
  | 'dup-object'
  | 'hostconfig-null'
  | 'legacy-toplevel'
  | 'image-twice'
  | 'trailing'
  | 'target'
  | 'user-spelling'
  | 'padding'
  | 'chunked'
  | 'content-type';

export type Danger =
  | 'none'
  | 'privileged'
  | 'bind-root'
  | 'bind-etc'
  | 'socket-bind'
  | 'socket-mount'
  | 'mount-etc'
  | 'root-user'
  | 'cap-sys-admin'
  | 'pid-host'
  | 'device'
  | 'device-cgroup-rule'
  | 'seccomp'
  | 'exec-privileged'
  | 'memory'
  | 'volume-etc'
  | 'volume-relative'
  | 'shared-network';

export const HOST_DANGERS: readonly Danger[] = [
  'privileged', 'bind-root', 'bind-etc', 'socket-bind', 'socket-mount', 'mount-etc', 'cap-sys-admin', 'pid-host', 'device', 'device-cgroup-rule', 'seccomp',
];

/** The dangerous containers the `start` route starts (created once per engine). */
export const START_DANGERS: readonly Danger[] = ['privileged', 'bind-root', 'socket-bind', 'cap-sys-admin', 'pid-host', 'device'];

const BODY_TRICKS: readonly Trick[] = ['trailing', 'padding', 'chunked', 'content-type', 'target'];

export const ROUTES: Readonly<Record<Route, { weight: number; dangers: readonly Danger[]; tricks: readonly Trick[] }>> = {
  create: {
    weight: 34,
    dangers: [...HOST_DANGERS, 'root-user', 'none'],
    tricks: ['key-case', 'key-fold', 'dup-key-case', 'dup-object', 'hostconfig-null', 'legacy-toplevel', 'image-twice', 'user-spelling', ...BODY_TRICKS],
  },
  exec: { weight: 16, dangers: ['exec-privileged', 'root-user', 'none'], tricks: ['key-case', 'key-fold', 'dup-key-case', 'user-spelling', ...BODY_TRICKS] },
  update: { weight: 8, dangers: ['memory', 'none'], tricks: ['key-case', 'dup-key-case', ...BODY_TRICKS] },
  volume: { weight: 10, dangers: ['volume-etc', 'volume-relative', 'none'], tricks: ['key-case', 'key-fold', 'dup-key-case', 'dup-object', ...BODY_TRICKS] },
  connect: { weight: 8, dangers: ['shared-network', 'none'], tricks: ['key-case', 'dup-key-case', ...BODY_TRICKS] },
  start: { weight: 8, dangers: START_DANGERS, tricks: ['target', 'chunked', 'content-type'] },
  'legacy-start': {
    weight: 10,
    dangers: HOST_DANGERS,
    tricks: ['key-case', 'key-fold', 'dup-key-case', 'dup-object', 'hostconfig-null', 'legacy-toplevel', ...BODY_TRICKS],
  },
};

export const TARGET_FORMS = [
  'versioned', 'no-version', 'foo-scheme', 'http-no-slashes', 'http-host', 'HTTP-HOST', 'pct-path', 'pct-version', 'query-junk', 'double-slash',
  'dot-segment', 'trailing-slash', 'other-version',
] as const;
export type TargetForm = (typeof TARGET_FORMS)[number];

/** How the object in the path is named. */
export const REF_FORMS = ['id', 'name', 'prefix', 'pct-ref'] as const;
export type RefForm = (typeof REF_FORMS)[number];

export const CONTENT_TYPES: readonly (string | null)[] = [
  'application/json; charset=utf-8', 'Application/JSON', 'APPLICATION/JSON;charset=UTF-8', 'application/json ', ' application/json', 'application/json;',
  'application/jsonx', 'application/x-json', 'text/plain', 'text/json', null, 'application/json, text/plain', 'application/vnd.docker+json',
];

/** Spellings of uid 0 (some are refused by runc at start; the engine decides). */
export const ROOT_SPELLINGS = ['root', '0', '+0', '-0:0', '00', '0:0', 'root:root', '0000:1000', '+00', '-0', ' 0', 'ROOT', '0:'];

export const TRAILERS = ['}', ']', 'garbage', '}}}', ' {"HostConfig":{"Privileged":true}}', '\n{}', 'null', ',', '\u0000', '{"x":', '"'];

/** Body sizes around dockerd's 1 MiB limit for passing a body to plugins. */
export const PAD_TOTALS = [1048575, 1048576, 1048577, 1048576 + 4096, 2 * 1048576];

export interface Variant {
  /** Position in the corpus (BK_DIFF_ONLY selects by it). */
  index: number;
  route: Route;
  danger: Danger;
  /** The class: sorted, 1-3 tricks ('plain' alone for none). */
  tricks: Trick[];
  target: TargetForm;
  ref: RefForm;
  contentType: string | null;
  user: string;
  trailer: string;
  pad: { total: number; where: 'lead' | 'key' | 'tail' };
  chunks: number[];
  /** Drives the fine choices (which key is mutated and how) through a small PRNG. */
  salt: number;
  /** Sanity variants: every choice is the first (plainest) one. */
  canonical?: boolean;
}

/** Whether `trick` means anything for this route and danger. */
export function applicable(route: Route, danger: Danger, trick: Trick): boolean {
  if (!ROUTES[route].tricks.includes(trick)) return false;
  switch (trick) {
    case 'user-spelling':
      return danger === 'root-user';
    case 'image-twice':
      return danger !== 'none';
    case 'key-fold':
      // Needs a foldable key (s/S/k/K) on the way to the danger.
      if (route === 'exec') return danger === 'root-user';
      return danger !== 'none';
    case 'key-case':
    case 'dup-key-case':
    case 'dup-object':
    case 'hostconfig-null':
    case 'legacy-toplevel':
      return danger !== 'none' || route === 'create';
    default:
      return true;
  }
}

function routeArb(route: Route): fc.Arbitrary<Omit<Variant, 'index'>> {
  const spec = ROUTES[route];
  return fc.constantFrom(...spec.dangers).chain((danger) => {
    const ok = spec.tricks.filter((tr) => applicable(route, danger, tr));
    const tricks: fc.Arbitrary<Trick[]> =
      ok.length === 0
        ? fc.constant<Trick[]>(['plain'])
        : fc.oneof(
            { weight: 2, arbitrary: fc.constant<Trick[]>(['plain']) },
            { weight: 12, arbitrary: fc.constantFrom(...ok).map((x) => [x]) },
            { weight: 5, arbitrary: fc.uniqueArray(fc.constantFrom(...ok), { minLength: 2, maxLength: Math.min(3, ok.length) }) },
          );
    return fc.record({
      route: fc.constant(route),
      danger: fc.constant(danger),
      tricks: tricks.map((xs) => [...xs].sort()),
      target: fc.constantFrom(...TARGET_FORMS),
      ref: fc.constantFrom(...REF_FORMS),
      contentType: fc.constantFrom(...CONTENT_TYPES),
      user: fc.constantFrom(...ROOT_SPELLINGS),
      trailer: fc.constantFrom(...TRAILERS),
      pad: fc.record({ total: fc.constantFrom(...PAD_TOTALS), where: fc.constantFrom('lead' as const, 'key' as const, 'tail' as const) }),
      chunks: fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 4 }),
      salt: fc.integer(),
    });
  });
}

export const variantArb: fc.Arbitrary<Omit<Variant, 'index'>> = fc.oneof(
  ...(Object.keys(ROUTES) as Route[]).map((r) => ({ weight: ROUTES[r].weight, arbitrary: routeArb(r) })),
);

/**
 * The fixed part of every corpus, first: each route with each of its
 * dangers and no trick. They must all be refused — the harness's own check
 * that the oracle, the recorder and the plugin are wired up (a broken
 * forwarder would otherwise make every variant look like a bypass).
 */
export function sanityVariants(): Omit<Variant, 'index'>[] {
  const out: Omit<Variant, 'index'>[] = [];
  for (const route of Object.keys(ROUTES) as Route[]) {
    for (const danger of ROUTES[route].dangers) {
      out.push({
        route, danger, tricks: ['plain'], target: 'versioned', ref: 'id', contentType: 'application/json', user: 'root', trailer: '',
        pad: { total: 0, where: 'tail' }, chunks: [], salt: out.length + 1, canonical: true,
      });
    }
  }
  return out;
}

/** One generated variant of `route` with exactly `tricks`, its danger drawn from `dangers`. */
function fixedArb(route: Route, dangers: readonly Danger[], tricks: Trick[]): fc.Arbitrary<Omit<Variant, 'index'>> {
  return routeArb(route).chain((v) => fc.constantFrom(...dangers).map((danger) => ({ ...v, danger, tricks })));
}

/**
 * Every class at least once, whatever the number of runs: for each route,
 * one variant per single trick that applies to it (its danger and details
 * drawn from the seed) — and, where the spelling is the point, one per
 * request-target form (create) and per uid-0 spelling (create, exec).
 */
export function stratifiedVariants(seed: number): Omit<Variant, 'index'>[] {
  const out: Omit<Variant, 'index'>[] = [];
  let k = 0;
  for (const route of Object.keys(ROUTES) as Route[]) {
    for (const trick of ROUTES[route].tricks) {
      const dangers = ROUTES[route].dangers.filter((d) => d !== 'none' && applicable(route, d, trick));
      if (dangers.length === 0) continue;
      const one = (): Omit<Variant, 'index'> => fc.sample(fixedArb(route, dangers, [trick]), { seed: seed + ++k, numRuns: 1 })[0]!;
      if (trick === 'target' && route === 'create') for (const target of TARGET_FORMS) out.push({ ...one(), target });
      else if (trick === 'user-spelling') for (const user of ROOT_SPELLINGS) out.push({ ...one(), user });
      else out.push(one());
    }
  }
  return out;
}

/**
 * The corpus for a seed: the sanity variants, one variant per class
 * (stratified), then `runs` drawn freely (combinations of tricks
 * included). Same seed and runs, same corpus.
 */
export function corpus(seed: number, runs: number): Variant[] {
  const generated = runs > 0 ? fc.sample(variantArb, { seed, numRuns: runs }) : [];
  return [...sanityVariants(), ...stratifiedVariants(seed), ...generated].map((v, index) => ({ ...v, index }));
}

/** A variant's class in the report: route and tricks, with the spelling where that is what varies. */
export function classOf(v: Pick<Variant, 'route' | 'tricks' | 'target' | 'user' | 'contentType'>): string {
  const parts = v.tricks.map((tr) =>
    tr === 'target' ? `target(${v.target})` : tr === 'user-spelling' ? `user(${JSON.stringify(v.user)})` : tr === 'content-type' ? `content-type(${JSON.stringify(v.contentType)})` : tr,
  );
  return `${v.route} / ${parts.join('+')}`;
}

// ---------------------------------------------------------------- rendering

export interface BuildCtx {
  engine: '20.10' | '26.1';
  /** The API version written in targets ("1.41"). */
  api: string;
  /** The engine's own API socket (the docker-socket danger mounts it). */
  engineSocket: string;
  /** A compliant image (USER 1000) and one that runs as root (no USER). */
  image: string;
  rootImage: string;
  /** An image name the engine does not have. */
  missingImage: string;
  /** Unique to the variant: the `X-Bk-Diff` header value and object names. */
  tag: string;
  name: string;
  labels: Record<string, string>;
  /** The container the route acts on (exec, update, start, legacy-start, connect). */
  container?: { id: string; name: string };
  /** The network the connect route attaches to. */
  network?: { id: string; name: string };
  /** A harmless host directory (a volume's device in controls). */
  safeDir: string;
}

export interface Built {
  spec: RawRequestSpec;
  /** Details the variant record does not show (which spelling was used…). */
  notes: string[];
}

type Entries = [string, JNode][];

// The first of each list below is the plain spelling (sanity variants use it).
const DEVICE_PATHS = ['/dev/null', '/dev/net/..', '/dev/net/../null', '/dev/net/../../dev/zero'];

/** The HostConfig fields that plant a danger (exact spellings; tricks respell them). */
function hostDanger(d: Danger, ctx: BuildCtx, rnd: () => number): Entries {
  switch (d) {
    case 'privileged':
      return [['Privileged', lit(true)]];
    case 'bind-root':
      return [['Binds', j([pick(rnd, ['/:/host', '/:/host:ro', '/:/host:rw'])])]];
    case 'bind-etc':
      return [['Binds', j([pick(rnd, ['/etc:/x:ro', '/etc:/x', '/etc/:/x', '//etc:/x', '/etc/.:/x'])])]];
    case 'socket-bind':
      return [['Binds', j([`${ctx.engineSocket}:/var/run/docker.sock`])]];
    case 'socket-mount':
      return [['Mounts', j([{ Type: 'bind', Source: ctx.engineSocket, Target: '/s' }])]];
    case 'mount-etc':
      return [['Mounts', j([{ Type: 'bind', Source: '/etc', Target: '/x', ReadOnly: true }])]];
    case 'cap-sys-admin':
      return [['CapAdd', j([pick(rnd, ['SYS_ADMIN', 'CAP_SYS_ADMIN', 'sys_admin', 'Cap_Sys_Admin'])])]];
    case 'pid-host':
      return [['PidMode', lit('host')]];
    case 'device':
      return [['Devices', j([{ PathOnHost: pick(rnd, DEVICE_PATHS), PathInContainer: '/dev/bkd', CgroupPermissions: 'rwm' }])]];
    case 'device-cgroup-rule':
      return [['DeviceCgroupRules', j(['b *:* rwm'])]];
    case 'seccomp':
      // An inline profile whose default action allows is as good as unconfined (found in session 8).
      return [['SecurityOpt', j([pick(rnd, ['seccomp=unconfined', 'seccomp:unconfined', 'seccomp={"defaultAction":"SCMP_ACT_ALLOW"}', 'seccomp={"DEFAULTACTION":"SCMP_ACT_LOG"}'])])]];
    default:
      return [];
  }
}

/** The harmless value of a danger's key (the "earlier" value a repeated key overrides). */
function safeValue(key: string): JNode {
  switch (key) {
    case 'Privileged':
      return lit(false);
    case 'PidMode':
      return lit('');
    case 'User':
      return lit('1000');
    case 'Memory':
      return lit(67108864);
    default:
      return j([]);
  }
}

/**
 * Respells keys of `entries` (and of the objects below them) for the
 * key-case / key-fold tricks. `forced` is always respelled; the others with
 * probability p. Keys outside `only` (when given) are kept.
 */
function respell(entries: Entries, mode: 'case' | 'fold', rnd: () => number, forced: string, p = 0.5, only?: ReadonlySet<string>): Entries {
  const one = (k: string): string => {
    if (only && !only.has(k)) return k;
    if (k !== forced && rnd() >= p) return k;
    if (mode === 'fold' && foldable(k)) return foldVariant(k, rnd);
    return caseVariant(k, rnd);
  };
  const walk = (n: JNode): JNode => {
    if (n.kind === 'obj') return obj(n.entries.map(([k, v]) => [one(k), walk(v)]));
    if (n.kind === 'arr') return { kind: 'arr', items: n.items.map(walk) };
    return n;
  };
  return entries.map(([k, v]) => [one(k), walk(v)]);
}

/** Keys of an entry list and of all objects below it, outermost first. */
function keysOf(entries: Entries): string[] {
  const out: string[] = [];
  const walk = (n: JNode): void => {
    if (n.kind === 'obj') for (const [k, v] of n.entries) (out.push(k), walk(v));
    else if (n.kind === 'arr') n.items.forEach(walk);
  };
  walk(obj(entries));
  return out;
}

/**
 * A HostConfig-carrying body (create, or a legacy start's HostConfig):
 * `head` (config fields, or none), the host fields, placed as the tricks say.
 */
function hostBody(v: Variant, head: Entries, host: Entries, rnd: () => number, notes: string[], legacyStart: boolean): Entries {
  const has = (t: Trick): boolean => v.tricks.includes(t);
  const danger = host.slice(1); // host[0] is NetworkMode
  const safeHost: Entries = [['NetworkMode', lit('none')]];
  let hostKey = 'HostConfig';
  let fields = host;
  // Legacy starts come in both shapes; the legacy-toplevel trick forces the bare one.
  const wrapped = !has('legacy-toplevel') && !(legacyStart && rnd() < 0.5);
  if (legacyStart) notes.push(wrapped ? 'legacy start body: {"HostConfig":{…}}' : 'legacy start body: bare HostConfig fields');
  // Key respelling on the way to the danger: HostConfig, the danger's key and what is below it.
  if (has('key-case') || has('key-fold')) {
    const mode = has('key-fold') ? 'fold' : 'case';
    const pathKeys = [...(wrapped ? ['HostConfig'] : []), ...keysOf(danger)];
    const forced = pick(rnd, mode === 'fold' && pathKeys.some(foldable) ? pathKeys.filter(foldable) : pathKeys);
    if (wrapped && (forced === 'HostConfig' || rnd() < 0.4)) hostKey = mode === 'fold' ? foldVariant('HostConfig', rnd) : caseVariant('HostConfig', rnd);
    fields = [host[0]!, ...respell(danger, mode, rnd, forced === 'HostConfig' ? '\u0000' : forced)];
    notes.push(`respelled (${mode}) on the way to the danger; forced key ${forced}`);
  }
  if (has('dup-key-case') && danger.length > 0) {
    if (rnd() < 0.5 || danger.length === 0) {
      // The danger under a second spelling of HostConfig, after a harmless HostConfig: Go merges both into one struct.
      notes.push('dup-key-case at the HostConfig level');
      return [...head, ['HostConfig', obj(safeHost)], [caseVariant('HostConfig', rnd), obj(fields)]];
    }
    // The harmless value under the exact key, the danger under another spelling after it: Go's last write wins.
    notes.push('dup-key-case at the field level');
    const [dk, dv] = fields[1]!;
    const exact = danger[0]![0];
    const inner: Entries = [fields[0]!, [exact, safeValue(exact)], [dk === exact ? caseVariant(exact, rnd) : dk, dv], ...fields.slice(2)];
    return [...head, [hostKey, obj(inner)]];
  }
  if (has('dup-object')) {
    // The same key twice: Go decodes the second object INTO the first (merging); JSON.parse keeps the second.
    return [...head, [hostKey, obj(fields)], ['HostConfig', obj(safeHost)]];
  }
  if (has('hostconfig-null')) {
    // A harmless HostConfig, then null, then the fields at the top level: Go falls back to the top-level (legacy) fields.
    return [...head, ['HostConfig', obj(safeHost)], ['HostConfig', lit(null)], ...fields];
  }
  if (!wrapped) {
    // No HostConfig at all: the host fields at the top level (pre-1.24 clients' shape), which dockerd still reads.
    return [...head, ...fields];
  }
  return [...head, [hostKey, obj(fields)]];
}

function createBody(v: Variant, ctx: BuildCtx, rnd: () => number, notes: string[]): Entries {
  const has = (t: Trick): boolean => v.tricks.includes(t);
  const image = ctx.image;
  const tail: Entries = [];
  const head: Entries = [['Image', lit(image)], ['Cmd', j(['id', '-u'])], ['Labels', j(ctx.labels)]];
  if (v.danger === 'root-user') {
    const user = has('user-spelling') ? v.user : pick(rnd, ['root', '0']);
    if (has('image-twice')) {
      // Root through the image: the exact key names the USER-1000 image, a later spelling the root one.
      notes.push('image-twice: root image under a second spelling of Image');
      tail.push([caseVariant('Image', rnd), lit(ctx.rootImage)]);
    } else if (has('dup-key-case')) {
      notes.push(`dup-key-case: User "1000", then another spelling with ${JSON.stringify(user)}`);
      head.push(['User', lit('1000')], [caseVariant('User', rnd), lit(user)]);
    } else if (has('key-case') || has('key-fold')) {
      head.push([has('key-fold') ? foldVariant('User', rnd) : caseVariant('User', rnd), lit(user)]);
    } else {
      head.push(['User', lit(user)]);
    }
    return [...hostBody({ ...v, tricks: v.tricks.filter((x) => x !== 'key-case' && x !== 'key-fold' && x !== 'dup-key-case') }, head, [['NetworkMode', lit('none')]], rnd, notes, false), ...tail];
  }
  if (has('image-twice')) {
    // An image the engine lacks under the exact key (a reader that trusts it sees
    // "no such image"), the real one under another spelling after it.
    notes.push('image-twice: missing image, then the real one under another spelling');
    head[0] = ['Image', lit(ctx.missingImage)];
    tail.push([caseVariant('Image', rnd), lit(image)]);
  }
  const host: Entries = [['NetworkMode', lit('none')], ...hostDanger(v.danger, ctx, rnd)];
  return [...hostBody(v, head, host, rnd, notes, false), ...tail];
}

function execBody(v: Variant, rnd: () => number, notes: string[]): Entries {
  const has = (t: Trick): boolean => v.tricks.includes(t);
  const head: Entries = [['AttachStdout', lit(true)], ['AttachStderr', lit(true)], ['Cmd', j(['id', '-u'])]];
  if (v.danger === 'none') return head;
  const key = v.danger === 'exec-privileged' ? 'Privileged' : 'User';
  const value = key === 'Privileged' ? lit(true) : lit(has('user-spelling') ? v.user : pick(rnd, ['root', '0']));
  if (has('dup-key-case')) {
    notes.push(`dup-key-case: ${key} harmless, then another spelling with the danger`);
    return [...head, [key, safeValue(key)], [caseVariant(key, rnd), value]];
  }
  const spelled = has('key-fold') && foldable(key) ? foldVariant(key, rnd) : has('key-case') || has('key-fold') ? caseVariant(key, rnd) : key;
  return [...head, [spelled, value]];
}

function updateBody(v: Variant, rnd: () => number, notes: string[]): Entries {
  const has = (t: Trick): boolean => v.tricks.includes(t);
  const value = lit(v.danger === 'memory' ? 1073741824 : 134217728);
  // Unlimited swap, so that any memory value is accepted (dockerd refuses memory above the current swap limit).
  const swap: [string, JNode] = ['MemorySwap', lit(-1)];
  if (has('dup-key-case')) {
    notes.push('dup-key-case: Memory 64m, then another spelling with the new value');
    return [['Memory', safeValue('Memory')], [caseVariant('Memory', rnd), value], swap];
  }
  return [[has('key-case') ? caseVariant('Memory', rnd) : 'Memory', value], swap];
}

function volumeBody(v: Variant, ctx: BuildCtx, rnd: () => number, notes: string[]): Entries {
  const has = (t: Trick): boolean => v.tricks.includes(t);
  const device =
    v.danger === 'volume-etc' ? pick(rnd, ['/etc', '/etc/', '//etc', '/tmp/../etc', '/etc/.']) : v.danger === 'volume-relative' ? pick(rnd, ['etc', './etc', 'etc/', 'etc/../etc']) : ctx.safeDir;
  notes.push(`device=${device}`);
  const opts = (dev: string): JNode => j({ type: 'none', o: 'bind', device: dev });
  const head: Entries = [['Name', lit(ctx.name)], ['Driver', lit('local')]];
  const tail: Entries = [['Labels', j(ctx.labels)]];
  const optsKey = has('key-fold') ? foldVariant('DriverOpts', rnd) : has('key-case') ? caseVariant('DriverOpts', rnd) : 'DriverOpts';
  if (has('key-case') && rnd() < 0.5) head[1] = [caseVariant('Driver', rnd), lit('local')];
  if (has('dup-key-case')) {
    // A harmless DriverOpts, then the device under another spelling: Go decodes both into the same map.
    return [...head, ['DriverOpts', opts(ctx.safeDir)], [caseVariant('DriverOpts', rnd), j({ device })], ...tail];
  }
  if (has('dup-object')) {
    // DriverOpts twice: Go merges the second map into the first (device kept); JSON.parse keeps only the second.
    return [...head, [optsKey, opts(device)], ['DriverOpts', j({ type: 'none' })], ...tail];
  }
  return [...head, [optsKey, opts(device)], ...tail];
}

function connectBody(v: Variant, ref: string, rnd: () => number, notes: string[]): Entries {
  const has = (t: Trick): boolean => v.tricks.includes(t);
  if (has('dup-key-case')) {
    notes.push('dup-key-case: a container that does not exist, then the real one under another spelling');
    return [['Container', lit('bkd-no-such-container')], [caseVariant('Container', rnd), lit(ref)]];
  }
  return [[has('key-case') ? caseVariant('Container', rnd) : 'Container', lit(ref)]];
}

/** The request target for `path` ("/containers/create") in the variant's form. */
export function renderTarget(v: Variant, api: string, path: string, query: string, rnd: () => number, legacy = false): string {
  const form = v.tricks.includes('target') ? v.target : 'versioned';
  const q = query === '' ? '' : `?${query}`;
  switch (form) {
    case 'versioned':
      return `/v${api}${path}${q}`;
    case 'no-version':
      return `${path}${q}`;
    case 'foo-scheme':
      return `foo:/v${api}${path}${q}`;
    case 'http-no-slashes':
      return `http:/v${api}${path}${q}`;
    case 'http-host':
      return `http://x/v${api}${path}${q}`;
    case 'HTTP-HOST':
      return `HTTP://docker/v${api}${path}${q}`;
    case 'pct-path': {
      const letters = [...path].map((c, i) => (/[a-z]/i.test(c) ? i : -1)).filter((i) => i >= 0);
      const i = pick(rnd, letters);
      const hex = path.charCodeAt(i).toString(16);
      return `/v${api}${path.slice(0, i)}%${rnd() < 0.5 ? hex : hex.toUpperCase()}${path.slice(i + 1)}${q}`;
    }
    case 'pct-version':
      return `/%76${api}${path}${q}`;
    case 'query-junk':
      return `/v${api}${path}?${query}${query ? '&' : ''}x=%2F..%2F&y`;
    case 'double-slash':
      return `//v${api}${path}${q}`;
    case 'dot-segment':
      return `/v${api}/x/..${path}${q}`;
    case 'trailing-slash':
      return `/v${api}${path}/${q}`;
    case 'other-version':
      return `/v${pick(rnd, legacy ? ['1.12', '1.18', '1.22', '1.023'] : ['1.24', '1.40', '1.45', '1.041', '01.41', '1.99'])}${path}${q}`;
  }
}

/** How the variant names an object in the path. */
function renderRef(v: Variant, o: { id: string; name: string }, rnd: () => number): string {
  if (!v.tricks.includes('target')) return o.id;
  switch (v.ref) {
    case 'id':
      return o.id;
    case 'name':
      return o.name;
    case 'prefix':
      return o.id.slice(0, 12);
    case 'pct-ref': {
      const i = Math.floor(rnd() * Math.min(8, o.id.length));
      return `${o.id.slice(0, i)}%${o.id.charCodeAt(i).toString(16)}${o.id.slice(i + 1)}`;
    }
  }
}

/** Body bytes with the variant's trailing data and padding. */
function finishBody(v: Variant, body: string, notes: string[]): Buffer {
  let s = body;
  if (v.tricks.includes('trailing')) s += v.trailer;
  if (v.tricks.includes('padding')) {
    const n = Math.max(0, v.pad.total - Buffer.byteLength(s));
    if (v.pad.where === 'lead') s = ' '.repeat(n) + s;
    else if (v.pad.where === 'tail') s += ' '.repeat(n);
    else if (s.startsWith('{') && n > 12) s = `{"Xpad":"${'x'.repeat(n - 10)}",${s.slice(1)}`;
    else s += ' '.repeat(n);
    notes.push(`padded to ${Buffer.byteLength(s)} bytes (${v.pad.where})`);
  }
  return Buffer.from(s, 'utf8');
}

function framing(v: Variant, body: Buffer | undefined): Pick<RawRequestSpec, 'body' | 'chunks' | 'contentType'> {
  const contentType = v.tricks.includes('content-type') ? v.contentType : 'application/json';
  if (body === undefined) return {};
  return { body, contentType, ...(v.tricks.includes('chunked') ? { chunks: v.chunks } : {}) };
}

/** The raw request (or requests' first step) of a variant on one engine. */
export function build(v: Variant, ctx: BuildCtx): Built {
  const rnd = v.canonical ? () => 0 : prng(v.salt);
  const notes: string[] = [];
  const headers: [string, string][] = [['X-Bk-Diff', ctx.tag]];
  const req = (method: string, target: string, body?: Entries | Buffer): Built => {
    const bytes = body === undefined ? undefined : Buffer.isBuffer(body) ? body : finishBody(v, serialize(obj(body)), notes);
    return { spec: { method, target, headers, ...framing(v, bytes) }, notes };
  };
  const c = ctx.container;
  switch (v.route) {
    case 'create':
      return req('POST', renderTarget(v, ctx.api, '/containers/create', `name=${ctx.name}`, rnd), createBody(v, ctx, rnd, notes));
    case 'exec':
      return req('POST', renderTarget(v, ctx.api, `/containers/${renderRef(v, c!, rnd)}/exec`, '', rnd), execBody(v, rnd, notes));
    case 'update':
      return req('POST', renderTarget(v, ctx.api, `/containers/${renderRef(v, c!, rnd)}/update`, '', rnd), updateBody(v, rnd, notes));
    case 'volume':
      return req('POST', renderTarget(v, ctx.api, '/volumes/create', '', rnd), volumeBody(v, ctx, rnd, notes));
    case 'connect': {
      const ref = v.tricks.includes('target') && v.ref === 'name' ? c!.name : c!.id;
      return req('POST', renderTarget(v, ctx.api, `/networks/${renderRef(v, ctx.network!, rnd)}/connect`, '', rnd), connectBody(v, ref, rnd, notes));
    }
    case 'start': {
      const verb = rnd() >= 0.75 ? 'restart' : 'start';
      const query = verb === 'restart' ? 't=0' : '';
      const target = renderTarget(v, ctx.api, `/containers/${renderRef(v, c!, rnd)}/${verb}`, query, rnd);
      // A start has no body since API 1.24; the framing tricks send an empty object.
      const body = v.tricks.includes('chunked') || v.tricks.includes('content-type') ? Buffer.from('{}') : undefined;
      return req('POST', target, body);
    }
    case 'legacy-start': {
      const host: Entries = [['NetworkMode', lit('none')], ...hostDanger(v.danger, ctx, rnd)];
      const target = renderTarget(v, '1.23', `/containers/${renderRef(v, c!, rnd)}/start`, '', rnd, true);
      return req('POST', target, hostBody(v, [], host, rnd, notes, true));
    }
  }
}

/** The exec start that follows an exec create (same target form as the create). */
export function buildExecStart(v: Variant, ctx: BuildCtx, execId: string): RawRequestSpec {
  const rnd = prng(v.salt ^ 0x5bd1e995);
  return {
    method: 'POST',
    target: renderTarget(v, ctx.api, `/exec/${execId}/start`, '', rnd),
    headers: [['X-Bk-Diff', ctx.tag]],
    body: Buffer.from('{"Detach":false,"Tty":false}'),
    contentType: 'application/json',
  };
}
