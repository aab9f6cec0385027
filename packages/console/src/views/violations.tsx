// Violations: findings the agents reported, newest first, filtered on the server (severity,
// open/acknowledged, host, rule, container, mode) and paged by cursor. Operators and admins
// acknowledge one with a comment (who and when are recorded by the controller) or clear an
// acknowledgement; viewers see no buttons. New violations arrive live.
import { useState } from 'preact/hooks';
import { acknowledgeViolation, listViolations, unacknowledgeViolation, type Violation, type ViolationQuery } from '../api';
import { hostOf, useAgents } from '../agents';
import { SeverityBadge, Time } from '../components/badges';
import { ConfirmDialog, ErrorNote } from '../components/confirm';
import { containerName } from '../format';
import { CursorPager } from '../components/pager';
import { useLiveData } from '../live';
import { href, navigate } from '../router';
import { can, type ViewProps } from '../routes';

const PAGE = 100;
const SEVERITIES = ['critical', 'high', 'medium', 'low'] as const;

export function Violations({ session, query }: ViewProps) {
  const { agents, byId } = useAgents();
  const filter = {
    severity: query.get('severity') ?? '',
    acknowledged: query.get('acknowledged') ?? 'false',
    agent: query.get('agent') ?? '',
    rule: query.get('rule') ?? '',
    container: query.get('container') ?? '',
    mode: query.get('mode') ?? '',
  };
  const key = JSON.stringify(filter);
  const [paging, setPaging] = useState<{ key: string; cursors: string[] }>({ key, cursors: [] });
  const cursors = paging.key === key ? paging.cursors : [];
  const setCursors = (c: string[]) => setPaging({ key, cursors: c });
  const cursor = cursors[cursors.length - 1];
  const q: ViolationQuery = {
    severity: SEVERITIES.find((x) => x === filter.severity),
    acknowledged: filter.acknowledged === 'all' ? undefined : filter.acknowledged === 'true',
    agent: filter.agent || undefined,
    rule: filter.rule || undefined,
    container: filter.container || undefined,
    mode: filter.mode === 'monitor' || filter.mode === 'enforce' ? filter.mode : undefined,
    limit: PAGE,
    cursor,
  };
  const { data, error, loading, reload } = useLiveData(() => listViolations(q), [key, cursor], (e) => e.type === 'alert.violation' || e.type === 'alert.authz_denied', 200);
  const [acking, setAcking] = useState<Violation | null>(null);
  const [comment, setComment] = useState('');
  const [busy, setBusy] = useState(false);
  const [note, setNote] = useState<{ ok: boolean; text: string } | null>(null);
  const canAck = can(session, 'violations.acknowledge');
  const canUnack = can(session, 'violations.unacknowledge');

  const apply = (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget as HTMLFormElement);
    const v = (k: string) => String(f.get(k) ?? '').trim();
    navigate('/violations', { severity: v('severity'), acknowledged: v('acknowledged'), agent: v('agent'), rule: v('rule'), container: v('container'), mode: v('mode') });
  };

  const ack = async () => {
    if (!acking) return;
    setBusy(true);
    try {
      await acknowledgeViolation(acking.id, comment);
      setNote({ ok: true, text: `Acknowledged ${acking.ruleId} on ${containerName(acking.containerName)}.` });
    } catch (err) {
      setNote({ ok: false, text: `Acknowledging failed: ${(err as Error).message}` });
    } finally {
      setBusy(false);
      setAcking(null);
      setComment('');
      reload();
    }
  };
  const unack = async (v: Violation) => {
    try {
      await unacknowledgeViolation(v.id);
      setNote({ ok: true, text: `Cleared the acknowledgement of ${v.ruleId} on ${containerName(v.containerName)}.` });
    } catch (err) {
      setNote({ ok: false, text: `Unacknowledging failed: ${(err as Error).message}` });
    }
    reload();
  };

  return (
    <div>
      <form class="filters" onSubmit={apply} key={key} aria-label="Filter violations">
        <div>
          <label for="v-ack">Status</label>
          <select id="v-ack" name="acknowledged" value={filter.acknowledged}>
            <option value="false">open (not acknowledged)</option>
            <option value="true">acknowledged</option>
            <option value="all">all</option>
          </select>
        </div>
        <div>
          <label for="v-sev">Severity</label>
          <select id="v-sev" name="severity" value={filter.severity}>
            <option value="">any</option>
            {SEVERITIES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </div>
        <div>
          <label for="v-mode">Mode</label>
          <select id="v-mode" name="mode" value={filter.mode}>
            <option value="">any</option>
            <option value="enforce">enforce</option>
            <option value="monitor">monitor</option>
          </select>
        </div>
        <div>
          <label for="v-agent">Host</label>
          <select id="v-agent" name="agent" value={filter.agent}>
            <option value="">all hosts</option>
            {agents.map((a) => (
              <option key={a.id} value={a.id}>
                {a.hostname}
              </option>
            ))}
          </select>
        </div>
        <div>
          <label for="v-rule">Rule id</label>
          <input id="v-rule" name="rule" type="search" value={filter.rule} placeholder="host.privileged" />
        </div>
        <div>
          <label for="v-container">Container</label>
          <input id="v-container" name="container" type="search" value={filter.container} placeholder="name or id" />
        </div>
        <div class="filter-buttons">
          <button type="submit" class="primary">
            Apply
          </button>
          <a class="button" href={href('/violations')}>
            Clear
          </a>
        </div>
      </form>
      <ErrorNote error={error} />
      {note ? (
        <p class={note.ok ? 'ok' : 'error'} role={note.ok ? 'status' : 'alert'}>
          <span aria-hidden="true">{note.ok ? '✔ ' : '⚠ '}</span>
          {note.text}
        </p>
      ) : null}
      <p class="muted small" role="status" aria-live="polite">
        {loading && !data ? 'Loading…' : data ? `Page ${cursors.length + 1}: ${data.items.length} violation${data.items.length === 1 ? '' : 's'}, newest first${data.nextCursor ? '; more on the next page' : ''}.` : ''}
      </p>
      <div class="table-wrap">
        <table class="violations">
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Severity</th>
              <th scope="col">Rule</th>
              <th scope="col">Container</th>
              <th scope="col">Host</th>
              <th scope="col">Mode / action</th>
              <th scope="col">Status</th>
              {canAck || canUnack ? <th scope="col">Acknowledge</th> : null}
            </tr>
          </thead>
          <tbody>
            {(data?.items ?? []).map((v) => (
              <tr key={v.id} data-violation-id={v.id}>
                <td>
                  <Time iso={v.at} />
                </td>
                <td>
                  <SeverityBadge severity={v.severity} />
                </td>
                <th scope="row">
                  <code>{v.ruleId}</code>
                  <div class="small msg">{v.message}</div>
                </th>
                <td>
                  {v.containerId ? <a href={href(`/containers/${encodeURIComponent(v.agentId)}/${encodeURIComponent(v.containerId)}`)}>{containerName(v.containerName)}</a> : containerName(v.containerName) || '—'}
                  <div class="muted small mono">{v.imageRef}</div>
                </td>
                <td>{hostOf(byId, v.agentId)}</td>
                <td>
                  {v.mode}
                  {v.denied ? ', denied' : ''}
                  {v.action ? `, ${v.action.type} ${v.action.result}` : ''}
                </td>
                <td>
                  {v.acknowledged && v.acknowledgement ? (
                    <span>
                      <span class="badge ack">
                        <span aria-hidden="true">✔</span> acknowledged
                      </span>
                      <div class="small">
                        by {v.acknowledgement.byName} <Time iso={v.acknowledgement.at} />
                        {v.acknowledgement.comment ? `: “${v.acknowledgement.comment}”` : ''}
                      </div>
                    </span>
                  ) : (
                    <span class="badge open">
                      <span aria-hidden="true">!</span> open
                    </span>
                  )}
                </td>
                {canAck || canUnack ? (
                  <td>
                    {!(v.acknowledged ? canUnack : canAck) ? (
                      '—'
                    ) : v.acknowledged ? (
                      <button type="button" onClick={() => unack(v)} aria-label={`Unacknowledge ${v.ruleId} on ${containerName(v.containerName)}`}>
                        Unacknowledge
                      </button>
                    ) : (
                      <button type="button" onClick={() => (setNote(null), setAcking(v))} aria-label={`Acknowledge ${v.ruleId} on ${containerName(v.containerName)}`}>
                        Acknowledge
                      </button>
                    )}
                  </td>
                ) : null}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {data && data.items.length === 0 ? <p class="muted">No violation matches.</p> : null}
      <CursorPager cursors={cursors} setCursors={setCursors} nextCursor={data?.nextCursor} />
      {acking ? (
        <ConfirmDialog title={`Acknowledge ${acking.ruleId} on ${containerName(acking.containerName)} (host ${hostOf(byId, acking.agentId)})`} confirmLabel="Acknowledge" busy={busy} onConfirm={ack} onCancel={() => setAcking(null)}>
          <p>{acking.message}</p>
          <label for="ack-comment">Comment (optional, e.g. a ticket)</label>
          <textarea id="ack-comment" maxLength={1024} rows={3} value={comment} onInput={(e) => setComment((e.currentTarget as HTMLTextAreaElement).value)} />
        </ConfirmDialog>
      ) : null}
    </div>
  );
}
