// Alerts and webhooks: the alerts of the last day, the webhook endpoints with their delivery
// counts, one endpoint's delivery log (filtered by status), and for operators and admins:
// send a test alert to an endpoint, redeliver a dead-lettered delivery. Viewers see the same
// lists without the buttons.
import { useState } from 'preact/hooks';
import { listAlerts, listDeliveries, listWebhooks, redeliver, testWebhook, type Delivery, type Webhook } from '../api';
import { SeverityBadge, Time } from '../components/badges';
import { ErrorNote } from '../components/confirm';
import { useLiveData } from '../live';
import { navigate } from '../router';
import { can, type ViewProps } from '../routes';

const STATUS_ICON: Record<string, string> = { pending: '…', delivered: '✔', dead: '✖' };

export function Webhooks({ session, query }: ViewProps) {
  const canTest = can(session, 'webhooks.test');
  const canRedeliver = can(session, 'deliveries.redeliver');
  const hooks = useLiveData(() => listWebhooks(), [], (e) => e.type.startsWith('alert.'), 1000);
  const alerts = useLiveData(() => listAlerts({ since: '24h', limit: 20 }), [], (e) => e.type.startsWith('alert.'), 500);
  const selected = query.get('webhook') ?? hooks.data?.items[0]?.id;
  const [note, setNote] = useState<{ ok: boolean; text: string } | null>(null);
  const [sent, setSent] = useState(0);
  const send = async (w: Webhook) => {
    setNote(null);
    try {
      const d = await testWebhook(w.id);
      setNote({ ok: true, text: `Test alert queued for ${w.name} (delivery ${d.id}).` });
    } catch (err) {
      setNote({ ok: false, text: `Test to ${w.name} failed: ${(err as Error).message}` });
    }
    hooks.reload();
    setSent((n) => n + 1); // the delivery log shows the new delivery at once
  };
  return (
    <div>
      <section class="card" aria-labelledby="w-alerts">
        <h2 id="w-alerts">Alerts, last 24 h</h2>
        <ErrorNote error={alerts.error} />
        {alerts.data && alerts.data.items.length === 0 ? <p class="muted">No alert in the last 24 hours.</p> : null}
        <ul class="plain">
          {(alerts.data?.items ?? []).map((a) => (
            <li key={a.id}>
              <SeverityBadge severity={a.severity} /> <code>{a.type}</code> {a.message}
              {a.count > 1 ? ` (×${a.count})` : ''} <Time iso={a.lastSeenAt} />
            </li>
          ))}
        </ul>
      </section>
      <section class="card" aria-labelledby="w-endpoints">
        <h2 id="w-endpoints">Webhook endpoints</h2>
        <ErrorNote error={hooks.error} />
        {note ? (
          <p class={note.ok ? 'ok' : 'error'} role={note.ok ? 'status' : 'alert'}>
            <span aria-hidden="true">{note.ok ? '✔ ' : '⚠ '}</span>
            {note.text}
          </p>
        ) : null}
        {hooks.data && hooks.data.items.length === 0 ? <p class="muted">No webhook endpoint is configured (POST /v1/webhooks, or `bulkhead webhook add`).</p> : null}
        <div class="table-wrap">
          <table class="webhooks">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">URL</th>
                <th scope="col">State</th>
                <th scope="col">Min severity</th>
                <th scope="col">Pending / delivered / dead</th>
                <th scope="col">Delivery log</th>
                {canTest ? <th scope="col">Test</th> : null}
              </tr>
            </thead>
            <tbody>
              {(hooks.data?.items ?? []).map((w) => (
                <tr key={w.id} data-webhook-id={w.id}>
                  <th scope="row">{w.name}</th>
                  <td class="mono small">{w.url}</td>
                  <td>
                    <span class={`badge ${w.enabled ? 'ack' : 'open'}`}>
                      <span aria-hidden="true">{w.enabled ? '●' : '○'}</span> {w.enabled ? 'enabled' : 'disabled'}
                    </span>
                    {w.disabledReason ? <div class="small">{w.disabledReason}</div> : null}
                  </td>
                  <td>{w.minSeverity}</td>
                  <td>
                    {w.stats.pending} / {w.stats.delivered} / {w.stats.dead}
                  </td>
                  <td>
                    <button type="button" aria-pressed={selected === w.id} onClick={() => navigate('/webhooks', { webhook: w.id })}>
                      Show log<span class="sr-only"> of {w.name}</span>
                    </button>
                  </td>
                  {canTest ? (
                    <td>
                      <button type="button" disabled={!w.enabled} onClick={() => send(w)} aria-label={`Send test alert to ${w.name}`}>
                        Send test
                      </button>
                    </td>
                  ) : null}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
      {selected ? <DeliveryLog webhookId={selected} name={hooks.data?.items.find((w) => w.id === selected)?.name ?? selected} canAct={canRedeliver} status={query.get('status') ?? ''} refresh={sent} /> : null}
    </div>
  );
}

function DeliveryLog({ webhookId, name, canAct, status, refresh }: { webhookId: string; name: string; canAct: boolean; status: string; refresh: number }) {
  const st = status === 'pending' || status === 'delivered' || status === 'dead' ? status : undefined;
  const log = useLiveData(() => listDeliveries(webhookId, { limit: 50, ...(st ? { status: st } : {}) }), [webhookId, status, refresh], (e) => e.type.startsWith('alert.'), 1000);
  const [note, setNote] = useState<{ ok: boolean; text: string } | null>(null);
  const again = async (d: Delivery) => {
    try {
      await redeliver(d.id);
      setNote({ ok: true, text: `Delivery ${d.id} queued again.` });
    } catch (err) {
      setNote({ ok: false, text: `Redelivery failed: ${(err as Error).message}` });
    }
    log.reload();
  };
  return (
    <section class="card" aria-labelledby="w-log">
      <h2 id="w-log">Delivery log of {name}</h2>
      <form class="filters" aria-label="Filter deliveries" onSubmit={(e) => e.preventDefault()}>
        <div>
          <label for="w-status">Status</label>
          <select id="w-status" value={status} onChange={(e) => navigate('/webhooks', { webhook: webhookId, status: (e.currentTarget as HTMLSelectElement).value })}>
            <option value="">all</option>
            <option value="pending">pending</option>
            <option value="delivered">delivered</option>
            <option value="dead">dead (dead-lettered)</option>
          </select>
        </div>
      </form>
      <ErrorNote error={log.error} />
      {note ? (
        <p class={note.ok ? 'ok' : 'error'} role={note.ok ? 'status' : 'alert'}>
          <span aria-hidden="true">{note.ok ? '✔ ' : '⚠ '}</span>
          {note.text}
        </p>
      ) : null}
      <div class="table-wrap">
        <table class="deliveries">
          <thead>
            <tr>
              <th scope="col">Delivery</th>
              <th scope="col">Alert</th>
              <th scope="col">Status</th>
              <th scope="col">Attempts</th>
              <th scope="col">Last result</th>
              <th scope="col">Queued</th>
              {canAct ? <th scope="col">Redeliver</th> : null}
            </tr>
          </thead>
          <tbody>
            {(log.data?.items ?? []).map((d) => (
              <tr key={d.id} data-delivery-id={d.id}>
                <th scope="row" class="mono small">
                  {d.id}
                </th>
                <td>{d.alertType ?? '—'}</td>
                <td>
                  <span class={`badge delivery-${d.status}`}>
                    <span aria-hidden="true">{STATUS_ICON[d.status] ?? '•'}</span> {d.status}
                  </span>
                  {d.deadReason ? <div class="small">{d.deadReason}</div> : null}
                </td>
                <td>{d.attempts}</td>
                <td class="small">{d.lastStatusCode !== null ? `HTTP ${d.lastStatusCode}` : ''} {d.lastError ?? ''}</td>
                <td>
                  <Time iso={d.createdAt} />
                </td>
                {canAct ? (
                  <td>
                    {d.status === 'dead' ? (
                      <button type="button" onClick={() => again(d)} aria-label={`Redeliver ${d.id}`}>
                        Redeliver
                      </button>
                    ) : (
                      '—'
                    )}
                  </td>
                ) : null}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {log.data && log.data.items.length === 0 ? <p class="muted">No delivery{st ? ` is ${st}` : ''}.</p> : null}
    </section>
  );
}
