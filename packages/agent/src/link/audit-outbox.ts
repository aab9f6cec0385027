// Owns the host audit report waiting for the controller: ONE slot, not a
// queue. Only the latest audit matters (it supersedes every earlier one), so
// a new report replaces an unsent one — an agent cut off from its controller
// for a week sends one report when it comes back, not 168.
//
// The slot is a file in the state directory (0600, replaced atomically):
// a report made while the controller is unreachable survives an agent
// restart. It is cleared only when the controller acknowledged the message
// that carried that very report (matched by its taken_at_ms).
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { AuditReport, Logger } from '@bulkhead/shared';

export interface AuditOutboxOptions {
  /** The slot file; undefined keeps the report in memory only (tests, or no state directory). */
  path?: string | undefined;
  logger: Logger;
}

export class AuditOutbox {
  private slot: AuditReport | undefined;
  private chain: Promise<void> = Promise.resolve();

  private constructor(private readonly opts: AuditOutboxOptions) {}

  /** Opens the slot, recovering a report a previous run could not deliver. */
  static async open(opts: AuditOutboxOptions): Promise<AuditOutbox> {
    const o = new AuditOutbox(opts);
    if (opts.path === undefined) return o;
    await mkdir(dirname(opts.path), { recursive: true, mode: 0o700 });
    let text: string | undefined;
    try {
      text = await readFile(opts.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (text !== undefined) {
      try {
        const r = JSON.parse(text) as AuditReport;
        if (typeof r.cisJson === 'string' && Number(r.takenAtMs) > 0) {
          o.slot = r;
          opts.logger.info({ takenAtMs: Number(r.takenAtMs) }, 'audit outbox: recovered an unsent host audit report');
        }
      } catch {
        // A torn write cannot happen (rename is atomic), but a hand-edited file can.
        opts.logger.warn({ path: opts.path }, 'audit outbox: ignoring a damaged report file');
      }
    }
    return o;
  }

  /** A memory-only slot. */
  static inMemory(logger: Logger): AuditOutbox {
    return new AuditOutbox({ logger });
  }

  /** The report not yet acknowledged by the controller, if any. */
  get pending(): AuditReport | undefined {
    return this.slot;
  }

  /** Replaces whatever was pending with `r` (written before the promise resolves). */
  put(r: AuditReport): Promise<void> {
    this.slot = r;
    const text = JSON.stringify(r);
    return this.enqueue(async (path) => {
      const tmp = `${path}.tmp-${process.pid}`;
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(text);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
    });
  }

  /** The controller stored the report taken at `takenAtMs`: clear the slot unless a newer one replaced it. */
  ack(takenAtMs: number): Promise<void> {
    if (this.slot === undefined || Number(this.slot.takenAtMs) !== takenAtMs) return this.chain;
    this.slot = undefined;
    return this.enqueue(async (path) => {
      // A put() queued after this ack already wrote a newer slot: leave the file.
      if (this.slot !== undefined) return;
      await unlink(path).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
    });
  }

  /** Waits for every queued write. */
  flush(): Promise<void> {
    return this.chain;
  }

  private enqueue(write: (path: string) => Promise<void>): Promise<void> {
    const path = this.opts.path;
    if (path === undefined) return this.chain;
    this.chain = this.chain
      .then(() => write(path))
      .catch((err: unknown) => this.opts.logger.error({ err, path }, 'audit outbox: write failed'));
    return this.chain;
  }
}
