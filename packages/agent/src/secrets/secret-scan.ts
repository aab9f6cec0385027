// Owns finding secret material in what a container was configured with —
// env values, labels, command/entrypoint arguments and the image's build
// history — and reporting only WHERE it is and WHICH detector matched.
//
// Pure functions: the values are read here, on the host, and never returned,
// logged or copied into facts. `redactCommand` is what keeps a secret passed
// on a command line from leaving the host inside `facts.command`.
import { detectSecrets, detectSecretsInArgv, detectSecretsInEnv } from '@bulkhead/shared';
import type { ContainerFacts__Output, SecretHit__Output } from '@bulkhead/shared';

export type SecretHit = SecretHit__Output;

/** The part of `docker inspect` (or of a create request) the scan reads. */
export interface SecretScanConfig {
  Env?: readonly string[] | null;
  Labels?: Readonly<Record<string, string>> | null;
  Entrypoint?: readonly string[] | string | null;
  Cmd?: readonly string[] | string | null;
}

/** One line of `docker history` (Engine API `GET /images/{id}/history`). */
export interface ImageHistoryEntry {
  CreatedBy?: string | null;
}

/**
 * Secret hits in a container's configuration (`inspect.Config`) and, when
 * given, its image history. Locations: `env:NAME`, `label:KEY`, `command[i]`
 * (index into Entrypoint + Cmd, as in facts.command) and `history[i]` (index
 * into the history as Docker returns it, newest layer first). One hit per
 * (location, detector); order is stable (env, labels, command, history).
 */
export function scanContainerSecrets(
  inspect: { Config?: SecretScanConfig | null } | null | undefined,
  imageHistory?: readonly ImageHistoryEntry[] | null,
): SecretHit[] {
  const cfg = inspect?.Config ?? {};
  return [
    ...scanEnv(cfg.Env),
    ...scanLabels(cfg.Labels),
    ...scanCommand([...strings(cfg.Entrypoint), ...strings(cfg.Cmd)]),
    ...scanHistory(imageHistory),
  ];
}

/** Env entries `NAME=value`; the first occurrence of a name wins, as in the container. */
export function scanEnv(env: readonly string[] | null | undefined): SecretHit[] {
  const out: SecretHit[] = [];
  const seen = new Set<string>();
  for (const e of env ?? []) {
    if (typeof e !== 'string') continue;
    const i = e.indexOf('=');
    if (i <= 0) continue; // a bare NAME carries no value
    const name = e.slice(0, i);
    if (seen.has(name)) continue;
    seen.add(name);
    for (const detector of detectSecretsInEnv(name, e.slice(i + 1))) out.push({ location: `env:${name}`, detector });
  }
  return out;
}

/**
 * Label values. The key is read too (`db.password=hunter2` is a secret even
 * though "hunter2" alone looks like nothing), with the same rules as an env
 * variable name.
 */
export function scanLabels(labels: Readonly<Record<string, string>> | null | undefined): SecretHit[] {
  const out: SecretHit[] = [];
  for (const [key, value] of Object.entries(labels ?? {})) {
    if (typeof value !== 'string') continue;
    for (const detector of detectSecretsInEnv(key, value)) out.push({ location: `label:${key}`, detector });
  }
  return out;
}

/** Entrypoint + Cmd, one element per argument (`--password` `x` is found at the value's index). */
export function scanCommand(argv: readonly string[]): SecretHit[] {
  const out: SecretHit[] = [];
  for (const { index, detectors } of detectSecretsInArgv(argv)) {
    for (const detector of detectors) out.push({ location: `command[${index}]`, detector });
  }
  return out;
}

export function scanHistory(history: readonly ImageHistoryEntry[] | null | undefined): SecretHit[] {
  const out: SecretHit[] = [];
  (history ?? []).forEach((h, i) => {
    const line = typeof h?.CreatedBy === 'string' ? h.CreatedBy : '';
    for (const detector of detectSecrets(line)) out.push({ location: `history[${i}]`, detector });
  });
  return out;
}

/**
 * The command with every argument that a hit points at replaced by
 * `[redacted:<detector>]` (the first detector when several matched). The
 * agent applies this to facts.command before facts leave the host.
 */
export function redactCommand(args: readonly string[], hits: readonly SecretHit[]): string[] {
  const byIndex = new Map<number, string>();
  for (const h of hits) {
    const m = /^command\[(\d+)\]$/.exec(h.location);
    if (m && !byIndex.has(Number(m[1]))) byIndex.set(Number(m[1]), h.detector);
  }
  if (byIndex.size === 0) return [...args];
  return args.map((a, i) => (byIndex.has(i) ? `[redacted:${byIndex.get(i)!}]` : a));
}

/**
 * Labels with every value that a hit points at replaced by
 * `[redacted:<detector>]`: facts carry labels verbatim, and a label holding
 * a password must not leave the host any more than a command argument.
 */
export function redactLabels(labels: Readonly<Record<string, string>>, hits: readonly SecretHit[]): Record<string, string> {
  const out: Record<string, string> = { ...labels };
  for (const h of hits) {
    if (!h.location.startsWith('label:')) continue;
    const key = h.location.slice('label:'.length);
    if (key in out && !out[key]!.startsWith('[redacted:')) out[key] = `[redacted:${h.detector}]`;
  }
  return out;
}

/**
 * Hits that can be found from facts alone (labels and command are in the
 * facts; env values and image history are not). Used where waiting for an
 * inspect is not an option — the reaction path's first evaluation.
 */
export function scanFactsSecrets(facts: Pick<ContainerFacts__Output, 'labels' | 'command'>): SecretHit[] {
  return [...scanLabels(facts.labels), ...scanCommand(facts.command ?? [])];
}

/**
 * Facts ready to evaluate and to leave the host: secret hits attached,
 * command arguments and label values that hold secrets redacted, project
 * set from the policy's project label (read before redaction). Returns a
 * new object; the input is not modified (the watcher shares it).
 */
export function withSecretsAndProject(
  facts: ContainerFacts__Output,
  hits: readonly SecretHit[],
  projectLabel: string,
): ContainerFacts__Output {
  return {
    ...facts,
    secretHits: [...hits],
    command: redactCommand(facts.command ?? [], hits),
    labels: redactLabels(facts.labels ?? {}, hits),
    project: facts.labels?.[projectLabel] ?? '',
  };
}

/** Hits merged, one per (location, detector), first occurrence first. */
export function mergeHits(...lists: ReadonlyArray<readonly SecretHit[]>): SecretHit[] {
  const seen = new Set<string>();
  const out: SecretHit[] = [];
  for (const list of lists) {
    for (const h of list) {
      const k = `${h.location}\u0000${h.detector}`;
      if (seen.has(k)) continue;
      seen.add(k);
      out.push(h);
    }
  }
  return out;
}

function strings(v: unknown): string[] {
  if (typeof v === 'string') return v === '' ? [] : [v];
  if (!Array.isArray(v)) return [];
  return v.filter((x): x is string => typeof x === 'string');
}
