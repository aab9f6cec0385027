// Owns `bulkhead images [list]|get`: the tags the fleet ran and the digests
// each ran as, with hosts and containers per digest (tags that move).
import type { Command } from 'commander';
import type { ImageTag as ImageTagDto } from '@bulkhead/client';
import { ago } from '../render';
import { formatKeyValues, formatTable, scrub } from '../table';
import { toJson, type CommandContext } from './context';
import { parsePositiveInt } from './policy';

const PAGE = 200;

export function registerImageCommands(program: Command, ctx: CommandContext): void {
  const images = program
    .command('images')
    .description('image tags the fleet ran, the digests each ran as, and tags that moved')
    .addHelpText('after', '\nExamples:\n  bulkhead images\n  bulkhead images --moved\n  bulkhead images get registry.example.com/shop/web:v1\n');

  images
    .command('list', { isDefault: true })
    .description('tags the fleet ran, most recently seen first; one line per digest')
    .option('--moved', 'only tags that ran as more than one image')
    .option('--search <text>', 'only repositories or tags containing this text')
    .option('--limit <n>', 'show at most N tags (default: 100)', parsePositiveInt)
    .addHelpText(
      'after',
      '\nMOVED is "yes" when the tag ran as more than one image (an `image_tag_moved` alert was raised for each new one).\n' +
        'The first digest of a tag is the one `image-tag-pinned` rules pin it to.\n' +
        '\nExamples:\n  bulkhead images --moved\n  bulkhead images --search shop/web\n  bulkhead --json images --moved | jq \'.items[].ref\'\n',
    )
    .action(async (o: { moved?: boolean; search?: string; limit?: number }, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const max = o.limit ?? 100;
      const items: ImageTagDto[] = [];
      let offset: number | null = 0;
      while (offset !== null && items.length < max) {
        const page: { items: ImageTagDto[]; nextOffset: number | null } = await api.listImages({ moved: o.moved === true ? true : undefined, search: o.search, offset, limit: Math.min(PAGE, max - items.length) });
        items.push(...page.items);
        offset = page.nextOffset;
      }
      ctx.out(json ? toJson({ items }) : renderImageTable(items, ctx.now()));
    });

  images
    .command('get')
    .description('one tag: every digest it ran as, with its hosts and containers')
    .argument('<ref>', 'image ref with a tag, e.g. nginx:1.27 or registry.example.com/shop/web:v1')
    .addHelpText('after', '\nExamples:\n  bulkhead images get nginx:1.27\n  bulkhead --json images get registry.example.com/shop/web:v1\n')
    .action(async (ref: string, _o: unknown, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const img = await api.getImage(ref);
      ctx.out(json ? toJson(img) : renderImage(img, ctx.now()));
    });
}

/** One row per (tag, digest): the tag's columns on its first digest only. */
export function renderImageTable(items: readonly ImageTagDto[], now: Date): string {
  if (items.length === 0) return 'no image tags seen yet\n';
  const rows: string[][] = [];
  for (const i of items) {
    i.digests.forEach((d, n) => {
      rows.push([
        n === 0 ? i.ref : '',
        n === 0 ? (i.moved ? 'yes' : 'no') : '',
        shortDigest(d.digest),
        ago(d.firstSeenAt, now),
        ago(d.lastSeenAt, now),
        d.hosts.map((h) => h.hostname).join(',') || '-',
        String(d.containers.length),
      ]);
    });
  }
  return formatTable(['TAG', 'MOVED', 'DIGEST', 'FIRST SEEN', 'LAST SEEN', 'HOSTS', 'CONTAINERS'], rows);
}

export function renderImage(i: ImageTagDto, now: Date): string {
  let out = formatKeyValues([
    ['Tag', i.ref],
    ['Moved', i.moved ? `yes (${i.digests.length} digests)` : 'no'],
    ['Pinned to', i.digests[0]?.digest ?? '-'],
  ]);
  for (const d of i.digests) {
    out += `\n${scrub(d.digest)}${d.imageId && d.imageId !== d.digest ? ` (image ${scrub(shortDigest(d.imageId))})` : ''}: first seen ${d.firstSeenAt} (${ago(d.firstSeenAt, now)}), last seen ${d.lastSeenAt} (${ago(d.lastSeenAt, now)})\n`;
    out += formatTable(
      ['HOST', 'CONTAINER', 'NAME', 'FIRST SEEN', 'LAST SEEN'],
      d.containers.map((c) => [c.hostname, c.containerId.slice(0, 12), c.name, ago(c.firstSeenAt, now), ago(c.lastSeenAt, now)]),
    );
  }
  return out;
}

function shortDigest(d: string): string {
  return d.startsWith('sha256:') ? d.slice(0, 19) : d.slice(0, 12);
}
