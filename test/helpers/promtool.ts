// Runs `promtool check metrics` (Debian package `prometheus`; scripts/test.sh
// installs it) on exposition text, and scrapes a metrics listener.
import { spawn } from 'node:child_process';
import { request } from 'node:http';

export interface PromtoolResult {
  code: number;
  /** promtool prints lint problems ("… should have "_total" suffix") here. */
  output: string;
}

/** Feeds `text` to `promtool check metrics` on stdin. Rejects when promtool is not installed. */
export function promtoolCheck(text: string): Promise<PromtoolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'ENOENT' ? new Error('promtool not found: apt-get install prometheus (scripts/test.sh does it)') : e),
    );
    child.on('close', (code) => resolve({ code: code ?? -1, output }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(text);
  });
}

export interface Scrape {
  status: number;
  contentType: string;
  body: string;
}

/** GET http://HOST:PORT/PATH (plain HTTP, as Prometheus scrapes). */
export function scrape(port: number, path = '/metrics', host = '127.0.0.1', method = 'GET'): Promise<Scrape> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, method, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Metric family names (from # TYPE lines) in exposition text. */
export function metricNames(text: string): string[] {
  return [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!);
}

/** The value of one sample, e.g. sample(text, 'x_total{a="b"}'); undefined when absent. */
export function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1).split(' ')[0]);
}
