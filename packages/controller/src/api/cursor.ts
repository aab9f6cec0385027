// Owns the opaque page cursors of the list endpoints (keyset paging, 0019_list_paging):
// `nextCursor` names the last row of a page by its sort key, and the next request starts
// right after that row. Unlike an offset, rows inserted or removed before the position do
// not shift later pages (no row lost or repeated), and a deep page costs what a first one
// does. The cursor is base64url JSON — [list, version, ...sort key] — opaque to clients;
// it carries no filters (the client repeats its filters) and nothing secret: decoding one
// only tells where a page ended, which the page itself showed.
import { BulkheadError } from '@bulkhead/shared';

/** Which list a cursor belongs to: a cursor of one list is refused by another. */
export type CursorList = 'containers' | 'violations' | 'agents';

const VERSION = 1;
/** Longest cursor accepted (a container key: agent id, name and 64-hex id, JSON in base64). */
export const MAX_CURSOR_LENGTH = 2048;

export function encodeCursor(list: CursorList, key: ReadonlyArray<string | number>): string {
  return Buffer.from(JSON.stringify([list, VERSION, ...key]), 'utf8').toString('base64url');
}

/**
 * The sort key in `cursor`, checked against `shape` (one type per key part); a
 * 400 BK_ERR_BAD_REQUEST naming the parameter when it is not a cursor this list issued.
 */
export function decodeCursor(list: CursorList, cursor: string, shape: ReadonlyArray<'string' | 'integer' | 'number'>): Array<string | number> {
  const bad = (why: string) =>
    new BulkheadError('BK_ERR_BAD_REQUEST', `querystring/cursor is not a cursor of GET /v1/${list} (${why}); pass the previous page's nextCursor unchanged, or leave cursor out to start at the first page`);
  if (cursor.length > MAX_CURSOR_LENGTH || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw bad('not base64url');
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw bad('unreadable');
  }
  if (!Array.isArray(v)) throw bad('wrong shape');
  if (v[0] !== list) throw bad(typeof v[0] === 'string' && /^[a-z-]{1,32}$/.test(v[0]) ? `it belongs to GET /v1/${v[0]}` : 'wrong shape');
  if (v.length !== shape.length + 2) throw bad('wrong shape');
  if (v[1] !== VERSION) throw bad('unknown version');
  const key = v.slice(2) as unknown[];
  key.forEach((part, i) => {
    const ok =
      shape[i] === 'string' ? typeof part === 'string' : shape[i] === 'number' ? typeof part === 'number' && Number.isFinite(part) : Number.isSafeInteger(part);
    if (!ok) throw bad('wrong shape');
  });
  return key as Array<string | number>;
}

/** A 400 when a request pages both ways at once. */
export function checkCursorOrOffset(q: { cursor?: string; offset?: number }): void {
  if (q.cursor !== undefined && (q.offset ?? 0) !== 0) {
    throw new BulkheadError('BK_ERR_BAD_REQUEST', 'querystring/cursor and querystring/offset cannot be combined: page with nextCursor or with nextOffset, not both');
  }
}
