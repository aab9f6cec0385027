// Audit trail (admin): who did what — every mutating call and every refused credential, from
// the hash-chained audit log (GET /v1/audit-log), newest first, filtered on the server — with
// the chain's verification status (GET /v1/audit-log/verify) shown above it in words, not
// colour alone.
import { useState } from 'preact/hooks';
import { listAuditLog, verifyAuditLog, type AuditQuery } from '../api';
import { Time } from '../components/badges';
import { ErrorNote } from '../components/confirm';
import { useLiveData } from '../live';
import { href, navigate } from '../router';
import type { ViewProps } from '../routes';

const PAGE = 100;

export function AuditTrail({ query }: ViewProps) {
  const filter = { actor: query.get('actor') ?? '', action: query.get('action') ?? '', status: query.get('status') ?? '', since: query.get('since') ?? '' };
  const key = JSON.stringify(filter);
  const [offsets, setOffsets] = useState<{ key: string; offset: number }>({ key, offset: 0 });
  const offset = offsets.key === key ? offsets.offset : 0;
  const q: AuditQuery = {
    actor: filter.actor || undefined,
    action: filter.action || undefined,
    status: filter.status ? Number(filter.status) : undefined,
    since: filter.since || undefined,
    limit: PAGE,
    offset,
  };
  const page = useLiveData(() => listAuditLog(q), [key, offset], null);
  const verify = useLiveData(() => verifyAuditLog(), [], null);
  const apply = (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget as HTMLFormElement);
    const v = (k: string) => String(f.get(k) ?? '').trim();
    navigate('/audit', { actor: v('actor'), action: v('action'), status: v('status'), since: v('since') });
  };
  const entries = page.data?.items ?? [];
  const nextOffset = (page.data as { nextOffset?: number | null } | undefined)?.nextOffset ?? null;
  return (
    <div>
      <section class="card" aria-labelledby="a-chain">
        <h2 id="a-chain">Chain verification</h2>
        <ErrorNote error={verify.error} />
        {verify.data ? (
          verify.data.ok ? (
            <p class="ok" data-testid="chain-status">
              <span aria-hidden="true">✔ </span>Verified: all {verify.data.checked} entries chain correctly
              {verify.data.head ? (
                <>
                  {' '}
                  (head #{verify.data.head.seq}, <code>{verify.data.head.hash.slice(0, 16)}…</code>; keep it elsewhere to detect truncation)
                </>
              ) : null}
              .
            </p>
          ) : (
            <p class="error" role="alert" data-testid="chain-status">
              <span aria-hidden="true">✖ </span>NOT verified: entry #{verify.data.firstBadSeq} does not chain ({verify.data.reason}); {verify.data.checked} entries checked.
            </p>
          )
        ) : (
          <p class="muted">Verifying…</p>
        )}
        <button type="button" onClick={verify.reload}>
          Verify again
        </button>
      </section>
      <form class="filters" onSubmit={apply} key={key} aria-label="Filter the audit trail">
        <div>
          <label for="a-actor">Key id</label>
          <input id="a-actor" name="actor" type="search" value={filter.actor} placeholder="ak_…" />
        </div>
        <div>
          <label for="a-action">Action</label>
          <input id="a-action" name="action" type="search" value={filter.action} placeholder="keys.create" />
        </div>
        <div>
          <label for="a-status">HTTP status</label>
          <input id="a-status" name="status" type="number" min={100} max={599} value={filter.status} />
        </div>
        <div>
          <label for="a-since">Since</label>
          <input id="a-since" name="since" type="search" value={filter.since} placeholder="24h" />
        </div>
        <div class="filter-buttons">
          <button type="submit" class="primary">
            Apply
          </button>
          <a class="button" href={href('/audit')}>
            Clear
          </a>
        </div>
      </form>
      <ErrorNote error={page.error} />
      <div class="table-wrap">
        <table class="audit">
          <thead>
            <tr>
              <th scope="col">#</th>
              <th scope="col">When</th>
              <th scope="col">Who</th>
              <th scope="col">What</th>
              <th scope="col">Target</th>
              <th scope="col">Result</th>
              <th scope="col">From</th>
            </tr>
          </thead>
          <tbody>
            {entries.map((e) => (
              <tr key={e.seq}>
                <th scope="row">{e.seq}</th>
                <td>
                  <Time iso={e.at} />
                </td>
                <td>
                  {e.actorName || (e.actorKind === 'anonymous' ? 'anonymous' : '—')}
                  <div class="small mono">{e.actorId}</div>
                </td>
                <td>
                  <code>{e.action}</code>
                  <div class="small mono">
                    {e.method} {e.path}
                  </div>
                </td>
                <td class="small mono">
                  {Object.entries(e.target ?? {})
                    .map(([k, v]) => `${k}=${v}`)
                    .join(' ')}
                </td>
                <td>
                  <span class={`badge ${e.status < 400 ? 'ack' : 'open'}`}>
                    <span aria-hidden="true">{e.status < 400 ? '✔' : '✖'}</span> {e.status}
                    {e.code ? ` ${e.code}` : ''}
                  </span>
                </td>
                <td class="mono small">{e.clientIp}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {page.data && entries.length === 0 ? <p class="muted">No entry matches.</p> : null}
      <nav class="pager" aria-label="Pages">
        <button type="button" disabled={offset === 0} onClick={() => setOffsets({ key, offset: Math.max(0, offset - PAGE) })}>
          <span aria-hidden="true">← </span>Newer
        </button>
        <span>Entries {offset + 1}–{offset + entries.length}</span>
        <button type="button" disabled={nextOffset === null} onClick={() => nextOffset !== null && setOffsets({ key, offset: nextOffset })}>
          Older<span aria-hidden="true"> →</span>
        </button>
      </nav>
    </div>
  );
}
