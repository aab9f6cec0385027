// Keys and tokens (admin): API keys — create one (its secret is shown once, here, and kept
// nowhere: not in storage, not in the URL, gone from memory when the panel is closed), revoke
// one after a confirmation — and agent join tokens: mint one and get the exact
// `bulkhead-agent enroll` command to copy (the token and the CA fingerprint come from the
// answer; the controller's agent address is the one field the browser cannot know).
import { useState } from 'preact/hooks';
import { createJoinToken, createKey, listJoinTokens, listKeys, revokeJoinToken, revokeKey, type ApiKey, type JoinToken } from '../api';
import { Time } from '../components/badges';
import { ConfirmDialog, ErrorNote } from '../components/confirm';
import { useLiveData } from '../live';
import { can, type ViewProps } from '../routes';

const ROLES = ['viewer', 'operator', 'admin'] as const;

function CopyBox({ label, value, id }: { label: string; value: string; id: string }) {
  const [copied, setCopied] = useState<string | null>(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(value);
      setCopied('Copied to the clipboard.');
    } catch {
      setCopied('Copy failed: select the text and copy it.');
    }
  };
  return (
    <div class="copy-box">
      <label for={id}>{label}</label>
      <textarea id={id} class="mono" readOnly rows={Math.max(1, Math.ceil(value.length / 90))} value={value} onFocus={(e) => (e.currentTarget as HTMLTextAreaElement).select()} />
      <button type="button" onClick={copy}>
        Copy
      </button>
      <span role="status" class="small">
        {copied ?? ''}
      </span>
    </div>
  );
}

export function KeysAndTokens({ session }: ViewProps) {
  // An admin key limited to some actions gets only the forms and buttons it may use.
  return (
    <div>
      <ApiKeys canCreate={can(session, 'keys.create')} canRevoke={can(session, 'keys.revoke')} />
      <JoinTokens canCreate={can(session, 'join-tokens.create')} canRevoke={can(session, 'join-tokens.revoke')} />
    </div>
  );
}

function ApiKeys({ canCreate, canRevoke }: { canCreate: boolean; canRevoke: boolean }) {
  const keys = useLiveData(() => listKeys(), [], null);
  const [secret, setSecret] = useState<{ name: string; key: string } | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [revoking, setRevoking] = useState<ApiKey | null>(null);
  const [busy, setBusy] = useState(false);

  const create = async (e: Event) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const f = new FormData(form);
    const v = (k: string) => String(f.get(k) ?? '').trim();
    const projects = v('projects') ? v('projects').split(',').map((p) => p.trim()).filter(Boolean) : [];
    setError(null);
    setBusy(true);
    try {
      const r = await createKey({ name: v('name'), role: v('role') as (typeof ROLES)[number], projects, ...(v('expiresIn') ? { expiresIn: v('expiresIn') } : {}) });
      setSecret({ name: r.name, key: r.key });
      form.reset();
      keys.reload();
    } catch (err) {
      setError(err as Error);
    } finally {
      setBusy(false);
    }
  };
  const revoke = async () => {
    if (!revoking) return;
    setBusy(true);
    try {
      await revokeKey(revoking.id);
    } catch (err) {
      setError(err as Error);
    } finally {
      setBusy(false);
      setRevoking(null);
      keys.reload();
    }
  };

  return (
    <section class="card" aria-labelledby="k-keys">
      <h2 id="k-keys">API keys</h2>
      <ErrorNote error={keys.error ?? error} />
      {secret ? (
        <div class="notice" data-testid="new-key">
          <p>
            <strong>Key “{secret.name}” created.</strong> This is the only time its secret is shown: store it now (a password manager, a secret store). Bulkhead keeps only its hash.
          </p>
          <CopyBox label="The new API key" value={secret.key} id="k-secret" />
          <button type="button" onClick={() => setSecret(null)}>
            Done, hide it
          </button>
        </div>
      ) : null}
      {canCreate ? (
        <form class="filters" onSubmit={create} aria-label="Create an API key">
          <div>
            <label for="k-name">Name</label>
            <input id="k-name" name="name" required maxLength={100} placeholder="ci-scanner" />
          </div>
          <div>
            <label for="k-role">Role</label>
            <select id="k-role" name="role">
              {ROLES.map((r) => (
                <option key={r} value={r}>
                  {r}
                </option>
              ))}
            </select>
          </div>
          <div>
            <label for="k-projects">Projects (comma-separated; empty = all)</label>
            <input id="k-projects" name="projects" placeholder="payments, search" />
          </div>
          <div>
            <label for="k-expires">Expires in (empty = never)</label>
            <input id="k-expires" name="expiresIn" placeholder="90d" />
          </div>
          <div class="filter-buttons">
            <button type="submit" class="primary" disabled={busy}>
              Create key
            </button>
          </div>
        </form>
      ) : null}
      <div class="table-wrap">
        <table class="keys">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Id</th>
              <th scope="col">Role</th>
              <th scope="col">Projects</th>
              <th scope="col">Status</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
              <th scope="col">Expires</th>
              <th scope="col">Revoke</th>
            </tr>
          </thead>
          <tbody>
            {(keys.data?.items ?? []).map((k) => (
              <tr key={k.id} data-key-id={k.id}>
                <th scope="row">{k.name}</th>
                <td class="mono small">{k.id}</td>
                <td>{k.role}</td>
                <td>{k.projects.length ? k.projects.join(', ') : 'all'}</td>
                <td>
                  <span class={`badge ${k.status === 'active' ? 'ack' : 'open'}`}>
                    <span aria-hidden="true">{k.status === 'active' ? '●' : '✖'}</span> {k.status}
                  </span>
                </td>
                <td>
                  <Time iso={k.createdAt} />
                </td>
                <td>
                  <Time iso={k.lastUsedAt} />
                </td>
                <td>{k.expiresAt ? <Time iso={k.expiresAt} /> : 'never'}</td>
                <td>
                  {k.status === 'active' && canRevoke ? (
                    <button type="button" class="danger" onClick={() => setRevoking(k)} aria-label={`Revoke key ${k.name} (${k.id})`}>
                      Revoke
                    </button>
                  ) : (
                    '—'
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {revoking ? (
        <ConfirmDialog title={`Revoke API key “${revoking.name}” (${revoking.id})?`} confirmLabel="Revoke" danger busy={busy} onConfirm={revoke} onCancel={() => setRevoking(null)}>
          <p>Every request, token and console session of this key stops working at once. This cannot be undone.</p>
        </ConfirmDialog>
      ) : null}
    </section>
  );
}

function JoinTokens({ canCreate, canRevoke }: { canCreate: boolean; canRevoke: boolean }) {
  const tokens = useLiveData(() => listJoinTokens(), [], null);
  const [minted, setMinted] = useState<{ token: string; caFingerprint: string; expiresAt: string } | null>(null);
  const [controller, setController] = useState(`${window.location.hostname}:7443`);
  const [error, setError] = useState<Error | null>(null);
  const [revoking, setRevoking] = useState<JoinToken | null>(null);

  const create = async (e: Event) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const f = new FormData(form);
    const ttl = String(f.get('ttl') ?? '').trim();
    const description = String(f.get('description') ?? '').trim();
    setError(null);
    try {
      const r = await createJoinToken({ ...(ttl ? { ttl } : {}), ...(description ? { description } : {}) });
      setMinted({ token: r.token, caFingerprint: r.caFingerprint, expiresAt: r.expiresAt });
      form.reset();
      tokens.reload();
    } catch (err) {
      setError(err as Error);
    }
  };
  const revoke = async () => {
    if (!revoking) return;
    try {
      await revokeJoinToken(revoking.id);
    } catch (err) {
      setError(err as Error);
    } finally {
      setRevoking(null);
      tokens.reload();
    }
  };
  const command = minted ? `bulkhead-agent enroll --controller ${controller} --token ${minted.token} --ca-fingerprint ${minted.caFingerprint} --state-dir /var/lib/bulkhead-agent` : '';

  return (
    <section class="card" aria-labelledby="k-tokens">
      <h2 id="k-tokens">Agent join tokens</h2>
      <ErrorNote error={tokens.error ?? error} />
      {minted ? (
        <div class="notice" data-testid="join-command">
          <p>
            <strong>One-time join token minted</strong>, valid until <Time iso={minted.expiresAt} />. Run this on the new host (shown once):
          </p>
          <label for="k-controller">The controller's agent address (its --grpc-listen, as the host reaches it)</label>
          <input id="k-controller" value={controller} onInput={(e) => setController((e.currentTarget as HTMLInputElement).value.trim())} />
          <CopyBox label="Enrollment command" value={command} id="k-command" />
          <button type="button" onClick={() => setMinted(null)}>
            Done, hide it
          </button>
        </div>
      ) : null}
      {canCreate ? (
        <form class="filters" onSubmit={create} aria-label="Mint a join token">
          <div>
            <label for="k-ttl">Valid for</label>
            <input id="k-ttl" name="ttl" placeholder="15m" />
          </div>
          <div>
            <label for="k-desc">Description</label>
            <input id="k-desc" name="description" maxLength={1024} placeholder="web-07" />
          </div>
          <div class="filter-buttons">
            <button type="submit" class="primary">
              Mint join token
            </button>
          </div>
        </form>
      ) : null}
      <div class="table-wrap">
        <table class="tokens">
          <thead>
            <tr>
              <th scope="col">Id</th>
              <th scope="col">Description</th>
              <th scope="col">Status</th>
              <th scope="col">Expires</th>
              <th scope="col">Used by</th>
              <th scope="col">Revoke</th>
            </tr>
          </thead>
          <tbody>
            {(tokens.data?.items ?? []).map((j) => (
              <tr key={j.id}>
                <th scope="row" class="mono small">
                  {j.id}
                </th>
                <td>{j.description || '—'}</td>
                <td>{j.status}</td>
                <td>
                  <Time iso={j.expiresAt} />
                </td>
                <td class="mono small">{j.usedByAgent ?? '—'}</td>
                <td>
                  {j.status === 'active' && canRevoke ? (
                    <button type="button" class="danger" onClick={() => setRevoking(j)} aria-label={`Revoke join token ${j.id}`}>
                      Revoke
                    </button>
                  ) : (
                    '—'
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {revoking ? (
        <ConfirmDialog title={`Revoke join token ${revoking.id}?`} confirmLabel="Revoke" danger onConfirm={revoke} onCancel={() => setRevoking(null)}>
          <p>No agent can enroll with it afterwards. Agents it already enrolled are not affected.</p>
        </ConfirmDialog>
      ) : null}
    </section>
  );
}
