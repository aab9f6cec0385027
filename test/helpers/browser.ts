// Real headless Chromium for the web console's end-to-end and security tests, against a real
// controller over HTTPS. Owns: finding and launching Debian's `chromium` (bounded in time,
// always closed with its whole process group, even when the test fails or times out), making
// it trust exactly the certificates a test names, a controller started with a key of each role,
// a second web origin on another loopback address or port (the attacker's site for cross-site
// tests), axe-core accessibility checks, and screenshots for docs/console/.
//
// Nothing here skips: a missing Chromium is a failed test with a message saying how to get it.
//
// Trust: Chromium on Linux reads extra CAs only from an NSS database (certutil is not part of
// the test machines), so the browser is launched with `--ignore-certificate-errors-spki-list`
// naming the SHA-256 of the public keys it may accept. That is narrower than playwright's
// `ignoreHTTPSErrors` (which accepts any certificate): a server presenting any other key is
// still refused (`ERR_CERT_AUTHORITY_INVALID`). Because the flag also waives the name and chain
// checks for that key, `assertServedCertificate` verifies the served chain and name separately
// with Node's TLS against the controller CA, and compares it with what Chromium reports.
import type { Test } from 'tap';
import { X509Certificate, createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type BrowserServer, type Page } from 'playwright-core';
import { createCa, issueServerCert, type KeyAndCert } from '@bulkhead/shared';
import { ROOT, apiRequest } from './processes';
import { startController, type ControllerHandle, type StackOptions } from '../e2e/stack';

/** The tap test the helpers register teardowns and assertions on. */
type TapLike = Test;

/** Where Debian's chromium package puts the browser; BULKHEAD_CHROMIUM overrides. */
export const CHROMIUM_PATH = process.env['BULKHEAD_CHROMIUM'] || '/usr/bin/chromium';

/** The SHA-256 of a certificate's SubjectPublicKeyInfo, base64: the form Chromium's SPKI list takes. */
export function spkiHash(certPem: string): string {
  const der = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('base64');
}

export interface LaunchOptions {
  /** PEM certificates (leaf certificates the servers present) the browser accepts; no other. */
  trust?: string[];
  /** Bound on the launch, ms (default 60 000: a loaded 2-core machine). */
  timeoutMs?: number;
  /** More Chromium flags. */
  args?: string[];
  /** The browser binary (default CHROMIUM_PATH). */
  executablePath?: string;
}

export interface LaunchedBrowser {
  browser: Browser;
  /** The browser's process id (its process group is killed on close). */
  pid: number;
  /** Closes the browser; kills its process group if closing takes more than 10 s. Idempotent. */
  close(): Promise<void>;
}

/**
 * Launches headless Chromium and closes it at the test's teardown. Fails (throws) with a clear
 * message when the browser is not installed: these tests never skip silently.
 */
export async function launchBrowser(t: TapLike, opts: LaunchOptions = {}): Promise<LaunchedBrowser> {
  const executablePath = opts.executablePath ?? CHROMIUM_PATH;
  if (!existsSync(executablePath)) {
    throw new Error(
      `headless Chromium not found at ${executablePath}: the browser tests need Debian's chromium package ` +
        `(scripts/test.sh installs it: apt-get install chromium), or BULKHEAD_CHROMIUM=/path/to/chromium`,
    );
  }
  const spki = (opts.trust ?? []).map(spkiHash);
  const timeout = opts.timeoutMs ?? 60_000;
  // launchServer, not launch: it gives the process, so a browser that does not close is killed
  // (playwright starts it detached, and kill() takes its whole process group: renderers, GPU, zygote).
  const server: BrowserServer = await chromium.launchServer({
    executablePath,
    headless: true,
    timeout,
    args: [
      // The test machines run as root in containers, where Chromium's sandbox cannot start.
      '--no-sandbox',
      ...(spki.length > 0 ? [`--ignore-certificate-errors-spki-list=${spki.join(',')}`] : []),
      // No traffic beyond loopback: no component updates, no safe-browsing lookups.
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      ...(opts.args ?? []),
    ],
  });
  const pid = server.process().pid ?? -1;
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closed ??= (async () => {
      let timer: NodeJS.Timeout | undefined;
      const hard = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 10_000)));
      const soft = (async () => {
        await browser?.close().catch(() => undefined);
        await server.close();
        return 'closed' as const;
      })().catch(() => 'timeout' as const);
      if ((await Promise.race([soft, hard])) === 'timeout') await server.kill();
      clearTimeout(timer);
    })());
  let browser: Browser | undefined;
  t.teardown(close);
  try {
    browser = await chromium.connect(server.wsEndpoint(), { timeout });
  } catch (err) {
    await close();
    throw err;
  }
  return { browser, pid, close };
}

/** True while a process with this id exists (signal 0 probes without signalling). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A fresh context (its own cookie jar, like another browser profile), closed at teardown. */
export async function newContext(t: TapLike, browser: Browser, opts: BrowserContextOptions = {}): Promise<BrowserContext> {
  const ctx = await browser.newContext({ ...opts });
  t.teardown(() => ctx.close().catch(() => undefined));
  return ctx;
}

// ------------------------------------------------------------------------------ certificates

/** Verifies the served certificate with Node's TLS against `caPem` (chain and the name 127.0.0.1) and returns its facts. */
export function verifiedPeer(port: number, caPem: string, host = '127.0.0.1'): Promise<{ subject: string; issuer: string; validFrom: number; validTo: number; fingerprint: string }> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, ca: caPem, servername: undefined, rejectUnauthorized: true }, () => {
      const c = s.getPeerX509Certificate();
      s.end();
      if (!c) return reject(new Error('no peer certificate'));
      resolve({
        subject: c.subject,
        issuer: c.issuer,
        validFrom: Date.parse(c.validFrom),
        validTo: Date.parse(c.validTo),
        fingerprint: c.fingerprint256,
      });
    });
    s.on('error', reject);
  });
}

/**
 * The certificate Chromium saw on `page`'s last navigation is the one Node verified against the
 * controller CA for the same port (same subject, issuer and validity), so the SPKI flag waived
 * nothing that matters.
 */
export async function assertServedCertificate(t: TapLike, response: { securityDetails(): Promise<{ issuer?: string; subjectName?: string; protocol?: string; validFrom?: number; validTo?: number } | null> }, port: number, caPem: string): Promise<void> {
  const node = await verifiedPeer(port, caPem);
  const seen = await response.securityDetails();
  t.ok(seen, 'Chromium reports the connection\'s certificate');
  const cn = (dn: string): string | undefined => /(?:^|\n|,\s*)CN=([^\n,]+)/.exec(dn)?.[1];
  t.same(seen?.subjectName, cn(node.subject), 'Chromium saw the certificate Node verified (subject)');
  t.same(seen?.issuer, cn(node.issuer), 'and its issuer, the controller CA');
  t.same(seen?.validFrom, Math.floor(node.validFrom / 1000), 'and its validity');
  t.ok(seen?.protocol === 'TLS 1.3' || seen?.protocol === 'TLS 1.2', `over ${seen?.protocol}`);
}

// ------------------------------------------------------------------------------ the controller

export type Role = 'viewer' | 'operator' | 'admin';

export interface ConsoleController extends ControllerHandle {
  /** The API's certificate (the data dir's server.crt): give it to launchBrowser's `trust`. */
  serverCertPem: string;
  /** The API's port. */
  port: number;
  /** A fresh unscoped API key of each role (minted through the API by the admin key). */
  keys: Record<Role, string>;
  /** Mints another key; `projects` limits it. Returns the plaintext and the key's id. */
  mintKey(name: string, role: Role, projects?: string[]): Promise<{ key: string; id: string }>;
  /**
   * How many requests the controller answered for `method` and route pattern (e.g. 'DELETE',
   * '/v1/keys/:id') and, if given, status, from its Prometheus metrics: the server's own count, for asserting that a
   * request the browser blocked never arrived.
   */
  served(method: string, route: string, status?: number): Promise<number>;
  /** Any API call with a Bearer key (default: admin); `body` is JSON-encoded. */
  call<T = any>(method: string, path: string, body?: unknown, key?: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: T }>;
}

/** A real controller process (test/e2e/stack.ts) over HTTPS on 127.0.0.1, with a key of each role; stopped at teardown. */
export async function startConsoleController(t: TapLike, root: string, opts: StackOptions = {}): Promise<ConsoleController> {
  const c = await startController(root, opts);
  t.teardown(() => c.stop());
  const call: ConsoleController['call'] = (method, path, body, key) =>
    apiRequest(c.apiBase, method, path, c.caPem, key ?? c.adminKey, body === undefined ? undefined : JSON.stringify(body)) as never;
  const mintKey = async (name: string, role: Role, projects: string[] = []): Promise<{ key: string; id: string }> => {
    const r = await call<{ key: string; id: string }>('POST', '/v1/keys', { name, role, projects });
    if (r.status !== 201) throw new Error(`POST /v1/keys ${name}: ${r.status} ${JSON.stringify(r.body)}`);
    return { key: r.body.key, id: r.body.id };
  };
  const keys = {} as Record<Role, string>;
  for (const role of ['viewer', 'operator', 'admin'] as const) keys[role] = (await mintKey(`console-${role}`, role)).key;
  const served = async (method: string, route: string, status?: number): Promise<number> => {
    const r = await fetch(`http://127.0.0.1:${c.metricsPort}/metrics`);
    if (r.status !== 200) throw new Error(`GET /metrics: ${r.status}`);
    let n = 0;
    for (const line of (await r.text()).split('\n')) {
      const m = /^bulkhead_controller_api_request_duration_seconds_count\{([^}]*)\} (\d+)/.exec(line);
      const labels = m?.[1] ?? '';
      if (m && labels.includes(`method="${method}"`) && labels.includes(`route="${route}"`) && (status === undefined || labels.includes(`status="${status}"`))) n += Number(m[2]);
    }
    return n;
  };
  return Object.assign(c, {
    served,
    serverCertPem: readFileSync(join(c.dataDir, 'server.crt'), 'utf8'),
    port: Number(new URL(c.apiBase).port),
    keys,
    mintKey,
    call,
  });
}

// ------------------------------------------------------------------------------ another origin

export interface OtherOrigin {
  /** e.g. https://127.0.0.2:41234 */
  origin: string;
  /** Its certificate: give it to launchBrowser's `trust`. */
  certPem: string;
  /** Serves `html` (text/html, no security headers) at `path` from now on. */
  page(path: string, html: string): void;
  /** Every request it received (method and URL), for asserting what a page did. */
  requests: { method: string; url: string }[];
  close(): Promise<void>;
}

let otherCa: KeyAndCert | undefined;

/**
 * An HTTPS server on another origin, serving pages a test writes: the attacker's site.
 * `host` 127.0.0.2 (default) is another *site* than the controller on 127.0.0.1 (a browser
 * sends no SameSite=Strict cookie from it); 127.0.0.1 on another port is the same site but
 * another origin (the cookie IS sent: only the CSRF header stops a forged request).
 * Linux routes all of 127.0.0.0/8 to loopback. Closed at teardown.
 */
export async function startOtherOrigin(t: TapLike, host = '127.0.0.2'): Promise<OtherOrigin> {
  otherCa ??= await createCa('Bulkhead test other-origin CA', 2);
  const cert = await issueServerCert({ ca: otherCa, sans: [host], validDays: 1 });
  const pages = new Map<string, string>();
  const requests: { method: string; url: string }[] = [];
  const server: Server = createServer({ key: cert.keyPem, cert: cert.certPem }, (req: IncomingMessage, res: ServerResponse) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '' });
    req.resume();
    const html = pages.get((req.url ?? '/').split('?')[0]!);
    if (html === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(html);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }));
  t.teardown(close);
  return { origin: `https://${host}:${port}`, certPem: cert.certPem, page: (p, html) => pages.set(p, html), requests, close };
}

// ------------------------------------------------------------------------------ sessions in a page

export interface BrowserSession {
  sessionId: string;
  csrfToken: string;
  role: Role;
  projects: string[];
  idleTimeoutSeconds: number;
}

/**
 * Logs in from inside `page` (which must be on the controller's origin) the way the console
 * does: `fetch('POST /v1/session', {key})`. The key passes through the page's memory only.
 * Returns the answer's status and session.
 */
export async function loginInPage(page: Page, key: string): Promise<{ status: number; session: BrowserSession }> {
  return page.evaluate(async (k) => {
    const r = await fetch('/v1/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: k }), credentials: 'same-origin' });
    return { status: r.status, session: (await r.json()) as BrowserSession };
  }, key);
}

/** A same-origin fetch from `page` with the cookie; `csrf` adds the X-Bulkhead-CSRF header. Returns status and parsed body. */
export async function fetchInPage(page: Page, method: string, path: string, opts: { csrf?: string; body?: unknown } = {}): Promise<{ status: number; body: any }> {
  return page.evaluate(
    async ({ method, path, csrf, body }) => {
      const headers: Record<string, string> = {};
      if (csrf !== undefined) headers['x-bulkhead-csrf'] = csrf;
      if (body !== undefined) headers['content-type'] = 'application/json';
      const r = await fetch(path, { method, headers, credentials: 'same-origin', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
      const text = await r.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* keep text */
      }
      return { status: r.status, body: parsed };
    },
    { method, path, csrf: opts.csrf, body: opts.body },
  );
}

// ------------------------------------------------------------------------------ accessibility

export interface AxeViolation {
  id: string;
  impact: 'minor' | 'moderate' | 'serious' | 'critical' | null;
  help: string;
  helpUrl: string;
  nodes: { target: unknown[]; html: string; failureSummary?: string }[];
}

let axeSource: string | undefined;

/**
 * Runs axe-core (from node_modules, never a CDN) on the page and returns its violations. With
 * `t`, also asserts that none is serious or critical, listing them when some are.
 * The script is evaluated through the DevTools protocol, not added as a <script> tag: the
 * console's CSP (no inline script) would rightly refuse an injected tag.
 */
export async function runAxe(page: Page, t?: TapLike, label = page.url()): Promise<AxeViolation[]> {
  axeSource ??= readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  await page.evaluate(`${axeSource}\n;void 0`);
  const violations = (await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(ctx: unknown, opts: unknown): Promise<{ violations: unknown[] }> } }).axe;
    const r = await axe.run((globalThis as unknown as { document: unknown }).document, { resultTypes: ['violations'] });
    return r.violations;
  })) as AxeViolation[];
  if (t) {
    const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    t.same(
      bad.map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.html).slice(0, 3).join(' | ')})`),
      [],
      `axe-core: no serious or critical accessibility violation on ${label}`,
    );
  }
  return violations;
}

// ------------------------------------------------------------------------------ screenshots

export const SCREENSHOT_DIR = join(ROOT, 'docs/console');

/**
 * Writes docs/console/<name>.png when BULKHEAD_CONSOLE_SCREENSHOTS=1 (so the committed pictures
 * come from the same tests that check the views); otherwise does nothing. Returns the path written.
 * The whole page by default; `fullPage: false` takes the viewport only.
 */
export async function screenshot(page: Page, name: string, opts: { fullPage?: boolean } = {}): Promise<string | undefined> {
  if (process.env['BULKHEAD_CONSOLE_SCREENSHOTS'] !== '1') return undefined;
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new Error(`screenshot name ${JSON.stringify(name)}: lower-case letters, digits and dashes only`);
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const path = join(SCREENSHOT_DIR, `${name}.png`);
  // fullPage: false for a view whose whole length would make a picture of megabytes (a CIS report's 117 rows).
  await page.screenshot({ path, fullPage: opts.fullPage ?? true, animations: 'disabled' });
  return path;
}
