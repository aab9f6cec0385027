// `bulkhead-agent prune-images`: the image prune, once, against the local
// engine; no controller needed. Same scope as the running agent's
// --image-prune policy (hygiene/prune-policy.ts, hygiene/image-prune.ts),
// and it respects the running agent's memory of image uses
// (STATE_DIR/image-last-used.json) when there is one.
//
// Exit codes: 0 — done (whatever it removed, nothing included);
// 4 — dockerd refused or failed some removals (the rest is done, every
// record printed); 1 — the engine could not be reached, or the memory file
// is unreadable; 2 — bad arguments.
import { Option, type Command } from 'commander';
import { BulkheadError, formatSize, isBulkheadError } from '@bulkhead/shared';
import { createDockerClient, resolveDockerHost } from '../docker/client';
import { DEFAULT_IMAGE_UNUSED_DAYS } from '../cis/host-audit-options';
import type { HygieneDocker } from '../hygiene/image-hygiene';
import { imageLastUsedPath, readImageLastUsed } from '../hygiene/image-last-used';
import { pruneImages, type PruneResult } from '../hygiene/image-prune';
import { collect, describePrunePolicy, parseOnOff, pruneOptionsOf, resolvePrunePolicy, type ImagePruneInput, type ImagePrunePolicy } from '../hygiene/prune-policy';
import { summarizePrune, type PruneSummary } from '../hygiene/prune-summary';

/** The exit code when some removal failed. */
export const PRUNE_FAILED_EXIT_CODE = 4;

export interface PruneCliIo {
  out: (s: string) => void;
  err: (s: string) => void;
}

/** Thrown after the records are printed when a removal failed; `main` returns `exitCode` without printing more. */
export class PruneFailedError extends Error {
  readonly exitCode = PRUNE_FAILED_EXIT_CODE;
  constructor(readonly failed: number) {
    super(`prune-images: ${failed} removal(s) failed`);
    this.name = 'PruneFailedError';
  }
}

interface PruneCommandOptions extends ImagePruneInput {
  json?: boolean;
  dockerHost?: string;
  stateDir: string;
}

/** What `--json` prints: the controller's `prune` record shape, unbounded, plus what was skipped and the memory used. */
export type PruneImagesJson = PruneSummary & { skipped: PruneResult['skipped']; lastUsed: { path: string; images: number } };

/** Injection point for tests: the engine client (default: the real engine at the URL). */
export type PruneDockerFactory = (dockerHost: string) => HygieneDocker;

const defaultDocker: PruneDockerFactory = (dockerHost) => createDockerClient({ dockerHost, timeoutMs: 120_000 });

/** Adds `prune-images` to the agent CLI. */
export function registerPruneImagesCommand(program: Command, io: PruneCliIo, makeDocker: PruneDockerFactory = defaultDocker): Command {
  return program
    .command('prune-images')
    .description('remove stale images once (no container used them for --older-than days), scoped by tag globs and labels; never an image a container uses or was made from; no controller needed')
    .option('--dry-run', 'print what would be removed, remove nothing')
    .addOption(new Option('--older-than <days>', 'only images no container used (and that did not arrive) for this many days').default(String(DEFAULT_IMAGE_UNUSED_DAYS)))
    .addOption(new Option('--include <glob>', 'only tags matching this glob (repeatable or comma-separated; * and ?); default every tag').argParser(collect))
    .addOption(new Option('--exclude <glob>', 'never tags matching this glob (repeatable or comma-separated)').argParser(collect))
    .addOption(new Option('--dangling [on|off]', 'dangling (untagged) images too; default on without --include, off with it').argParser(parseOnOff))
    .addOption(new Option('--label <key=value>', 'only images with this label (repeatable or comma-separated; key alone or key=* = present)').argParser(collect))
    .option('--json', 'print the records as JSON (the shape of `prune` in GET /v1/agents/{id}/audit, every record)')
    .addOption(new Option('--docker-host <url>', 'Docker engine (unix:///path or tcp://…); default DOCKER_HOST or /var/run/docker.sock').env('BULKHEAD_DOCKER_HOST'))
    .addOption(new Option('--state-dir <dir>', "the agent's state directory, whose image-last-used.json (uses the running agent remembered) is respected").env('BULKHEAD_STATE_DIR').default('/var/lib/bulkhead-agent'))
    .addHelpText(
      'after',
      '\nExit status: 0 done; 4 some removal failed (the rest done, every record printed); 1 the engine could not be reached or the memory file is unreadable; 2 bad arguments.\n' +
        "\nExamples:\n  bulkhead-agent prune-images --dry-run\n  bulkhead-agent prune-images --older-than 14 --include 'registry.example.com/ci/*' --exclude '*:stable'\n  bulkhead-agent prune-images --label com.example.temporary --dangling --json",
    )
    .action(async (o: PruneCommandOptions) => {
      const policy = resolvePrunePolicy(o, { defaultOlderThanDays: DEFAULT_IMAGE_UNUSED_DAYS, flag: (k) => FLAGS[k] });
      const memoryPath = imageLastUsedPath(o.stateDir);
      const lastUsed = readImageLastUsed(memoryPath); // unreadable: exit 1, never "so nothing was used"
      const hostUrl = resolveDockerHost(o.dockerHost);
      let result: PruneResult;
      try {
        result = await pruneImages({ docker: makeDocker(hostUrl), ...pruneOptionsOf(policy), lastUsed });
      } catch (cause) {
        if (isBulkheadError(cause)) throw cause;
        throw new BulkheadError('BK_ERR_DOCKER_UNAVAILABLE', `cannot prune images on the engine at ${hostUrl}: ${(cause as Error).message}`, { cause });
      }
      const summary = summarizePrune(result, policy, Number.POSITIVE_INFINITY);
      if (o.json) {
        const doc: PruneImagesJson = { ...summary, skipped: result.skipped, lastUsed: { path: memoryPath, images: lastUsed.size } };
        io.out(`${JSON.stringify(doc, null, 2)}\n`);
      } else {
        io.out(formatPruneText(summary, policy, { path: memoryPath, images: lastUsed.size }));
      }
      if (summary.counts.failed > 0) {
        const e = new PruneFailedError(summary.counts.failed);
        io.err(`${e.message}\n`);
        throw e;
      }
    });
}

const FLAGS: Record<keyof ImagePruneInput, string> = {
  olderThan: 'older-than', include: 'include', exclude: 'exclude', dangling: 'dangling', label: 'label', dryRun: 'dry-run',
};

/** The text output: the scope, one row per image, a total line. */
export function formatPruneText(s: PruneSummary, policy: ImagePrunePolicy, memory: { path: string; images: number }): string {
  let out = `Scope: ${describePrunePolicy(policy)}\n`;
  out += `Remembered uses: ${memory.images} image(s) (${memory.path})\n\n`;
  if (s.images.length > 0) {
    const rows = s.images.map((i) => [
      i.error !== undefined ? 'failed' : i.deleted ? (s.dryRun ? 'would delete' : 'deleted') : s.dryRun ? 'would untag' : 'untagged',
      i.id.replace(/^sha256:/, '').slice(0, 12),
      i.untagged.length > 0 ? i.untagged.join(', ') : '<none>',
      formatSize(i.sizeBytes),
      i.error ?? i.reason,
    ]);
    out += table(['RESULT', 'IMAGE', 'TAGS', 'SIZE', 'WHY'], rows);
    out += '\n';
  }
  const c = s.counts;
  const what = `${c.removed - c.failed} image(s) (${c.deleted} deleted, ${c.untagged} untagged only)`;
  out += s.dryRun
    ? `Dry run: would remove ${what}, reclaiming ${formatSize(s.wouldReclaimBytes)}; nothing was removed`
    : `Pruned ${what}, reclaimed ${formatSize(s.reclaimedBytes)}; ${c.failed} failed`;
  out += c.skipped > 0 ? `; ${c.skipped} stale image(s) kept: made from stopped containers\n` : '\n';
  return out;
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(head), ...rows.map(line)].join('\n') + '\n';
}
