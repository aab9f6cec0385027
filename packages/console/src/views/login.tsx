// The login page: an API key is exchanged for a session (POST /v1/session) and then dropped.
// The field is a password input with autocomplete off; the form posts (never GETs), so even
// without script the key could not end up in a URL; after the call the field is cleared.
import { useRef, useState } from 'preact/hooks';
import { ApiError, login, type Session } from '../api';
import { Logo } from '../components/logo';

export function Login({ onLogin, notice }: { onLogin: (s: Session) => void; notice?: string | undefined }) {
  const keyRef = useRef<HTMLInputElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    const input = keyRef.current;
    if (!input) return;
    const key = input.value.trim();
    if (!key) {
      setError('Enter an API key.');
      input.focus();
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const s = await login(key);
      input.value = '';
      onLogin(s);
    } catch (err) {
      input.value = '';
      const ae = err instanceof ApiError ? err : null;
      setError(
        ae?.status === 401
          ? 'That key was not accepted (unknown, revoked or expired).'
          : ae?.status === 429
            ? 'Too many failed attempts: wait a minute and try again.'
            : ae?.status === 403
              ? `Refused: ${ae.detail}`
              : `Login failed: ${(err as Error).message}`,
      );
      setBusy(false);
      input.focus();
    }
  };
  return (
    <main id="main" class="login">
      <form method="post" action="#" onSubmit={submit} class="card login-card" aria-describedby="login-help">
        <h1>
          <Logo />{' '}
          Bulkhead console
        </h1>
        {notice ? (
          <p class="notice" role="status">
            {notice}
          </p>
        ) : null}
        <label for="api-key">API key</label>
        <input id="api-key" name="api-key" type="password" autocomplete="off" spellcheck={false} required ref={keyRef} aria-invalid={error ? 'true' : 'false'} aria-describedby={error ? 'login-error' : undefined} />
        <p id="login-help" class="help">
          The key is exchanged for a session that ends after 15 minutes idle or 8 hours; the browser never stores it.
        </p>
        {error ? (
          <p id="login-error" class="error" role="alert">
            <span aria-hidden="true">⚠ </span>
            {error}
          </p>
        ) : null}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
      </form>
    </main>
  );
}
