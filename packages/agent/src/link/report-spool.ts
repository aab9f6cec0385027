// Owns the agent's offline spool: every violation report is appended to a
// file in the state directory before it is sent, and dropped only once the
// controller acknowledged the message that carried it. Reports made while the
// controller is unreachable, or in flight when the agent crashes, are sent
// again on the next connection (the controller deduplicates by report id).
//
// Format: JSON lines, "+" records add a report, "-" records acknowledge one.
// The file is rewritten with only the pending reports when it grows, so it
// never holds more than a bounded number of lines.
//
// A full disk: an append that fails may leave a torn line at the end of the
// file, and the next append would be glued to it — both lines unreadable, a
// report that WAS written lost at the next start. So after a failed write
// the next write rewrites the whole file (atomically) instead of appending;
// until one succeeds the pending reports are kept in memory and still sent.
import { appendFile, mkdir, open } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { writeFileAtomic, type Logger, type ViolationReport } from '@bulkhead/shared';

export interface ReportSpoolOptions {
  path: string;
  logger: Logger;
  /** Pending reports kept at most; beyond it the oldest are dropped (and counted). Default 50,000. */
  maxPending?: number;
  /** Rewrite the file once it holds this many more lines than pending reports. Default 5,000. */
  compactAfter?: number;
}

export class ReportSpool {
  private readonly pending = new Map<string, ViolationReport>();
  private lines = 0;
  private dropped = 0;
  /** The last write failed: the file may end in a torn line, so rewrite it instead of appending. */
  private damaged = false;
  private chain: Promise<void> = Promise.resolve();
  private readonly maxPending: number;
  private readonly compactAfter: number;

  private constructor(private readonly opts: ReportSpoolOptions) {
    this.maxPending = opts.maxPending ?? 50_000;
    this.compactAfter = opts.compactAfter ?? 5_000;
  }

  /** Opens the spool, recovering whatever a previous run left pending. */
  static async open(opts: ReportSpoolOptions): Promise<ReportSpool> {
    const s = new ReportSpool(opts);
    await mkdir(dirname(opts.path), { recursive: true, mode: 0o700 });
    if (existsSync(opts.path)) {
      const text = readFileSync(opts.path, 'utf8');
      let damaged = 0;
      for (const line of text.split('\n')) {
        if (!line) continue;
        s.lines += 1;
        try {
          if (line[0] === '+') {
            const r = JSON.parse(line.slice(1)) as ViolationReport;
            if (r.id) s.pending.set(r.id, r);
          } else if (line[0] === '-') {
            s.pending.delete(line.slice(1));
          } else {
            damaged += 1; // not a record this spool writes: overwritten or foreign bytes
          }
        } catch {
          // A torn last line from a crash mid-append: everything before it is intact.
          damaged += 1;
        }
      }
      // Once, with a count: a file overwritten with garbage may hold thousands of such lines.
      if (damaged > 0) opts.logger.warn({ path: opts.path, damagedLines: damaged, pending: s.pending.size }, 'spool: ignoring damaged lines; the intact reports are kept');
      if (s.pending.size > 0) opts.logger.info({ pending: s.pending.size }, 'spool: recovered unsent violation reports');
      try {
        await s.compact();
      } catch (err) {
        // The file as read is intact; a full disk must not stop the agent from starting.
        s.damaged = true;
        opts.logger.error({ err, path: opts.path }, 'spool: could not rewrite the spool file; will retry at the next report');
      }
    } else {
      const fh = await open(opts.path, 'a', 0o600);
      await fh.close();
    }
    return s;
  }

  /** Reports not yet acknowledged, oldest first. */
  list(): ViolationReport[] {
    return [...this.pending.values()];
  }

  get size(): number {
    return this.pending.size;
  }

  /** Reports dropped because the spool was full (oldest first). */
  get droppedCount(): number {
    return this.dropped;
  }

  add(r: ViolationReport): Promise<void> {
    if (!r.id) throw new Error('spool: report without id');
    while (this.pending.size >= this.maxPending) {
      const oldest = this.pending.keys().next().value as string;
      this.pending.delete(oldest);
      this.dropped += 1;
    }
    this.pending.set(r.id, r);
    return this.write('+' + JSON.stringify(r) + '\n');
  }

  ack(id: string): Promise<void> {
    if (!this.pending.delete(id)) return this.chain;
    return this.write('-' + id + '\n');
  }

  /** Waits for every queued write. */
  flush(): Promise<void> {
    return this.chain;
  }

  private write(line: string): Promise<void> {
    this.chain = this.chain
      .then(async () => {
        if (this.damaged) {
          await this.compact(); // carries this line's effect: pending is already up to date
          this.damaged = false;
          this.opts.logger.info({ path: this.opts.path, pending: this.pending.size }, 'spool: writable again; rewrote the spool file');
          return;
        }
        try {
          await appendFile(this.opts.path, line, { mode: 0o600 });
        } catch (err) {
          this.damaged = true;
          throw err;
        }
        this.lines += 1;
        if (this.lines - this.pending.size > this.compactAfter) await this.compact();
      })
      .catch((err: unknown) => this.opts.logger.error(
        { err, path: this.opts.path, pending: this.pending.size },
        'spool: write failed; unsent reports are kept in memory and still sent, but would not survive a restart until a write succeeds',
      ));
    return this.chain;
  }

  private async compact(): Promise<void> {
    const body = [...this.pending.values()].map((r) => '+' + JSON.stringify(r) + '\n').join('');
    writeFileAtomic(this.opts.path, body, 0o600);
    this.lines = this.pending.size;
  }
}
