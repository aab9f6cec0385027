// Policy: the policy in force (read-only YAML, highlighted), every version with its comment, a
// diff between any two versions (computed here with the `diff` library: both documents are one
// GET each, and a diff is presentation), and a candidate — pasted or uploaded — dry-run against
// the live fleet (POST /v1/policies:dry-run, operators and admins) with its hits grouped by
// rule, before an admin applies it (PUT /v1/policies, with a comment, after a confirmation).
// Viewers see the policy, the versions and the diff, and no buttons that change anything.
import { useState } from 'preact/hooks';
import { diffLines } from 'diff';
import { ApiError, applyPolicy, dryRunPolicy, getPolicy, listPolicyVersions, type DryRunResult } from '../api';
import { SeverityBadge, Time } from '../components/badges';
import { ConfirmDialog, ErrorNote } from '../components/confirm';
import { YamlView } from '../components/yaml';
import { containerName } from '../format';
import { useLiveData } from '../live';
import { href, navigate } from '../router';
import { can, type ViewProps } from '../routes';

export function PolicyView({ session, query }: ViewProps) {
  const versions = useLiveData(() => listPolicyVersions(), [], null);
  const current = useLiveData(() => getPolicy(), [], null);
  const canDryRun = can(session, 'policies.dry-run');
  const canApply = can(session, 'policies.apply');
  const list = versions.data?.items ?? [];
  const latest = list[0]?.version;
  const from = Number(query.get('from') ?? '') || (latest !== undefined && latest > 1 ? latest - 1 : undefined);
  const to = Number(query.get('to') ?? '') || latest;

  return (
    <div>
      <ErrorNote error={current.error ?? versions.error} />
      <section class="card" aria-labelledby="p-current">
        <h2 id="p-current">In force{current.data ? `: version ${current.data.version}, ${current.data.name}` : ''}</h2>
        {current.data ? (
          <>
            <p class="small muted">
              Applied <Time iso={current.data.createdAt} /> by <code>{current.data.createdBy}</code>
              {current.data.comment ? `: “${current.data.comment}”` : ''}. SHA-256 <code>{current.data.sha256.slice(0, 16)}…</code>
            </p>
            <YamlView text={current.data.yaml} label={`Policy version ${current.data.version} (read-only)`} />
          </>
        ) : (
          <p class="muted">Loading…</p>
        )}
      </section>

      <section class="card" aria-labelledby="p-versions">
        <h2 id="p-versions">Versions</h2>
        <div class="table-wrap">
          <table class="policy-versions">
            <thead>
              <tr>
                <th scope="col">Version</th>
                <th scope="col">Name</th>
                <th scope="col">Applied</th>
                <th scope="col">By</th>
                <th scope="col">Comment</th>
              </tr>
            </thead>
            <tbody>
              {list.map((v) => (
                <tr key={v.version} data-policy-version={v.version}>
                  <th scope="row">
                    {v.version}
                    {v.current ? (
                      <span class="badge ack">
                        {' '}
                        <span aria-hidden="true">✔</span> in force
                      </span>
                    ) : null}
                  </th>
                  <td>{v.name}</td>
                  <td>
                    <Time iso={v.createdAt} />
                  </td>
                  <td>
                    <code>{v.createdBy}</code>
                  </td>
                  <td>{v.comment || <span class="muted">—</span>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        {list.length > 1 && from !== undefined && to !== undefined ? <PolicyDiff from={from} to={to} versions={list.map((v) => v.version)} /> : null}
      </section>

      {canDryRun ? <Candidate canApply={canApply} onApplied={() => (versions.reload(), current.reload())} /> : null}
    </div>
  );
}

function PolicyDiff({ from, to, versions }: { from: number; to: number; versions: number[] }) {
  const pair = useLiveData(() => Promise.all([getPolicy(from), getPolicy(to)]), [from, to], null);
  const change = (e: Event) => {
    const f = new FormData(e.currentTarget as HTMLFormElement);
    navigate('/policy', { from: String(f.get('from') ?? ''), to: String(f.get('to') ?? '') });
  };
  const parts = pair.data ? diffLines(pair.data[0].yaml, pair.data[1].yaml) : [];
  const changed = parts.filter((p) => p.added || p.removed).reduce((n, p) => n + (p.count ?? 0), 0);
  return (
    <div class="policy-diff">
      <h3>Diff between two versions</h3>
      <form class="filters" onSubmit={(e) => (e.preventDefault(), change(e))} aria-label="Versions to compare">
        <div>
          <label for="p-from">From version</label>
          <select id="p-from" name="from" value={String(from)}>
            {versions.map((v) => (
              <option key={v} value={v}>
                {v}
              </option>
            ))}
          </select>
        </div>
        <div>
          <label for="p-to">To version</label>
          <select id="p-to" name="to" value={String(to)}>
            {versions.map((v) => (
              <option key={v} value={v}>
                {v}
              </option>
            ))}
          </select>
        </div>
        <div class="filter-buttons">
          <button type="submit" class="primary">
            Compare
          </button>
        </div>
      </form>
      <ErrorNote error={pair.error} />
      {pair.data ? (
        <>
          <p class="small" role="status">
            Version {from} → {to}: {changed === 0 ? 'no line changed' : `${changed} line${changed === 1 ? '' : 's'} removed or added`}. Lines starting with “−” are only in {from}, “+” only in {to}.
          </p>
          <pre class="diff" tabIndex={0} aria-label={`Diff of policy version ${from} to ${to}`}>
            <code>
              {parts.flatMap((p, i) =>
                p.value
                  .replace(/\n$/, '')
                  .split('\n')
                  .map((line, j) => (
                    <span key={`${i}-${j}`} class={p.added ? 'd-add' : p.removed ? 'd-del' : 'd-same'}>
                      {p.added ? '+ ' : p.removed ? '− ' : '  '}
                      {line}
                      {'\n'}
                    </span>
                  )),
              )}
            </code>
          </pre>
        </>
      ) : null}
    </div>
  );
}

function Candidate({ canApply, onApplied }: { canApply: boolean; onApplied: () => void }) {
  const [text, setText] = useState('');
  const [result, setResult] = useState<DryRunResult | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const [comment, setComment] = useState('');
  const [note, setNote] = useState<string | null>(null);

  const upload = async (e: Event) => {
    const file = (e.currentTarget as HTMLInputElement).files?.[0];
    if (!file) return;
    setText(await file.text());
    setResult(null);
  };
  const run = async () => {
    setBusy(true);
    setError(null);
    setNote(null);
    try {
      setResult(await dryRunPolicy(text));
    } catch (err) {
      setResult(null);
      setError(describe(err));
    } finally {
      setBusy(false);
    }
  };
  const apply = async () => {
    setBusy(true);
    try {
      const p = await applyPolicy(text, comment);
      setNote(`Applied as version ${p.version} (${p.name}); agents receive it now.`);
      setResult(null);
      setText('');
      setComment('');
      onApplied();
    } catch (err) {
      setError(describe(err));
    } finally {
      setBusy(false);
      setConfirming(false);
    }
  };

  return (
    <section class="card" aria-labelledby="p-candidate">
      <h2 id="p-candidate">Try a new policy</h2>
      <p class="small muted">Paste or upload a policy (YAML or JSON). The dry run evaluates it against every container the agents reported and changes nothing.</p>
      <label for="p-file">Upload a policy file</label>
      <input id="p-file" type="file" accept=".yaml,.yml,.json,application/yaml,application/json,text/plain" onChange={upload} />
      <label for="p-text">Policy document</label>
      <textarea id="p-text" class="mono" rows={14} spellcheck={false} value={text} onInput={(e) => (setText((e.currentTarget as HTMLTextAreaElement).value), setResult(null))} />
      <div class="buttons">
        <button type="button" class="primary" disabled={busy || text.trim() === ''} onClick={run} data-testid="dry-run">
          {busy && !confirming ? 'Evaluating…' : 'Dry run against the fleet'}
        </button>
        {canApply && result ? (
          <button type="button" class="danger" disabled={busy} onClick={() => setConfirming(true)} data-testid="apply">
            Apply this policy…
          </button>
        ) : null}
      </div>
      <ErrorNote error={error} />
      {note ? (
        <p class="ok" role="status" data-testid="applied">
          <span aria-hidden="true">✔ </span>
          {note}
        </p>
      ) : null}
      {result ? <DryRun result={result} /> : null}
      {confirming && result ? (
        <ConfirmDialog title={`Apply policy “${result.policyName}” to the whole fleet?`} confirmLabel="Apply" danger busy={busy} onConfirm={apply} onCancel={() => setConfirming(false)}>
          <p>
            It becomes the next version and is pushed to every agent at once. The dry run found {result.totals.findings} finding{result.totals.findings === 1 ? '' : 's'} on {result.totals.containersHit} container{result.totals.containersHit === 1 ? '' : 's'};{' '}
            {result.totals.enforce} would be acted on (enforce rules).
          </p>
          <label for="p-comment">Comment (why; kept with the version)</label>
          <input id="p-comment" type="text" maxLength={1024} value={comment} onInput={(e) => setComment((e.currentTarget as HTMLInputElement).value)} />
        </ConfirmDialog>
      ) : null}
    </section>
  );
}

function describe(err: unknown): Error {
  if (err instanceof ApiError && err.policyErrors.length > 0) {
    return new Error(`${err.message}: ${err.policyErrors.map((p) => `${p.path ? `${p.path}: ` : ''}${p.message}`).join('; ')}`);
  }
  return err as Error;
}

function DryRun({ result }: { result: DryRunResult }) {
  const t = result.totals;
  return (
    <div class="dry-run" data-testid="dry-run-result">
      <h3>
        Dry run of “{result.policyName}” <Time iso={result.evaluatedAt} />
      </h3>
      <p role="status">
        {t.containers} container{t.containers === 1 ? '' : 's'} on {t.agents} host{t.agents === 1 ? '' : 's'} evaluated: {t.findings} finding{t.findings === 1 ? '' : 's'} on {t.containersHit} container
        {t.containersHit === 1 ? '' : 's'} ({t.enforce} enforce, {t.monitor} monitor), {t.exempted} exempted, {t.undecided} undecided; {t.rulesHit} of {t.rules} rules hit.
      </p>
      {result.rules.map((r) => (
        <details key={r.ruleId} open={r.hits.length > 0 && r.hits.length <= 20} data-rule-id={r.ruleId}>
          <summary>
            <code>{r.ruleId}</code> <SeverityBadge severity={r.severity} /> {r.mode}, {r.action.type}: <strong>{r.hits.length}</strong> container{r.hits.length === 1 ? '' : 's'}
            {r.undecided.length ? `, ${r.undecided.length} undecided` : ''}
          </summary>
          <p class="small muted">{r.description}</p>
          {r.hits.length > 0 ? (
            <div class="table-wrap">
              <table>
                <caption class="small">Containers {r.ruleId} would hit</caption>
                <thead>
                  <tr>
                    <th scope="col">Container</th>
                    <th scope="col">Host</th>
                    <th scope="col">Image</th>
                    <th scope="col">Why</th>
                    <th scope="col">Exempted</th>
                  </tr>
                </thead>
                <tbody>
                  {r.hits.map((h) => (
                    <tr key={`${h.agentId}/${h.containerId}`}>
                      <th scope="row">
                        <a href={href(`/containers/${encodeURIComponent(h.agentId)}/${encodeURIComponent(h.containerId)}`)}>{containerName(h.containerName)}</a>
                      </th>
                      <td>{h.hostname}</td>
                      <td class="mono small">{h.imageRef}</td>
                      <td class="small">{h.message}</td>
                      <td>{h.exemptedBy ? `yes: ${h.exemptedBy.who} (${h.exemptedBy.why})` : 'no'}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ) : null}
        </details>
      ))}
    </div>
  );
}
