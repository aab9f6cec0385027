// Fault injection for the fault suite (test/faults/disk-full-*, corrupt-state-*,
// clock-skew-*, connections-*): small tmpfs mounts to fill, denied requests on an
// agent's authorization-plugin socket (each one a violation report to count), open
// descriptors of a process, libfaketime. Everything here acts on real processes.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, unlinkSync, writeSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { Test } from 'tap';

/**
 * Mounts a tmpfs of `size` (e.g. "4m") on `dir` (created when missing) and unmounts it in
 * the test's teardown, whatever happened (lazily, so a process still holding a file there
 * cannot keep it mounted). Needs root.
 */
export function mountTmpfs(t: Test, dir: string, size: string): void {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir]);
  t.teardown(() => unmount(dir));
}

export function unmount(dir: string): void {
  try {
    execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
  } catch {
    /* already unmounted */
  }
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/**
 * Fills the file system holding `dir` with a file until write(2) fails (ENOSPC), so nothing
 * more fits; returns the file, for freeSpace().
 */
export function fillFs(dir: string): string {
  const path = join(dir, `.fault-filler-${process.pid}-${Date.now()}`);
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  try {
    for (;;) {
      try {
        if (writeSync(fd, chunk) <= 0) break;
      } catch {
        break; // ENOSPC
      }
    }
    // Then the last partial pages: smaller writes until none fits.
    for (let size = 32 * 1024; size >= 1; size = Math.floor(size / 2)) {
      try {
        while (writeSync(fd, chunk, 0, size) > 0) {
          /* keep filling */
        }
      } catch {
        /* ENOSPC at this size */
      }
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

export function freeSpace(filler: string): void {
  if (existsSync(filler)) unlinkSync(filler);
}

/** Open descriptors of a process (its /proc/PID/fd entries). */
export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Whether a process still runs. */
export function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export const TEST_IMAGE = 'bulkhead-test/busybox:1';

/** A policy that denies privileged containers at the Docker API (each denial is a violation report). */
export function denyPrivilegedPolicy(name: string, note = ''): string {
  return `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: ${name} }
spec:
  rules:
    - id: host.privileged
      description: No privileged containers.${note ? ` ${note}` : ''}
      severity: critical
      mode: enforce
      action: { type: kill }
      check: { type: privileged }
`;
}

export interface PluginAnswer {
  status: number;
  allow: boolean | undefined;
  msg: string;
  ms: number;
}

/**
 * Sends the authorization request dockerd would send for `docker create --privileged --name
 * NAME` to the agent's plugin socket, as dockerd does (one HTTP/1.1 request), and reads the
 * answer. With denyPrivilegedPolicy in force it is refused and reported as a violation whose
 * containerName is NAME.
 */
export function pluginCreate(socketPath: string, name: string, opts: { privileged?: boolean; timeoutMs?: number } = {}): Promise<PluginAnswer> {
  const body = JSON.stringify({ Image: TEST_IMAGE, Cmd: ['true'], HostConfig: { Privileged: opts.privileged ?? true, NetworkMode: 'none' } });
  const envelope = JSON.stringify({
    User: '',
    RequestMethod: 'POST',
    RequestUri: `/v1.41/containers/create?name=${encodeURIComponent(name)}`,
    RequestHeaders: { 'Content-Type': 'application/json' },
    RequestBody: Buffer.from(body).toString('base64'),
  });
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const s = connect(socketPath);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`plugin ${socketPath}: no answer within ${opts.timeoutMs ?? 10_000} ms`));
    }, opts.timeoutMs ?? 10_000);
    let buf = Buffer.alloc(0);
    s.on('connect', () => s.write(`POST /AuthZPlugin.AuthZReq HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(envelope)}\r\n\r\n${envelope}`));
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = buf.toString('latin1', 0, end);
      const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length < end + 4 + len) return;
      clearTimeout(timer);
      s.destroy();
      let json: { Allow?: boolean; Msg?: string; Err?: string } = {};
      try {
        json = JSON.parse(buf.toString('utf8', end + 4, end + 4 + len)) as typeof json;
      } catch {
        /* not JSON */
      }
      resolve({ status: Number(head.split(' ')[1]), allow: json.Allow, msg: json.Msg ?? json.Err ?? '', ms: Date.now() - started });
    });
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** The libfaketime preload library, when installed (Debian: faketime / libfaketime). */
export function libfaketime(): string | undefined {
  for (const p of ['/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1', '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1', '/usr/lib/faketime/libfaketime.so.1']) {
    if (existsSync(p)) return p;
  }
  return undefined;
}

/**
 * Environment that runs a process with its wall clock shifted by `offset` (libfaketime syntax:
 * "+10m", "-10m"). Only the wall clock: monotonic clocks (timers, timeouts) run as usual.
 */
export function skewedClockEnv(offset: string): NodeJS.ProcessEnv {
  const lib = libfaketime();
  if (!lib) throw new Error('libfaketime is not installed (apt-get install faketime); scripts/test.sh installs it');
  return { LD_PRELOAD: lib, FAKETIME: offset, FAKETIME_DONT_FAKE_MONOTONIC: '1', FAKETIME_DONT_RESET: '1' };
}
