// Owns the reading of dockerd's command line: `-H tcp://…`, `--host=…`,
// `--tlsverify`, `--icc=false`, … into a map of flag → values.
//
// dockerd takes no positional arguments, so a word that does not start with
// "-" is always the value of the flag before it. Boolean flags follow Go's
// flag package: `--tlsverify` means true, `--tlsverify=false` false; a bool
// never consumes the next word.

/** Short flags dockerd knows, by their long names. */
const SHORT: Readonly<Record<string, string>> = {
  H: 'host',
  D: 'debug',
  l: 'log-level',
  G: 'group',
  p: 'pidfile',
  b: 'bridge',
  s: 'storage-driver',
  g: 'graph',
};

/** Flags of dockerd that are booleans (so never take the next word as value). */
const BOOLEAN_FLAGS: ReadonlySet<string> = new Set([
  'debug', 'tls', 'tlsverify', 'icc', 'iptables', 'ip6tables', 'ip-forward', 'ip-masq', 'userland-proxy', 'live-restore',
  'no-new-privileges', 'experimental', 'selinux-enabled', 'ipv6', 'raw-logs', 'init', 'rootless', 'validate', 'version', 'help',
]);

export interface DockerdFlags {
  /** Values per long flag name, in command-line order (a bool given bare is "true"). */
  readonly values: ReadonlyMap<string, readonly string[]>;
  /** The last value of a flag, or undefined when absent. */
  last(name: string): string | undefined;
  /** Every value of a repeatable flag (`-H`, `--insecure-registry`, `--authorization-plugin`). */
  all(name: string): readonly string[];
  /** A boolean flag: undefined when absent, else its last value parsed like Go's strconv.ParseBool. */
  bool(name: string): boolean | undefined;
  has(name: string): boolean;
}

/** Parses dockerd's argv (argv[0] may be the binary; it is skipped when it does not start with "-"). */
export function parseDockerdFlags(argv: readonly string[]): DockerdFlags {
  const values = new Map<string, string[]>();
  const add = (name: string, value: string): void => {
    const list = values.get(name);
    if (list) list.push(value);
    else values.set(name, [value]);
  };
  let i = argv.length > 0 && !argv[0]!.startsWith('-') ? 1 : 0;
  for (; i < argv.length; i++) {
    const word = argv[i]!;
    if (!word.startsWith('-') || word === '-' || word === '--') continue;
    const body = word.replace(/^--?/, '');
    const eq = body.indexOf('=');
    let name = eq < 0 ? body : body.slice(0, eq);
    if (word.startsWith('-') && !word.startsWith('--') && name.length === 1) name = SHORT[name] ?? name;
    if (eq >= 0) {
      add(name, body.slice(eq + 1));
      continue;
    }
    if (BOOLEAN_FLAGS.has(name)) {
      add(name, 'true');
      continue;
    }
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith('-')) {
      add(name, next);
      i++;
    } else {
      add(name, '');
    }
  }
  return {
    values,
    last: (n) => values.get(n)?.at(-1),
    all: (n) => values.get(n) ?? [],
    bool: (n) => {
      const v = values.get(n)?.at(-1);
      return v === undefined ? undefined : parseGoBool(v);
    },
    has: (n) => values.has(n),
  };
}

/** Go's strconv.ParseBool: 1, t, T, TRUE, true, True → true; anything else false. */
export function parseGoBool(v: string): boolean {
  return ['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v.trim());
}

/** A dockerd listen address as written in `-H` or daemon.json `hosts`. */
export interface DaemonHost {
  raw: string;
  kind: 'unix' | 'tcp' | 'fd' | 'ssh' | 'npipe' | 'other';
  /** Host part for tcp ("" means every interface, as dockerd reads `tcp://:2375`). */
  host?: string;
  port?: number;
  /** Socket path for unix. */
  path?: string;
}

/** Parses `unix:///p`, `tcp://h:p`, `tcp://:2375`, `fd://`, a bare `h:p` (tcp) or a bare path (unix). */
export function parseDaemonHost(raw: string): DaemonHost {
  const s = raw.trim();
  if (s.startsWith('unix://')) return { raw, kind: 'unix', path: s.slice('unix://'.length) || '/var/run/docker.sock' };
  if (s.startsWith('/')) return { raw, kind: 'unix', path: s };
  if (s.startsWith('fd://')) return { raw, kind: 'fd' };
  if (s.startsWith('ssh://')) return { raw, kind: 'ssh' };
  if (s.startsWith('npipe://')) return { raw, kind: 'npipe' };
  const m = /^(?:(tcp|http|https):\/\/)?(\[[^\]]*\]|[^:/]*)(?::(\d+))?\/?$/.exec(s);
  if (m && (m[1] !== undefined || m[3] !== undefined)) {
    const host = (m[2] ?? '').replace(/^\[(.*)\]$/, '$1');
    // dockerd's defaults: 2376 with TLS, 2375 without; we cannot know TLS here, so 2375.
    return { raw, kind: 'tcp', host, port: m[3] !== undefined ? Number(m[3]) : 2375 };
  }
  return { raw, kind: 'other' };
}
