// The image prune policy as operators give it: the scope flags (checked at
// start, clear errors), the `run` flags and their environment variables
// (off by default; on/off parsed strictly, so BULKHEAD_IMAGE_PRUNE=0 is
// off), and the bounded record the report carries.
import t from 'tap';
import { Command } from 'commander';
import { addHostAuditRunOptions, resolveHostAuditOptions } from '../../src/cis/host-audit-options';
import { resolveAgentOptions } from '../../src/agent-options';
import { describePrunePolicy, parseOnOff, pruneOptionsOf, resolvePrunePolicy, type ImagePrunePolicy } from '../../src/hygiene/prune-policy';
import { formatSize } from '@bulkhead/shared';
import { summarizePrune, PRUNE_SUMMARY_MAX_IMAGES } from '../../src/hygiene/prune-summary';
import type { PruneResult } from '../../src/hygiene/image-prune';

const flag = (k: string): string => `x-${k}`;

t.test('resolvePrunePolicy: defaults, globs, labels, errors', async (t) => {
  t.same(resolvePrunePolicy({}, { defaultOlderThanDays: 30, flag }), {
    olderThanDays: 30, include: undefined, exclude: [], dangling: undefined, labels: undefined, dryRun: false,
  });
  const p = resolvePrunePolicy(
    { olderThan: '0.5', include: ['reg.example.com/ci/*,*:pr-?'], exclude: ['*:stable'], dangling: true, label: ['team=ci', 'temporary', 'owner=*'], dryRun: true },
    { defaultOlderThanDays: 30, flag },
  );
  t.same(p, {
    olderThanDays: 0.5, include: ['reg.example.com/ci/*', '*:pr-?'], exclude: ['*:stable'], dangling: true,
    labels: { team: 'ci', temporary: '*', owner: '*' }, dryRun: true,
  });
  t.same(pruneOptionsOf(p), { olderThanDays: 0.5, dryRun: true, include: ['reg.example.com/ci/*', '*:pr-?'], exclude: ['*:stable'], dangling: true, labels: { team: 'ci', temporary: '*', owner: '*' } });
  t.same(pruneOptionsOf(resolvePrunePolicy({ olderThan: 7 }, { defaultOlderThanDays: 30, flag })), { olderThanDays: 7, dryRun: false }, 'unset scope stays unset (pruneImages defaults apply)');
  t.equal(resolvePrunePolicy({ olderThan: '' }, { defaultOlderThanDays: 3, flag }).olderThanDays, 3, 'empty = default');
  const bad: Array<[Parameters<typeof resolvePrunePolicy>[0], RegExp]> = [
    [{ olderThan: '-1' }, /x-olderThan must be a number of days ≥ 0, got "-1"/],
    [{ olderThan: '30d' }, /x-olderThan must be a number of days/],
    [{ olderThan: 'Infinity' }, /x-olderThan/],
    [{ include: ['has space'] }, /x-include "has space" is not a tag glob/],
    [{ include: [','] }, /x-include is empty/],
    [{ exclude: ['a|b'] }, /x-exclude "a\|b" is not a tag glob/],
    [{ label: ['=v'] }, /x-label "=v" is not key=value/],
    [{ label: ['a b=c'] }, /x-label/],
  ];
  for (const [input, re] of bad) t.throws(() => resolvePrunePolicy(input, { defaultOlderThanDays: 30, flag }), { code: 'BK_ERR_CONFIG_INVALID', message: re }, re.source);
});

t.test('describePrunePolicy and parseOnOff', async (t) => {
  const base: ImagePrunePolicy = { olderThanDays: 30, include: undefined, exclude: [], dangling: undefined, labels: undefined, dryRun: false };
  t.equal(describePrunePolicy(base), 'every tag; dangling images too; idle ≥ 30 day(s)');
  t.equal(
    describePrunePolicy({ ...base, include: ['a/*'], exclude: ['*:keep'], labels: { team: 'ci', tmp: '*' }, dryRun: true, olderThanDays: 0 }),
    'tags a/*; not *:keep; no dangling images; labels team=ci, tmp; idle ≥ 0 day(s); dry run',
  );
  t.equal(describePrunePolicy({ ...base, include: ['a/*'], dangling: true }), 'tags a/*; dangling images too; idle ≥ 30 day(s)');
  for (const v of ['on', 'TRUE', '1', 'yes', ' On ']) t.equal(parseOnOff(v), true, v);
  for (const v of ['off', 'false', '0', 'No']) t.equal(parseOnOff(v), false, v);
  t.throws(() => parseOnOff('maybe'), { code: 'commander.invalidArgument', message: /expected on\/off/ });
});

t.test('run flags: off by default; on with its scope; env; invalid combinations refused at start', async (t) => {
  const parse = (argv: string[], env: Record<string, string> = {}) => {
    const saved = { ...process.env };
    Object.assign(process.env, env);
    try {
      const cmd = addHostAuditRunOptions(new Command('run').exitOverride().configureOutput({ writeErr: () => undefined }));
      cmd.parse(argv, { from: 'user' });
      return cmd.opts();
    } finally {
      for (const k of Object.keys(env)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  };
  t.equal(resolveHostAuditOptions(parse([])).imagePrune, undefined, 'off by default');
  const on = resolveHostAuditOptions(parse(['--image-prune', '--image-prune-include', 'ci/*', '--image-prune-include', 'tmp/*', '--image-prune-exclude', '*:stable', '--image-prune-label', 'team=ci', '--image-prune-dry-run']));
  t.same(on.imagePrune, { olderThanDays: 30, include: ['ci/*', 'tmp/*'], exclude: ['*:stable'], dangling: undefined, labels: { team: 'ci' }, dryRun: true }, 'older-than defaults to --image-unused-days');
  t.equal(resolveHostAuditOptions(parse(['--image-prune', '--image-unused-days', '9'])).imagePrune?.olderThanDays, 9);
  t.equal(resolveHostAuditOptions(parse(['--image-prune', 'on', '--image-prune-older-than', '2', '--image-prune-dangling', 'off'])).imagePrune?.dangling, false);
  t.equal(resolveHostAuditOptions(parse(['--image-prune', '--image-prune-older-than', '2'])).imagePrune?.olderThanDays, 2);

  const env = resolveHostAuditOptions(parse([], {
    BULKHEAD_IMAGE_PRUNE: 'on', BULKHEAD_IMAGE_PRUNE_OLDER_THAN: '14', BULKHEAD_IMAGE_PRUNE_INCLUDE: 'ci/*,tmp/*', BULKHEAD_IMAGE_PRUNE_EXCLUDE: '*:stable',
    BULKHEAD_IMAGE_PRUNE_DANGLING: 'yes', BULKHEAD_IMAGE_PRUNE_LABELS: 'team=ci,tmp', BULKHEAD_IMAGE_PRUNE_DRY_RUN: 'false', BULKHEAD_IMAGE_UNUSED_DAYS: '5',
  }));
  t.same(env.imagePrune, { olderThanDays: 14, include: ['ci/*', 'tmp/*'], exclude: ['*:stable'], dangling: true, labels: { team: 'ci', tmp: '*' }, dryRun: false }, 'every flag from the environment');
  t.equal(env.imageUnusedDays, 5);
  t.equal(resolveHostAuditOptions(parse([], { BULKHEAD_IMAGE_PRUNE: '0' })).imagePrune, undefined, 'BULKHEAD_IMAGE_PRUNE=0 is off (a plain commander boolean would be on)');
  t.equal(
    resolveHostAuditOptions(parse(['--image-prune-include', 'ci/*'], { BULKHEAD_IMAGE_PRUNE: 'off' })).imagePrune,
    undefined,
    'explicitly off: a scope kept in the environment is ignored',
  );
  t.throws(() => parse([], { BULKHEAD_IMAGE_PRUNE: 'sometimes' }), { code: 'commander.invalidArgument' }, 'a bad on/off value is a usage error');

  t.throws(() => resolveHostAuditOptions(parse(['--image-prune-include', 'ci/*', '--image-prune-dry-run'])), {
    code: 'BK_ERR_CONFIG_INVALID', message: '--image-prune-include, --image-prune-dry-run given without --image-prune; add --image-prune to switch the prune policy on',
  });
  t.throws(() => resolveHostAuditOptions(parse(['--image-prune', '--audit-interval', '0'])), { code: 'BK_ERR_CONFIG_INVALID', message: /cannot be enabled with audit-interval 0/ });
  t.throws(() => resolveHostAuditOptions(parse(['--image-prune', '--image-prune-older-than', 'soon'])), { message: /image-prune-older-than must be a number of days/ });
  t.throws(() => resolveHostAuditOptions(parse(['--image-prune', '--image-prune-label', '=x'])), { message: /image-prune-label "=x"/ });
  t.same(resolveAgentOptions({ stateDir: '/tmp/x', audit: { imagePrune: true, imagePruneInclude: ['a/*'] } }).audit.imagePrune?.include, ['a/*'], 'part of the agent options');
});

t.test('summarizePrune: exact counts, failures first, bounded list, dry-run bytes', async (t) => {
  const rec = (id: string, size: number, o: { deleted?: boolean; error?: string; untagged?: string[] } = {}) => ({
    id, tags: [`${id}:1`, `${id}:2`], sizeBytes: size, reason: 'never used by a container, idle 40.0 days',
    untagged: o.untagged ?? [`${id}:1`, `${id}:2`], deleted: o.deleted ?? true, deletedIds: [], ...(o.error ? { error: o.error } : {}),
  });
  const result: PruneResult = {
    at: Date.parse('2026-11-28T12:00:00Z'), dryRun: false, olderThanDays: 30,
    removed: [rec('small', 10), rec('big', 1000), rec('part', 500, { deleted: false, untagged: ['part:1'] }), rec('refused', 5, { deleted: false, error: 'conflict' })],
    skipped: [{ id: 'kept', tags: ['kept:1'], why: 'used by stopped container(s) x' }],
    reclaimedBytes: 1010,
  };
  const policy: ImagePrunePolicy = { olderThanDays: 30, include: ['*'], exclude: [], dangling: undefined, labels: undefined, dryRun: false };
  const s = summarizePrune(result, policy);
  t.same(s.counts, { removed: 4, deleted: 2, untagged: 1, failed: 1, skipped: 1 });
  t.same(s.images.map((i) => i.id), ['refused', 'big', 'part', 'small'], 'failures first, then largest first');
  t.equal(s.images[0]!.error, 'conflict');
  t.equal(s.images[1]!.error, undefined);
  t.same(s.scope, { include: ['*'], exclude: [], dangling: false, labels: null });
  t.equal(s.at, '2026-11-28T12:00:00.000Z');
  t.equal(s.reclaimedBytes, 1010);
  t.equal(s.wouldReclaimBytes, 0);
  t.equal(s.truncated, false);
  const cut = summarizePrune(result, policy, 2);
  t.equal(cut.images.length, 2);
  t.equal(cut.truncated, true);
  t.equal(cut.counts.removed, 4, 'counts stay exact');
  const dry = summarizePrune({ ...result, dryRun: true, reclaimedBytes: 0 }, { ...policy, include: undefined, dryRun: true });
  t.equal(dry.wouldReclaimBytes, 1010, 'a dry run says what it would reclaim');
  t.equal(dry.scope.dangling, true);
  t.equal(PRUNE_SUMMARY_MAX_IMAGES, 100);
  t.equal(formatSize(10), '10 B');
  t.equal(formatSize(1536), '1.5 KiB');
  t.equal(formatSize(5 * 1024 ** 3), '5.0 GiB');
});
