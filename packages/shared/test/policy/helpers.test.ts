import t from 'tap';
import { parseImageRef } from '../../src/policy/image-ref';
import { canonicalHostPath, isAncestorOf, isSameOrUnder, normalizeHostPath } from '../../src/policy/host-path';
import { formatBytes, formatSize, parseMemorySize } from '../../src/policy/units';

t.test('parseImageRef', async (t) => {
  const cases: [string, Partial<ReturnType<typeof parseImageRef>>][] = [
    ['nginx', { registry: 'docker.io', repository: 'library/nginx', tag: undefined, digest: undefined, normalized: 'docker.io/library/nginx:latest' }],
    ['nginx:1.27', { registry: 'docker.io', repository: 'library/nginx', tag: '1.27', normalized: 'docker.io/library/nginx:1.27' }],
    ['grafana/grafana:11', { registry: 'docker.io', repository: 'grafana/grafana', tag: '11' }],
    ['docker.io/library/nginx', { registry: 'docker.io', repository: 'library/nginx' }],
    ['registry-1.docker.io/x/y:1', { registry: 'docker.io', repository: 'x/y' }],
    ['ghcr.io/acme/web:1', { registry: 'ghcr.io', repository: 'acme/web', tag: '1' }],
    ['localhost:5000/app', { registry: 'localhost:5000', repository: 'app', tag: undefined }],
    ['localhost/app:2', { registry: 'localhost', repository: 'app', tag: '2' }],
    [`nginx@sha256:${'a'.repeat(64)}`, { tag: undefined, digest: `sha256:${'a'.repeat(64)}`, normalized: `docker.io/library/nginx@sha256:${'a'.repeat(64)}` }],
    [`reg.io:443/a/b:c@sha256:${'a'.repeat(64)}`, { registry: 'reg.io:443', repository: 'a/b', tag: 'c' }],
    [`sha256:${'f'.repeat(64)}`, { isId: true, registry: '' }],
    ['0123456789ab', { isId: true }],
  ];
  for (const [ref, want] of cases) t.match(parseImageRef(ref), want, ref);
  t.equal(parseImageRef('nginx'), parseImageRef('nginx'), 'memoised');
});

t.test('host paths', async (t) => {
  t.equal(normalizeHostPath('/etc/'), '/etc');
  t.equal(normalizeHostPath('//etc//ssl/'), '/etc/ssl');
  t.equal(normalizeHostPath('/a/../../etc'), '/etc');
  t.equal(normalizeHostPath('etc'), '/etc');
  t.equal(normalizeHostPath('/'), '/');
  t.equal(canonicalHostPath('/var/run/docker.sock'), '/run/docker.sock');
  t.equal(canonicalHostPath('/var/run'), '/run');
  t.equal(canonicalHostPath('/var/running'), '/var/running');
  t.ok(isSameOrUnder('/etc/ssl', '/etc'));
  t.ok(isSameOrUnder('/etc', '/etc'));
  t.notOk(isSameOrUnder('/etcetera', '/etc'));
  t.notOk(isSameOrUnder('/home', '/'));
  t.ok(isSameOrUnder('/', '/'));
  t.ok(isAncestorOf('/var', '/var/lib/docker'));
  t.ok(isAncestorOf('/', '/etc'));
  t.notOk(isAncestorOf('/va', '/var/lib'));
  t.notOk(isAncestorOf('/etc', '/etc'));
});

t.test('memory sizes', async (t) => {
  const cases: [string | number, number | undefined][] = [
    ['512m', 512 * 2 ** 20], ['1g', 2 ** 30], ['1G', 2 ** 30], ['1.5g', 1.5 * 2 ** 30], ['2GiB', 2 * 2 ** 30], ['100MB', 100 * 2 ** 20],
    ['64k', 65536], ['1024', 1024], ['10b', 10], [4096, 4096], ['lots', undefined], ['-1g', undefined], [-5, undefined], ['1x', undefined],
  ];
  for (const [v, want] of cases) t.equal(parseMemorySize(v), want, String(v));
  t.equal(formatBytes(512 * 2 ** 20), '512 MiB');
  t.equal(formatBytes(1.5 * 2 ** 30), '1.50 GiB');
  t.equal(formatBytes(100), '100 B');
  t.equal(formatSize(100), '100 B', 'tables: bytes as they are');
  t.equal(formatSize(1.5 * 2 ** 30), '1.5 GiB', 'tables: one decimal');
});
