// The shell: login or the logged-in frame (header with session info and logout, navigation,
// the live-stream indicator, the current view from routes.ts). It owns the session object and
// the one event stream's lifetime.
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, currentSession, logout, setUnauthenticatedHandler, type Session } from './api';
import { startLive, stopLive, useStreamState } from './live';
import { allows, routes, type RouteDef } from './routes';
import { matchPath, useLocation } from './router';
import { Login } from './views/login';
import { Logo } from './components/logo';

export function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [notice, setNotice] = useState<string | undefined>(undefined);
  const [logoutError, setLogoutError] = useState<string | undefined>(undefined);
  // While this page logs itself out, the server ending the session also ends the event stream
  // (and may answer a read in flight with 401) before the DELETE's own answer arrives: those
  // are this logout, not a session that ended elsewhere, and must not replace its message.
  const loggingOut = useRef(false);

  useEffect(() => {
    setUnauthenticatedHandler(() => {
      if (loggingOut.current) return;
      stopLive();
      setNotice('Your session ended (logged out, idle timeout, or the key was revoked). Log in again.');
      setSession(null);
    });
    currentSession().then(setSession, () => setSession(null));
  }, []);

  useEffect(() => {
    if (!session) return undefined;
    startLive(() => {
      if (loggingOut.current) return;
      stopLive();
      setNotice('Your session ended (logged out, idle timeout, or the key was revoked). Log in again.');
      setSession(null);
    });
    return () => stopLive();
  }, [session?.sessionId]);

  if (session === undefined)
    return (
      <main id="main" class="loading" aria-busy="true">
        <p>Loading…</p>
      </main>
    );
  if (session === null)
    return (
      <Login
        notice={notice}
        onLogin={(s) => {
          loggingOut.current = false;
          setNotice(undefined);
          setSession(s);
        }}
      />
    );
  return (
    <Shell
      session={session}
      logoutError={logoutError}
      onIdle={async () => {
        loggingOut.current = true;
        stopLive();
        // Best effort: were the DELETE lost, the session still ends server-side after the same
        // idle time, as this page has stopped asking for anything.
        await logout().catch(() => undefined);
        const idle = session.idleTimeoutSeconds;
        setNotice(`You were logged out after ${idle < 120 ? `${idle} s` : `${Math.round(idle / 60)} min`} without activity. Log in again.`);
        setSession(null);
      }}
      onLogout={async () => {
        setLogoutError(undefined);
        loggingOut.current = true;
        try {
          await logout();
        } catch (err) {
          // Only the controller's word ends a session: a DELETE that never arrived (network, 5xx,
          // 429) leaves it alive with the cookie still in this browser. Saying "logged out" then
          // would leave a working session behind on a shared computer. A 401 means it had ended.
          if (!(err instanceof ApiError && err.status === 401)) {
            loggingOut.current = false;
            setLogoutError(`Logout failed: ${(err as Error).message}. The session is still active; try again.`);
            return;
          }
        }
        // Left set until the next login: a read still in flight may yet come back 401.
        stopLive();
        setNotice('You are logged out.');
        setSession(null);
      }}
    />
  );
}

function findRoute(path: string, role: Session['role']): { route: RouteDef; params: Record<string, string> } | null {
  for (const route of routes) {
    const params = matchPath(route.path, path);
    if (params && allows(role, route.minRole)) return { route, params };
  }
  return null;
}

/** What counts as the person being there: input, not the page's own polling and live reloads. */
const ACTIVITY = ['pointerdown', 'pointermove', 'keydown', 'wheel', 'touchstart'] as const;

/**
 * Calls `onIdle` once nobody has touched the page for the session's idle timeout. The server's
 * idle clock cannot tell: an open page keeps asking (the container page re-reads usage every 5 s,
 * every event reloads a view), so without this an unattended console stays logged in for the
 * whole session lifetime (8 h) instead of its idle timeout (15 min).
 */
function useIdleLogout(session: Session, onIdle: () => void): void {
  useEffect(() => {
    const idleMs = session.idleTimeoutSeconds * 1000;
    let last = Date.now();
    const seen = () => void (last = Date.now());
    for (const e of ACTIVITY) window.addEventListener(e, seen, { capture: true, passive: true });
    const timer = setInterval(() => {
      if (Date.now() - last < idleMs) return;
      clearInterval(timer);
      onIdle();
    }, Math.min(15_000, Math.max(1000, idleMs / 10)));
    return () => {
      clearInterval(timer);
      for (const e of ACTIVITY) window.removeEventListener(e, seen, { capture: true });
    };
  }, [session.sessionId]);
}

function Shell({ session, onLogout, onIdle, logoutError }: { session: Session; onLogout: () => void; onIdle: () => void; logoutError?: string | undefined }) {
  useIdleLogout(session, onIdle);
  const loc = useLocation();
  const found = findRoute(loc.path, session.role);
  const stream = useStreamState();
  const headingRef = useRef<HTMLHeadingElement>(null);
  const first = useRef(true);

  useEffect(() => {
    document.title = `${found?.route.title ?? 'Not found'} · Bulkhead`;
    // Keyboard and screen-reader users land on the new view's heading, not at the top bar.
    if (first.current) first.current = false;
    else headingRef.current?.focus();
  }, [loc.path]);

  const View = found?.route.view;
  const navRoutes = routes.filter((r) => r.nav && allows(session.role, r.minRole));
  const section = '/' + (loc.path.split('/')[1] ?? '');
  return (
    <div class="frame">
      <a class="skip" href="#main" onClick={(e) => (e.preventDefault(), document.getElementById('main')?.focus())}>
        Skip to content
      </a>
      <header class="top">
        <span class="brand">
          <Logo /> Bulkhead
        </span>
        <nav aria-label="Main">
          <ul>
            {navRoutes.map((r) => {
              const current = r.path === '/' ? loc.path === '/' : section === r.path;
              return (
                <li key={r.path}>
                  <a href={`#${r.path}`} aria-current={current ? 'page' : undefined}>
                    {r.nav}
                  </a>
                </li>
              );
            })}
          </ul>
        </nav>
        <span class={`live live-${stream}`} role="status" title="The live event stream (GET /v1/events)">
          <span aria-hidden="true">{stream === 'open' ? '●' : stream === 'connecting' ? '◌' : '○'}</span> {stream === 'open' ? 'live' : stream === 'connecting' ? 'connecting' : 'not live'}
        </span>
        <span class="who" data-testid="session-info">
          <span class="who-name" title={session.keyName}>
            {session.keyName}
          </span> <span class="badge role">{session.role}</span>{' '}
          <span class="projects" title={session.projects.length ? `projects: ${session.projects.join(', ')}` : undefined}>
            {session.projects.length ? `projects: ${session.projects.join(', ')}` : 'all projects'}
          </span>
        </span>
        <button type="button" class="logout" onClick={onLogout}>
          Log out
        </button>
      </header>
      {logoutError ? (
        <p class="error" role="alert" data-testid="logout-error">
          <span aria-hidden="true">⚠ </span>
          {logoutError}
        </p>
      ) : null}
      <main id="main" tabIndex={-1}>
        <h1 ref={headingRef} tabIndex={-1}>
          {found?.route.title ?? 'Not found'}
        </h1>
        {View && found ? (
          <View session={session} params={found.params} query={loc.query} />
        ) : (
          <p>
            No such view. <a href="#/">Back to the overview</a>.
          </p>
        )}
      </main>
    </div>
  );
}
