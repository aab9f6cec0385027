// Owns writing the audit trail: one queue, one writer. Appends happen strictly
// one after another in the order calls were recorded, so two concurrent
// requests can never both read the same "last row" and fork the chain.
// Recording never throws into the request path: a failed write is logged
// at error level (and the chain simply continues from the last stored row).
import type { Logger } from '@bulkhead/shared';
import type { AuditEntry, AuditStore } from './audit-store';
import { verifyAuditChain, type AuditVerifyResult } from './audit-chain';

export class AuditLog {
  private tail: Promise<void> = Promise.resolve();
  private failures = 0;

  constructor(
    readonly store: AuditStore,
    private readonly logger: Logger,
  ) {}

  /** Queues one entry; resolves once it is stored (or its failure logged). */
  record(e: AuditEntry): Promise<void> {
    const p = this.tail.then(
      () => this.store.append(e).then(() => undefined),
      () => undefined,
    ).catch((err: unknown) => {
      this.failures++;
      this.logger.error({ err, action: e.action, method: e.method, path: e.path, status: e.status }, 'audit write failed; this call is missing from the audit trail');
    });
    this.tail = p;
    return p;
  }

  /** Resolves when everything recorded so far is written. */
  flush(): Promise<void> {
    return this.tail;
  }

  /** Writes that failed since start (each was logged). */
  get failedWrites(): number {
    return this.failures;
  }

  /** Checks the whole chain after the queued writes land. */
  async verify(): Promise<AuditVerifyResult> {
    await this.flush();
    return verifyAuditChain(this.store);
  }
}
