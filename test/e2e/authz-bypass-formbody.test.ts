// Authorization-plugin bypasses, end to end — query values dockerd takes
// from a form-encoded BODY. dockerd's handlers read most query values with
// Go's r.Form / r.FormValue after Request.ParseForm, which — for a POST whose
// (first) Content-Type is application/x-www-form-urlencoded — reads the body
// and puts its values BEFORE the query's. Plugins are given a body only when
// that first Content-Type is JSON, and they are given the LAST value of each
// header (moby's pkg/authorization `headers()` flattens http.Header), so:
//   - `POST /containers/{id}/kill?signal=KILL` with the headers
//     `Content-Type: application/x-www-form-urlencoded` then
//     `Content-Type: application/json` and the body `signal=WINCH`: the plugin
//     saw a JSON request asking for SIGKILL (allowed on a container Bulkhead
//     paused); dockerd sent SIGWINCH and resumed the paused container (an
//     `unpause` event; moby's killWithSignal) — it was not killed. Likewise a Content-Type
//     Go lower-cases to the form type (`applİcation/…`, U+0130), an empty last
//     Content-Type, and a chunked body with `Content-Length: 0`.
//   - `POST /build` (networkmode, judged by host-namespaces): dockerd's handler
//     buffers the first chunk (≤ 4 KiB) of the body, then reads its options with
//     r.FormValue — so Go parses the REST of a form-encoded body:
//     `pad=<20 kB>&networkmode=host` (also behind `Content-Type: <form>` then
//     `Content-Type: application/x-tar`) ran the RUN step in the host's network
//     namespace while the plugin, seeing no networkmode in the target, allowed it.
// Now a judged decision that depends on a value dockerd reads through r.Form
// treats it as unknown when the request may carry a body the plugin was not
// given (not passed, a Content-Type present, no `Content-Length: 0`): the
// kill of a held container is refused, saying why; so is a build while
// host-namespaces is enforced (opt-out: exemption names [build-body]).
// `docker kill` (Content-Length: 0), a bodiless raw SIGKILL, a build by URL
// without a body and a build body without a Content-Type stay allowed.
import t from 'tap';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  API, engineVersions, expectAllowed, expectRefused, outcomeText, sleep, startBypassStack,
} from '../helpers/authz-bypass-stack';
import { LABEL_ARGS, TEST_IMAGE } from '../helpers/engine';
import { rawDocker, type RawResponse } from '../helpers/raw-docker';
import { waitFor } from '../helpers/processes';

const FORM = 'application/x-www-form-urlencoded';
// `docker build` below: the classic builder's POST /build (BuildKit's goes through /grpc).
process.env['DOCKER_BUILDKIT'] = '0';

const policy = `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: authz-bypass }
spec:
  rules:
    - id: fb.pause
      description: fb.pause
      severity: high
      mode: enforce
      action: { type: pause }
      scope: { containerLabels: { bkfb.hold: pause } }
      check: { type: no-new-privileges }
    - id: fb.host-namespaces
      description: fb.host-namespaces
      severity: critical
      mode: enforce
      action: { type: kill }
      check: { type: host-namespaces }
`;

/** A Dockerfile served on loopback: a build context dockerd fetches itself (`remote=`), so a build needs no tar body. */
const DOCKERFILE = `FROM ${TEST_IMAGE}\nRUN ls /sys/class/net | tr '\\n' ' ' > /ifaces\n`;

async function serveDockerfile(t: tap.Test): Promise<string> {
  const server: Server = createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end(DOCKERFILE);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/Dockerfile`;
}

for (const version of engineVersions()) {
  t.test(`dockerd ${version}: query values dockerd reads from a form-encoded body`, async (t) => {
    const names: Record<string, string> = {};
    const s = await startBypassStack(t, {
      version,
      policy: () => policy,
      beforePolicy: async (s) => {
        for (const tag of ['k-dup', 'k-utf', 'k-empty', 'k-chunk', 'k-cli', 'k-raw', 'c-free']) {
          names[tag] = s.name(tag);
          const hold = tag === 'c-free' ? [] : ['--label', 'bkfb.hold=pause'];
          await s.dockerOk(['run', '-d', '--name', names[tag]!, '--network', 'none', ...LABEL_ARGS, ...hold, TEST_IMAGE, 'sleep', '600']);
        }
      },
    });
    const state = async (tag: string) => (await s.container(names[tag]!))!.State.Status;
    for (const tag of ['k-dup', 'k-utf', 'k-empty', 'k-chunk', 'k-cli', 'k-raw']) {
      await waitFor(`${names[tag]} paused by Bulkhead`, async () => (await state(tag)) === 'paused', 15_000, 100);
    }
    const kill = (tag: string, o: { contentType: string | null; body?: string; headers?: Record<string, string>; chunked?: boolean }): Promise<RawResponse> =>
      rawDocker(s.engine.socketPath, { method: 'POST', target: `/${API}/containers/${names[tag]}/kill?signal=KILL`, ...o });

    await t.test('kill ?signal=KILL whose form body says WINCH: refused while held', async (t) => {
      const probes: [tag: string, what: string, o: Parameters<typeof kill>[1]][] = [
        ['k-dup', 'Content-Type form, then application/json (the plugin sees the last)', { contentType: FORM, body: 'signal=WINCH', headers: { 'Content-Type': 'application/json' } }],
        ['k-utf', 'Content-Type "applİcation/x-www-form-urlencoded" (U+0130: Go lower-cases it to the form type)', { contentType: 'appl\u0130cation/x-www-form-urlencoded', body: 'signal=WINCH' }],
        ['k-empty', 'Content-Type form, then an empty one', { contentType: FORM, body: 'signal=WINCH', headers: { 'Content-Type': '' } }],
        ['k-chunk', 'chunked, Content-Length: 0, Content-Type form then application/json', { contentType: FORM, body: 'signal=WINCH', chunked: true, headers: { 'Content-Type': 'application/json', 'Content-Length': '0' } }],
      ];
      for (const [tag, what, o] of probes) {
        const since = (Date.now() / 1000).toFixed(3);
        const r = await kill(tag, o);
        t.comment(`${version} ${what}: ${outcomeText(r)}`);
        if (expectRefused(t, s, r, ['fb.pause'], what)) {
          t.match(r.message, /form-encoded body/, `${what}: the denial says why the signal is unknown`);
        }
        await sleep(300);
        // Had dockerd sent SIGKILL, the container would have exited; it did not in either case (WINCH is ignored).
        t.not(await state(tag), 'exited', `${what}: not killed (dockerd took the body's WINCH, or nothing was sent)`);
        // moby's killWithSignal resumes a paused container (no StopSignal set) after any signal: the undo itself.
        const ev = await s.dockerOk(['events', '--since', since, '--until', (Date.now() / 1000).toFixed(3), '--filter', `container=${names[tag]}`, '--filter', 'event=unpause', '--format', '{{.Action}}']);
        t.comment(`${version} ${what}: unpause events after the request: ${ev.split('\n').filter(Boolean).length}`);
        t.equal(ev.trim(), '', `${what}: dockerd did not resume the paused container (no unpause event)`);
      }
    });

    await t.test('controls: SIGKILL without a form body is allowed; a form body on a container not held is allowed', async (t) => {
      const cli = await s.docker(['kill', names['k-cli']!]);
      expectAllowed(t, cli, 'docker kill (Content-Type text/plain, Content-Length: 0) of a held container');
      const raw = await kill('k-raw', { contentType: null });
      expectAllowed(t, raw, 'raw kill ?signal=KILL without a body or Content-Type');
      await waitFor('both killed', async () => (await state('k-cli')) === 'exited' && (await state('k-raw')) === 'exited', 10_000, 100);
      t.pass('SIGKILL ended both held containers');
      const free = await kill('c-free', { contentType: FORM, body: 'signal=WINCH', headers: { 'Content-Type': 'application/json' } });
      expectAllowed(t, free, 'the same duplicated-Content-Type kill of a container Bulkhead holds nothing of');
      await sleep(300);
      t.equal(await state('c-free'), 'running', 'dockerd sent the body\'s SIGWINCH, not the query\'s SIGKILL (measured, no plugin involved in the choice)');
    });

    await t.test('build: networkmode in a form body past dockerd\'s first 4 KiB is refused; bodiless and Content-Type-less builds allowed', async (t) => {
      const remote = await serveDockerfile(t);
      const build = async (what: string, query: string, o: { contentType: string | null; body?: string; headers?: Record<string, string> }): Promise<{ r: RawResponse; tag: string }> => {
        const tag = `${s.name('img')}-${Math.random().toString(36).slice(2, 7)}`;
        const r = await rawDocker(s.engine.socketPath, { method: 'POST', target: `/${API}/build?nocache=1&t=${tag}&remote=${encodeURIComponent(remote)}${query}`, timeoutMs: 60_000, ...o });
        t.comment(`${version} build ${what}: ${r.status} ${r.text.slice(-160).replace(/\s+/g, ' ')}`);
        return { r, tag };
      };
      const ifaces = async (tag: string): Promise<string> => {
        const out = await s.docker(['run', '--rm', '--pull', 'never', '--network', 'none', ...LABEL_ARGS, tag, 'cat', '/ifaces']);
        return out.code === 0 ? out.stdout.trim() : `(no image: ${out.stderr.trim().slice(0, 80)})`;
      };
      const host = await build('networkmode=host in the query', '&networkmode=host', { contentType: null });
      expectRefused(t, s, host.r, ['fb.host-namespaces'], 'networkmode=host in the query');
      // dockerd's build handler buffers the first chunk (≤ 4 KiB) of the body before it reads its
      // options with r.FormValue: Go's ParseForm then parses the REST of a form-encoded body.
      const padded = `pad=${'x'.repeat(20_000)}&networkmode=host`;
      const boundary = 'bkfbBoundary';
      const multipart = `--${boundary}\r\nContent-Disposition: form-data; name="networkmode"\r\n\r\nhost\r\n--${boundary}--\r\n`;
      for (const [what, o] of [
        ['networkmode=host after 20 kB in a form-encoded body', { contentType: FORM, body: padded }],
        ['the same behind Content-Type form, then application/x-tar (what docker build sends)', { contentType: FORM, body: padded, headers: { 'Content-Type': 'application/x-tar' } }],
        ['networkmode=host in a short form-encoded body', { contentType: FORM, body: 'networkmode=host' }],
        ['networkmode=host in a multipart body', { contentType: `multipart/form-data; boundary=${boundary}`, body: multipart }],
      ] as const) {
        const b = await build(what, '', o);
        if (expectRefused(t, s, b.r, ['fb.host-namespaces'], what)) t.match(b.r.message, /form-encoded body past its first 4 KiB.*names: \[build-body\]/s, `${what}: says why and names the exemption`);
        else t.comment(`${version} ${what}: the RUN step saw ${await ifaces(b.tag)}`);
      }
      // Controls of the same shape that dockerd cannot read as a form.
      const noType = await build('the padded body without a Content-Type', '', { contentType: null, body: padded });
      expectAllowed(t, noType.r, 'the same body without a Content-Type (Go reads application/octet-stream)');
      t.equal(await ifaces(noType.tag), 'lo', 'without a Content-Type dockerd ignored the body: the RUN step had only lo');
      const bodiless = await build('no body, networkmode=none', '&networkmode=none', { contentType: 'application/x-tar' });
      expectAllowed(t, bodiless.r, 'a context by URL with no body (Content-Length: 0), networkmode=none');
      t.equal(await ifaces(bodiless.tag), 'lo', 'bodiless build: the RUN step had only lo');
      // The cost: docker build sends its context as a tar body plugins are not given.
      const cli = await s.engine.docker(['build', '--no-cache', '--network', 'none', '-q', '-t', s.name('cli'), '-'], { input: DOCKERFILE, timeoutMs: 60_000 });
      expectRefused(t, s, cli, ['fb.host-namespaces'], 'DOCKER_BUILDKIT=0 docker build --network none (its tar body could be a form)');
      // The opt-out: an exemption naming build-body accepts the body, not a host-network build.
      await s.applyPolicy(policy.replace('check: { type: host-namespaces }', 'check: { type: host-namespaces }\n      exemptions: [ { who: ops, why: the build host, match: { names: [build-body] } } ]'));
      const exempted = await s.engine.docker(['build', '--no-cache', '--network', 'none', '-q', '-t', s.name('cli2'), '-'], { input: DOCKERFILE, timeoutMs: 60_000 });
      expectAllowed(t, exempted, 'build-body exempted: DOCKER_BUILDKIT=0 docker build --network none');
      const hostExempted = await s.engine.docker(['build', '--no-cache', '--network', 'host', '-q', '-t', s.name('cli3'), '-'], { input: DOCKERFILE, timeoutMs: 60_000 });
      expectRefused(t, s, hostExempted, ['fb.host-namespaces'], 'build-body exempted: docker build --network host still');
    });
  });
}
