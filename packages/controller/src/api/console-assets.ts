// Owns serving the web console (packages/console, built by `npm run build` into this
// package's dist/console) on the API's HTTPS listener: GET /, /console and /console/ answer its
// index.html, GET /console/assets/<name>-<hash>.<ext> its hashed JS and CSS.
//
// - The files are read once at start-up (tens of KB), with a gzip and a brotli copy made then;
//   answers pick one by Accept-Encoding (hand-written rather than @fastify/compress: three
//   fixed files compressed once beat compressing per request, and it is a dozen lines).
// - index.html: `Cache-Control: no-cache` (revalidated with its ETag, so a new build is seen
//   at once); hashed assets: a year, `immutable` (a new build has new names).
// - The strict CSP and the other security headers come from the server's onRequest hook like
//   every other answer: the console has no inline script or style to exempt.
// - No authentication: these are the same public files for everyone; the data behind them is
//   /v1, behind the session. Unknown asset names are the API's usual 404 problem.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { brotliCompressSync, constants as zc, gzipSync } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { makeProblem, PROBLEM_CONTENT_TYPE } from './problem';

/** Where `npm run build` puts the console: packages/controller/dist/console (beside dist/api). */
export const DEFAULT_CONSOLE_DIR = resolve(__dirname, '..', 'console');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json; charset=utf-8',
};

interface Asset {
  type: string;
  etag: string;
  identity: Buffer;
  gzip: Buffer;
  br: Buffer;
}

export interface ConsoleAssets {
  dir: string;
  index: Asset;
  assets: Map<string, Asset>;
}

function asset(name: string, body: Buffer): Asset {
  const ext = name.slice(name.lastIndexOf('.'));
  return {
    type: TYPES[ext] ?? 'application/octet-stream',
    etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
    identity: body,
    gzip: gzipSync(body, { level: 9 }),
    br: brotliCompressSync(body, { params: { [zc.BROTLI_PARAM_QUALITY]: 11, [zc.BROTLI_PARAM_SIZE_HINT]: body.length } }),
  };
}

/** Reads a built console directory; null when there is none (the console was not built). */
export function loadConsoleAssets(dir: string = DEFAULT_CONSOLE_DIR): ConsoleAssets | null {
  const indexPath = join(dir, 'index.html');
  if (!existsSync(indexPath)) return null;
  const assets = new Map<string, Asset>();
  const assetDir = join(dir, 'assets');
  if (existsSync(assetDir)) for (const name of readdirSync(assetDir)) assets.set(name, asset(name, readFileSync(join(assetDir, name))));
  return { dir, index: asset('index.html', readFileSync(indexPath)), assets };
}

function send(req: FastifyRequest, reply: FastifyReply, a: Asset, cacheControl: string): FastifyReply {
  reply.header('content-type', a.type).header('cache-control', cacheControl).header('etag', a.etag).header('vary', 'accept-encoding');
  if (req.headers['if-none-match'] === a.etag) return reply.code(304).send();
  const accept = String(req.headers['accept-encoding'] ?? '');
  // A q=0 means "not this one"; anything else listed is acceptable.
  const ok = (enc: string) => new RegExp(`(^|,)\\s*${enc}\\s*(;\\s*q=(?!0(\\.0*)?\\s*(,|$))[0-9.]+)?\\s*(,|$)`, 'i').test(accept);
  if (ok('br')) return reply.header('content-encoding', 'br').send(a.br);
  if (ok('gzip')) return reply.header('content-encoding', 'gzip').send(a.gzip);
  return reply.send(a.identity);
}

export function registerConsoleRoutes(app: FastifyInstance, assets: ConsoleAssets | null): void {
  const index = (req: FastifyRequest, reply: FastifyReply) => {
    if (!assets) {
      const p = makeProblem('BK_ERR_NOT_FOUND', 'the web console is not built into this controller (run `npm run build`); the API is under /v1');
      return reply.code(404).header('cache-control', 'no-store').type(PROBLEM_CONTENT_TYPE).send(JSON.stringify({ ...p, requestId: String(req.id) }));
    }
    return send(req, reply, assets.index, 'no-cache');
  };
  app.get('/', { schema: { hide: true } }, index);
  app.get('/console', { schema: { hide: true } }, index);
  app.get('/console/', { schema: { hide: true } }, index);
  app.get<{ Params: { file: string } }>('/console/assets/:file', { schema: { hide: true } }, (req, reply) => {
    const a = assets?.assets.get(req.params.file);
    if (!a) {
      const p = makeProblem('BK_ERR_NOT_FOUND', `no console asset ${JSON.stringify(req.params.file.slice(0, 100))}`);
      return reply.code(404).header('cache-control', 'no-store').type(PROBLEM_CONTENT_TYPE).send(JSON.stringify({ ...p, requestId: String(req.id) }));
    }
    return send(req, reply, a, 'public, max-age=31536000, immutable');
  });
}
