// A Docker authorization plugin that ALLOWS every request and records the
// AuthZReq envelope dockerd sends for it: dockerd then acts on every raw
// request the differential test sends (so the test can inspect what it
// stored), and the test learns exactly what dockerd would have shown a
// plugin — dockerd's own envelope, not a re-implementation of it.
//
// Requests the test sends carry a `X-Bk-Diff: <tag>` header (dockerd passes
// request headers on in the envelope); only those are recorded. When given
// `forward`, each tagged envelope is handed, byte for byte and BEFORE dockerd
// acts on the request, to the plugin under test: its verdict is taken with
// the engine in the state the request found it in (a start is judged on the
// container before the start, as in production).
import { createServer, type Server } from 'node:http';
import { mkdirSync, unlinkSync } from 'node:fs';

export const TAG_HEADER = 'X-Bk-Diff';

export interface Verdict {
  allow: boolean;
  msg: string;
}

export interface Envelope {
  /** The AuthZReq body exactly as dockerd sent it. */
  raw: Buffer;
  method: string;
  uri: string;
  /** RequestBody decoded (dockerd sends it base64); undefined when dockerd sent none. */
  body: Buffer | undefined;
  headers: Record<string, string>;
  user: string;
  /** The plugin under test's verdict (when forwarding). */
  verdict?: Verdict;
}

export class RecorderPlugin {
  private readonly byTag = new Map<string, Envelope[]>();
  /** Untagged requests seen (the harness's own, the decider's lookups). */
  untagged = 0;

  private constructor(readonly socketPath: string, private readonly server: Server) {}

  /** Listens on /run/docker/plugins/<name>.sock (dockerd's `--authorization-plugin=<name>`). */
  static async start(name: string, forward?: (raw: Buffer) => Promise<Verdict>): Promise<RecorderPlugin> {
    const dir = '/run/docker/plugins';
    mkdirSync(dir, { recursive: true });
    const socketPath = `${dir}/${name}.sock`;
    try {
      unlinkSync(socketPath);
    } catch {
      // none left over
    }
    let self: RecorderPlugin | undefined;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const reply = (body: unknown): void => {
          res.writeHead(200, { 'Content-Type': 'application/vnd.docker.plugins.v1+json' });
          res.end(JSON.stringify(body));
        };
        if (req.url === '/Plugin.Activate') return reply({ Implements: ['authz'] });
        if (req.url !== '/AuthZPlugin.AuthZReq') return reply({ Allow: true });
        const raw = Buffer.concat(chunks);
        const env = self!.record(raw);
        if (!env || !forward) return reply({ Allow: true });
        const t0 = performance.now();
        forward(raw).then(
          (v) => {
            if (process.env['BK_DIFF_DEBUG']) console.error(`forward ${env.method} ${env.uri} took ${Math.round(performance.now() - t0)} ms`);
            env.verdict = v;
            reply({ Allow: true });
          },
          (err: unknown) => {
            env.verdict = { allow: true, msg: `forwarding failed: ${String(err)}` };
            reply({ Allow: true });
          },
        );
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => resolve());
    });
    self = new RecorderPlugin(socketPath, server);
    return self;
  }

  private record(raw: Buffer): Envelope | undefined {
    let j: Record<string, unknown>;
    try {
      j = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
    } catch {
      return undefined;
    }
    const headers = (j['RequestHeaders'] ?? {}) as Record<string, string>;
    const tagKey = Object.keys(headers).find((k) => k.toLowerCase() === TAG_HEADER.toLowerCase());
    if (!tagKey) {
      this.untagged++;
      return undefined;
    }
    const b = j['RequestBody'];
    const env: Envelope = {
      raw,
      method: String(j['RequestMethod'] ?? ''),
      uri: String(j['RequestUri'] ?? j['RequestURI'] ?? ''),
      body: typeof b === 'string' && b !== '' ? Buffer.from(b, 'base64') : undefined,
      headers,
      user: String(j['User'] ?? ''),
    };
    const tag = headers[tagKey]!;
    const list = this.byTag.get(tag) ?? [];
    list.push(env);
    this.byTag.set(tag, list);
    return env;
  }

  /** Envelopes recorded for a tag, in arrival order. */
  take(tag: string): Envelope[] {
    const list = this.byTag.get(tag) ?? [];
    this.byTag.delete(tag);
    return list;
  }

  stop(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    }).then(() => {
      try {
        unlinkSync(this.socketPath);
      } catch {
        // gone
      }
    });
  }
}
