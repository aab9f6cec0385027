// One container: the facts policy sees, its live cgroup usage with a chart of its recent
// history, its violations and the actions taken on it, and — for operators and admins only —
// the manual actions, each behind a confirmation naming the container and its host. The chart
// opens with the history the controller keeps (GET …/usage: up to an hour, one point a
// minute), then grows with the latest reading, re-read every few seconds and on every event
// about this container.
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, containerAction, getContainer, getContainerUsage, getScan, listAlerts, listViolations, type Container, type ContainerAction, type Usage } from '../api';
import { hostOf, useAgents } from '../agents';
import { SeverityBadge, StateBadge, Time } from '../components/badges';
import { Sparkline } from '../components/charts';
import { ConfirmDialog, ErrorNote } from '../components/confirm';
import { bytes, containerName, percent } from '../format';
import { useLiveData } from '../live';
import { href } from '../router';
import { can, type ViewProps } from '../routes';

const POLL_MS = 5000;
/** Readings kept on the page (an hour at 5 s), and points on the chart: the server's (60 at most) plus these. */
const HISTORY = 720;

const ACTIONS: { action: ContainerAction; label: string; when: (c: Container) => boolean; danger: boolean; explain: string }[] = [
  { action: 'pause', label: 'Pause', when: (c) => c.state === 'running', danger: false, explain: 'freezes its processes until unpaused' },
  { action: 'unpause', label: 'Unpause', when: (c) => c.state === 'paused', danger: false, explain: 'thaws its processes' },
  { action: 'stop', label: 'Stop', when: (c) => c.state === 'running', danger: true, explain: 'sends SIGTERM, then SIGKILL after 10 s' },
  { action: 'kill', label: 'Kill', when: (c) => c.state === 'running', danger: true, explain: 'sends SIGKILL at once' },
  { action: 'quarantine', label: 'Quarantine', when: (c) => c.state === 'running' || c.state === 'paused', danger: true, explain: 'disconnects it from every network it is attached to' },
  { action: 'release', label: 'Release', when: () => true, danger: false, explain: 'reconnects the networks a quarantine disconnected' },
];

interface Reading {
  takenAt: string;
  cpu: number;
  mem: number;
}

export function ContainerDetail({ session, params }: ViewProps) {
  const agent = params['agent'] ?? '';
  const id = params['id'] ?? '';
  const { byId } = useAgents();
  const c = useLiveData(() => getContainer(agent, id), [agent, id], (e) => e.agentId === agent && (e.containerId === id || e.type === 'container.snapshot'), 150);
  const viol = useLiveData(() => listViolations({ agent, container: id, limit: 50 }), [agent, id], (e) => e.type.startsWith('alert.') && (e.containerId === id || !e.containerId), 400);
  const acts = useLiveData(() => listAlerts({ agent, container: id, type: ['action', 'action_failed'], limit: 50 }), [agent, id], (e) => e.type.startsWith('alert.action'), 400);
  const digest = c.data?.facts.imageDigest ?? '';
  const scan = useLiveData(() => (digest ? getScan(digest) : Promise.resolve(null)), [digest], null);
  const history = useRef<Reading[]>([]);
  // The server's history, read once per container; live readings newer than its last point are appended.
  const server = useLiveData(() => getContainerUsage(agent, id), [agent, id], null);
  const [, bump] = useState(0);
  const [pending, setPending] = useState<ContainerAction | null>(null);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<{ ok: boolean; text: string } | null>(null);

  // Poll for fresh usage (no event carries it).
  useEffect(() => {
    history.current = [];
    // Another container (back/forward, a link): an open confirmation was for the previous one.
    // Kept, it would pop up again asking to act on this one, which nobody chose.
    setPending(null);
    setResult(null);
    const t = setInterval(() => c.reload(), POLL_MS);
    return () => clearInterval(t);
  }, [agent, id]);

  const u: Usage | null | undefined = c.data?.usage;
  if (u) {
    const h = history.current;
    if (!h.length || h[h.length - 1]!.takenAt !== u.takenAt) {
      h.push({ takenAt: u.takenAt, cpu: u.cpuPercent, mem: u.memoryBytes });
      if (h.length > HISTORY) h.splice(0, h.length - HISTORY);
    }
  }

  const ct = c.data;
  const host = hostOf(byId, agent);
  // Only the actions this session's key may perform (a key limited to `containers.pause` sees Pause alone).
  const shown = ct ? ACTIONS.filter((a) => a.when(ct) && can(session, `containers.${a.action}`)) : [];

  const run = async () => {
    if (!pending || !ct) return;
    setBusy(true);
    try {
      const r = await containerAction(agent, ct.id, pending);
      setResult({ ok: true, text: `${r.action} ${containerName(r.containerName)} on ${host}: ${r.detail} (state now ${r.state}).` });
    } catch (err) {
      const e = err as ApiError;
      setResult({ ok: false, text: `${pending} failed: ${e.message}${e.code ? ` (${e.code})` : ''}` });
    } finally {
      setBusy(false);
      setPending(null);
      c.reload();
      acts.reload();
      bump((n) => n + 1);
    }
  };

  if (c.error && !ct) return <ErrorNote error={c.error} />;
  if (!ct) return <p aria-busy="true">Loading…</p>;
  const f = ct.facts;
  const name = containerName(ct.name);
  // The chart: the controller's points (whatever arrived first), then the live readings newer than its last one.
  const kept: Reading[] = server.data && server.data.agentId === agent ? server.data.points.filter((p) => p.cpuPercent !== null && p.memoryBytes !== null).map((p) => ({ takenAt: p.at, cpu: p.cpuPercent!, mem: p.memoryBytes! })) : [];
  const keptUntil = kept.length ? Date.parse(kept[kept.length - 1]!.takenAt) : -Infinity;
  let live = history.current.filter((r) => Date.parse(r.takenAt) > keptUntil);
  if (kept.length > 0 && server.data) {
    // At the controller's spacing (the newest reading of each interval), so the line's x axis stays even.
    const step = server.data.intervalSeconds * 1000;
    const byInterval = new Map<number, Reading>();
    for (const r of live) byInterval.set(Math.floor(Date.parse(r.takenAt) / step), r);
    live = [...byInterval.values()];
  }
  const hist = [...kept, ...live].slice(-HISTORY);

  return (
    <div class="detail">
      <p class="crumbs">
        <a href={href('/containers')}>Containers</a> <span aria-hidden="true">›</span> <a href={href('/containers', { agent })}>{host}</a> <span aria-hidden="true">›</span> {name}
      </p>
      <section class="card wide" aria-labelledby="d-summary">
        <h2 id="d-summary">
          {name} <StateBadge state={ct.state} />
          {ct.removed ? <span class="badge"> removed</span> : null}
        </h2>
        <dl class="facts">
          <dt>Host</dt>
          <dd>
            {host} <span class="muted small mono">{agent}</span>
          </dd>
          <dt>Image</dt>
          <dd class="mono">{ct.imageRef}</dd>
          <dt>Image digest</dt>
          <dd class="mono">{f.imageDigest || <span class="muted">none (not pulled by digest)</span>}</dd>
          <dt>Vulnerability scan</dt>
          <dd data-testid="scan">
            {!f.imageDigest ? (
              <span class="muted">no digest, so no scan can be matched</span>
            ) : scan.data ? (
              <>
                {(['critical', 'high', 'medium', 'low'] as const).map((k) => (
                  <span key={k}>
                    <SeverityBadge severity={k} /> {scan.data!.counts[k]}{' '}
                  </span>
                ))}
                <span class="muted">
                  ({scan.data.fixable} fixable; scanned <Time iso={scan.data.scannedAt} /> by {scan.data.scanner})
                </span>
              </>
            ) : scan.loading ? (
              '…'
            ) : (
              <span class="warn">no scan report uploaded for this digest</span>
            )}
          </dd>
          <dt>Image id</dt>
          <dd class="mono">{f.imageId}</dd>
          <dt>Container id</dt>
          <dd class="mono">{ct.id}</dd>
          <dt>Updated</dt>
          <dd>
            <Time iso={ct.updatedAt} />
          </dd>
        </dl>
        {shown.length ? (
          <div class="actions" role="group" aria-label="Manual actions">
            {shown.map((a) => (
              <button type="button" key={a.action} class={a.danger ? 'danger' : ''} onClick={() => (setResult(null), setPending(a.action))} disabled={ct.removed}>
                {a.label}
              </button>
            ))}
          </div>
        ) : null}
        {result ? (
          <p class={result.ok ? 'ok' : 'error'} role={result.ok ? 'status' : 'alert'} data-testid="action-result">
            <span aria-hidden="true">{result.ok ? '✔ ' : '⚠ '}</span>
            {result.text}
          </p>
        ) : null}
      </section>

      {pending ? (
        <ConfirmDialog
          title={`${ACTIONS.find((a) => a.action === pending)!.label} container ${name} on host ${host}?`}
          confirmLabel={`${ACTIONS.find((a) => a.action === pending)!.label} ${name}`}
          danger={ACTIONS.find((a) => a.action === pending)!.danger}
          busy={busy}
          onConfirm={run}
          onCancel={() => setPending(null)}
        >
          <p>
            This {ACTIONS.find((a) => a.action === pending)!.explain}. Container <strong>{name}</strong> ({ct.id.slice(0, 12)}) on host <strong>{host}</strong>. It is recorded in the audit trail under your key.
          </p>
        </ConfirmDialog>
      ) : null}

      <section class="card wide" aria-labelledby="d-usage">
        <h2 id="d-usage">Live usage</h2>
        {u ? (
          <>
            <div class="sparks">
              <Sparkline label="CPU (% of one core)" values={hist.map((r) => r.cpu)} unit={percent} />
              <Sparkline label="Memory" values={hist.map((r) => r.mem)} max={u.memoryLimitBytes || undefined} unit={bytes} />
            </div>
            <p class="muted small" data-testid="usage-history">
              {server.data && server.data.points.length > 0
                ? `Since ${new Date(server.data.points[0]!.at).toLocaleTimeString()}: ${server.data.points.length} point${server.data.points.length === 1 ? '' : 's'} kept by the controller (one per ${server.data.intervalSeconds} s, up to ${Math.round(server.data.windowSeconds / 60)} min), then the readings seen on this page.`
                : 'The readings seen on this page (the controller has no history of this container yet).'}
            </p>
            <dl class="facts">
              <dt>Memory limit</dt>
              <dd>{u.memoryLimitBytes ? bytes(u.memoryLimitBytes) : 'unlimited'}</dd>
              <dt>CPU of quota</dt>
              <dd>{u.cpuPercentOfQuota === null ? 'no quota' : percent(u.cpuPercentOfQuota)}</dd>
              <dt>Processes</dt>
              <dd>
                {u.pids}
                {u.pidsLimit ? ` of ${u.pidsLimit}` : ' (no limit)'}
              </dd>
              <dt>Writable layer / logs</dt>
              <dd>
                {bytes(u.writableBytes)} / {bytes(u.logBytes)}
              </dd>
              <dt>Network in / out</dt>
              <dd>
                {u.netRxBytesPerSec === null ? '—' : `${bytes(u.netRxBytesPerSec)}/s`} / {u.netTxBytesPerSec === null ? '—' : `${bytes(u.netTxBytesPerSec)}/s`}
              </dd>
              <dt>TCP connections / sockets</dt>
              <dd>
                {u.tcpConnections ?? '—'} / {u.sockets ?? '—'}
              </dd>
              <dt>Read at</dt>
              <dd>
                <Time iso={u.takenAt} /> (re-read every {POLL_MS / 1000} s while this page is open)
              </dd>
            </dl>
          </>
        ) : (
          <p class="muted">No usage reading: the container is not running (paused containers are not sampled), just started, or its agent samples no usage.</p>
        )}
      </section>

      <section class="card wide" aria-labelledby="d-facts">
        <h2 id="d-facts">What policy sees</h2>
        <dl class="facts">
          <dt>User</dt>
          <dd>{f.user || <span class="warn">root (no user set{f['imageUser'] ? `; image user ${String(f['imageUser'])}` : ''})</span>}</dd>
          <dt>Privileged</dt>
          <dd class={f.privileged ? 'warn' : ''}>{f.privileged ? '⚠ yes' : 'no'}</dd>
          <dt>Read-only root filesystem</dt>
          <dd>{f.readOnlyRootfs ? 'yes' : 'no'}</dd>
          <dt>Capabilities added / dropped</dt>
          <dd class="mono">
            {f.capAdd.join(', ') || 'none'} / {f.capDrop.join(', ') || 'none'}
          </dd>
          <dt>Security options</dt>
          <dd class="mono">{f.securityOpt.join(', ') || 'none'}</dd>
          <dt>Namespaces (network, pid, ipc, uts, userns)</dt>
          <dd class="mono">{[f.networkMode, f.pidMode || 'private', f.ipcMode || 'private', f.utsMode || 'private', f.usernsMode || 'default'].join(', ')}</dd>
          <dt>Limits</dt>
          <dd>
            memory {f.memoryLimitBytes ? bytes(f.memoryLimitBytes) : 'unlimited'}, CPUs {f.nanoCpus ? (f.nanoCpus / 1e9).toFixed(2) : 'unlimited'}, pids {f.pidsLimit || 'unlimited'}
          </dd>
          <dt>Networks</dt>
          <dd>{f.networks.length ? f.networks.map((n) => `${n.name}${n.ipAddress ? ` (${n.ipAddress})` : ''}`).join(', ') : 'none'}</dd>
          <dt>Restart policy</dt>
          <dd>{f.restartPolicy || 'no'}</dd>
          <dt>Command</dt>
          <dd class="mono">{f.command.join(' ') || '—'}</dd>
          <dt>Environment (names only)</dt>
          <dd class="mono">{f.envNames.join(', ') || 'none'}</dd>
          <dt>Labels</dt>
          <dd class="mono">
            {Object.entries(f.labels)
              .map(([k, v]) => `${k}=${v}`)
              .join(', ') || 'none'}
          </dd>
        </dl>
        <h3>Mounts</h3>
        {f.mounts.length ? (
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Type</th>
                  <th scope="col">Source</th>
                  <th scope="col">Destination</th>
                  <th scope="col">Mode</th>
                </tr>
              </thead>
              <tbody>
                {f.mounts.map((m) => (
                  <tr key={m.destination}>
                    <td>{m.type}</td>
                    <td class="mono">{m.source}</td>
                    <td class="mono">{m.destination}</td>
                    <td>{m.readOnly ? 'read-only' : 'read-write'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : (
          <p class="muted">No mounts.</p>
        )}
      </section>

      <section class="card wide" aria-labelledby="d-viol">
        <h2 id="d-viol">Violations</h2>
        <ErrorNote error={viol.error} />
        {viol.data?.items.length ? (
          <ul class="plain">
            {viol.data.items.map((v) => (
              <li key={v.id}>
                <SeverityBadge severity={v.severity} /> <code>{v.ruleId}</code> ({v.mode}
                {v.action ? `, ${v.action.type} ${v.action.result}` : ''}
                {v.acknowledged ? ', acknowledged' : ''}) <Time iso={v.at} />
                <div class="small">{v.message}</div>
              </li>
            ))}
          </ul>
        ) : (
          <p class="muted">No violation on record.</p>
        )}
        <p>
          <a href={href('/violations', { agent, container: ct.id })}>Open in Violations</a>
        </p>
      </section>

      <section class="card wide" aria-labelledby="d-acts">
        <h2 id="d-acts">Actions taken</h2>
        <ErrorNote error={acts.error} />
        {acts.data?.items.length ? (
          <ul class="plain">
            {acts.data.items.map((a) => (
              <li key={a.id}>
                <span class={`badge ${a.result === 'failed' ? 'sev-high' : 'sev-info'}`}>
                  <span aria-hidden="true">{a.result === 'failed' ? '✖' : '✔'}</span> {a.action ?? a.type} {a.result ?? ''}
                </span>{' '}
                {a.message} <Time iso={a.lastSeenAt} />
              </li>
            ))}
          </ul>
        ) : (
          <p class="muted">No action on record.</p>
        )}
      </section>
    </div>
  );
}
