// Runs the built controller, agent and ops CLI as real processes for
// end-to-end tests, and talks to the controller's HTTPS API.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join, resolve } from 'node:path';

export const ROOT = resolve(__dirname, '../..');
export const CONTROLLER_BIN = join(ROOT, 'packages/controller/dist/cli/main.js');
export const AGENT_BIN = join(ROOT, 'packages/agent/dist/cli/main.js');
export const OPS_BIN = join(ROOT, 'packages/cli/dist/main.js');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a node script to completion. */
export function run(bin: string, args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${bin} ${args.join(' ')} timed out after ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** A long-running process whose JSON log lines we can wait on. */
export class Daemon {
  readonly lines: Record<string, unknown>[] = [];
  raw = '';
  private waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  readonly exited: Promise<number | null>;

  private constructor(readonly child: ChildProcess, readonly name: string) {
    let buf = '';
    const onData = (d: Buffer): void => {
      this.raw += d.toString();
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          const obj = JSON.parse(line) as Record<string, unknown>;
          this.lines.push(obj);
          this.waiters = this.waiters.filter((w) => (w.pred(obj) ? (w.resolve(obj), false) : true));
        } catch {
          /* not a log line */
        }
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    this.exited = new Promise((r) => child.on('exit', (code) => r(code)));
  }

  static start(name: string, bin: string, args: string[], env: NodeJS.ProcessEnv = {}): Daemon {
    const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, BULKHEAD_LOG_LEVEL: 'debug', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    return new Daemon(child, name);
  }

  /** Resolves with the first log line (past or future) matching `pred`. */
  waitForLog(pred: (l: Record<string, unknown>) => boolean, timeoutMs = 30_000): Promise<Record<string, unknown>> {
    const hit = this.lines.find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no matching log line within ${timeoutMs} ms; output:\n${this.raw.slice(-4000)}`)), timeoutMs);
      this.waiters.push({ pred, resolve: (l) => (clearTimeout(timer), resolvePromise(l)) });
    });
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

export interface ApiResponse<T = unknown> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: T;
}

/** GET over HTTPS trusting only `caPem`. */
export function apiGet<T = unknown>(base: string, path: string, caPem: string, apiKey?: string): Promise<ApiResponse<T>> {
  return new Promise((resolvePromise, reject) => {
    const req = request(new URL(path, base), { method: 'GET', ca: caPem, headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {} }, (res) => {
      let data = '';
      res.on('data', (d: Buffer) => (data += d.toString()));
      res.on('end', () => {
        let body: unknown = data;
        try {
          body = JSON.parse(data);
        } catch {
          /* keep text */
        }
        resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, body: body as T });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** Polls `fn` until it returns a truthy value. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false | null>, timeoutMs = 20_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export function readText(path: string): string {
  return readFileSync(path, 'utf8');
}

/** Any method over HTTPS trusting only `caPem`; `body` is sent as-is with `contentType`. */
export function apiRequest<T = unknown>(
  base: string,
  method: string,
  path: string,
  caPem: string,
  apiKey: string,
  body?: string,
  contentType = 'application/json',
): Promise<ApiResponse<T>> {
  return new Promise((resolvePromise, reject) => {
    const headers: Record<string, string> = { authorization: `Bearer ${apiKey}` };
    if (body !== undefined) headers['content-type'] = contentType;
    const req = request(new URL(path, base), { method, ca: caPem, headers }, (res) => {
      let data = '';
      res.on('data', (d: Buffer) => (data += d.toString()));
      res.on('end', () => {
        let parsed: unknown = data;
        try {
          parsed = JSON.parse(data);
        } catch {
          /* keep text */
        }
        resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, body: parsed as T });
      });
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}
