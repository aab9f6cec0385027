import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createDockerClient, parseDockerHost, resolveDockerHost, dockerodeOptions, describeDockerHost, DEFAULT_DOCKER_SOCKET, type DockerEndpoint,
} from '../../src/docker/client';

t.test('resolveDockerHost: explicit, then DOCKER_HOST, then the default socket', async (t) => {
  const table: Array<[string | undefined, NodeJS.ProcessEnv, string]> = [
    ['unix:///tmp/x.sock', { DOCKER_HOST: 'tcp://1.2.3.4:2375' }, 'unix:///tmp/x.sock'],
    [undefined, { DOCKER_HOST: 'tcp://1.2.3.4:2375' }, 'tcp://1.2.3.4:2375'],
    ['  ', { DOCKER_HOST: 'unix:///a.sock' }, 'unix:///a.sock'],
    [undefined, {}, `unix://${DEFAULT_DOCKER_SOCKET}`],
    [undefined, { DOCKER_HOST: '' }, `unix://${DEFAULT_DOCKER_SOCKET}`],
  ];
  for (const [explicit, env, want] of table) t.equal(resolveDockerHost(explicit, env), want, `${explicit} / ${JSON.stringify(env)}`);
});

t.test('parseDockerHost', async (t) => {
  const table: Array<[string, NodeJS.ProcessEnv, DockerEndpoint]> = [
    ['unix:///run/docker.sock', {}, { kind: 'unix', socketPath: '/run/docker.sock' }],
    ['/tmp/bk/docker.sock', {}, { kind: 'unix', socketPath: '/tmp/bk/docker.sock' }],
    ['tcp://127.0.0.1:2375', {}, { kind: 'tcp', host: '127.0.0.1', port: 2375, tls: false }],
    ['tcp://127.0.0.1', {}, { kind: 'tcp', host: '127.0.0.1', port: 2375, tls: false }],
    ['tcp://docker.example:2376', {}, { kind: 'tcp', host: 'docker.example', port: 2376, tls: true }],
    ['tcp://127.0.0.1:2375', { DOCKER_TLS_VERIFY: '1' }, { kind: 'tcp', host: '127.0.0.1', port: 2375, tls: true }],
    ['https://[::1]', {}, { kind: 'tcp', host: '::1', port: 2376, tls: true }],
    ['http://localhost:8080', {}, { kind: 'tcp', host: 'localhost', port: 8080, tls: false }],
  ];
  for (const [url, env, want] of table) t.same(parseDockerHost(url, env), want, url);
  for (const bad of ['unix://relative.sock', 'ssh://user@host', 'npipe:////./pipe/docker_engine', 'nonsense', 'tcp://']) {
    t.throws(() => parseDockerHost(bad, {}), { code: 'BK_ERR_CONFIG_INVALID' }, bad);
  }
});

t.test('dockerodeOptions', async (t) => {
  t.same(dockerodeOptions({ kind: 'unix', socketPath: '/s' }), { socketPath: '/s', host: undefined, protocol: 'http' });
  t.same(dockerodeOptions({ kind: 'tcp', host: 'h', port: 2375, tls: false }, { timeoutMs: 5000 }),
    { timeout: 5000, socketPath: undefined, host: 'h', port: 2375, protocol: 'http' });
  const tls = { ca: 'CA', cert: 'CERT', key: 'KEY' };
  t.match(dockerodeOptions({ kind: 'tcp', host: 'h', port: 2376, tls: true }, { tls }), { protocol: 'https', ca: 'CA', cert: 'CERT', key: 'KEY' });

  const dir = mkdtempSync(join(tmpdir(), 'bk-dockercerts-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of ['ca', 'cert', 'key']) writeFileSync(join(dir, `${f}.pem`), `${f.toUpperCase()}-PEM`);
  const o = dockerodeOptions({ kind: 'tcp', host: 'h', port: 2376, tls: true }, { env: { DOCKER_CERT_PATH: dir } });
  t.equal(String(o.key), 'KEY-PEM', 'certificates from DOCKER_CERT_PATH');
  t.throws(() => dockerodeOptions({ kind: 'tcp', host: 'h', port: 2376, tls: true }, { env: { DOCKER_CERT_PATH: join(dir, 'nope') } }),
    { code: 'BK_ERR_CONFIG_INVALID' });
});

t.test('an explicit socket wins over a tcp DOCKER_HOST (docker-modem merges env defaults under our options)', async (t) => {
  const saved = process.env['DOCKER_HOST'];
  process.env['DOCKER_HOST'] = 'tcp://127.0.0.1:1';
  t.teardown(() => {
    if (saved === undefined) delete process.env['DOCKER_HOST'];
    else process.env['DOCKER_HOST'] = saved;
  });
  const c = createDockerClient({ dockerHost: 'unix:///tmp/bk-none/docker.sock' });
  const modem = c.modem as unknown as { socketPath?: string; host?: string };
  t.equal(modem.socketPath, '/tmp/bk-none/docker.sock');
  t.equal(modem.host, undefined);
  const d = createDockerClient({ env: { DOCKER_HOST: 'tcp://10.1.2.3:2375' } });
  t.equal((d.modem as unknown as { host?: string }).host, '10.1.2.3');
  t.equal(describeDockerHost(undefined, {}), 'unix:///var/run/docker.sock');
  t.equal(describeDockerHost('tcp://h:2376', {}), 'https://h:2376');
});

t.test('a client for a socket that does not exist fails on use, not on creation', async (t) => {
  const c = createDockerClient({ dockerHost: 'unix:///tmp/bk-does-not-exist/docker.sock' });
  await t.rejects(c.ping(), { code: 'ENOENT' });
});
