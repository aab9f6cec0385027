// Owns telling the controller which image signature verdicts this agent decided, so
// the controller's policy dry-run (which has no registry access and none of the
// hosts' key files) can use them instead of guessing. Every `intervalMs` the
// verdicts decided since the last report go out in one bounded message; a new
// stream re-sends them all (a controller whose store lost them has them again). Keys are
// sent as sha256 of the verdict key: the key holds the rule's PEM keys, the hash
// is what the controller computes from a candidate policy to look one up.
import { createHash } from 'node:crypto';
import type { Logger, SignatureVerdict } from '@bulkhead/shared';
import type { SignatureGate } from './signature-gate';

export interface VerdictReporterOptions {
  gate: Pick<SignatureGate, 'takeReport' | 'unreport' | 'resync'>;
  /** Sends one message; false when not connected (the verdicts are kept for the next try). */
  send: (r: { verdicts: Array<{ keySha256: string; verdictJson: string }> }) => boolean;
  /** Subscribes to "a new stream is up". */
  onConnected: (l: () => void) => void;
  logger: Logger;
  /** Default 5 s. */
  intervalMs?: number;
  /** Verdicts per message. Default 256 (each well under 4 KiB of JSON). */
  maxPerMessage?: number;
}

export class VerdictReporter {
  private timer: NodeJS.Timeout | undefined;
  private readonly max: number;

  private constructor(private readonly o: VerdictReporterOptions) {
    this.max = o.maxPerMessage ?? 256;
  }

  static start(o: VerdictReporterOptions): VerdictReporter {
    const r = new VerdictReporter(o);
    o.onConnected(() => o.gate.resync());
    r.timer = setInterval(() => r.flush(), o.intervalMs ?? 5000);
    r.timer.unref();
    return r;
  }

  /** Sends what is pending (one message at most per call: bounded work per tick). */
  flush(): void {
    const taken = this.o.gate.takeReport(this.max);
    if (taken.length === 0) return;
    const verdicts = taken.map(([key, v]) => ({ keySha256: verdictKeySha256(key), verdictJson: JSON.stringify(toWire(v)) }));
    let sent = false;
    try {
      sent = this.o.send({ verdicts });
    } catch (err) {
      this.o.logger.warn({ err }, 'sending signature verdicts failed');
    }
    if (!sent) this.o.gate.unreport(taken.map(([k]) => k));
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** What the controller matches a candidate rule's verdict by (sha256 hex of signatureVerdictKey()). */
export function verdictKeySha256(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** The verdict without the reaction door's deferral flag (meaningless elsewhere); messages bounded. */
function toWire(v: SignatureVerdict): SignatureVerdict {
  return { status: v.status, repoDigest: v.repoDigest, signers: v.signers.slice(0, 32), message: v.message.slice(0, 2048), checkedAt: v.checkedAt };
}
