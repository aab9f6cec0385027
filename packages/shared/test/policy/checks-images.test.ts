import t from 'tap';
import { runCases, type CheckCase } from './run-cases';
import { secretLocationKind, scanFor, registryAllowlist, tagIdentity } from '../../src/policy/checks/images';
import type { ScanSummary } from '../../src/policy/types';
import { facts, NOW } from './helpers';

const SHA = `sha256:${'c'.repeat(64)}`;

t.test('registry-allowlist', async (t) => {
  const check = { type: 'registry-allowlist', registries: ['docker.io', 'ghcr.io/acme', '*.internal.example', 'localhost:5000'] };
  const official = { type: 'registry-allowlist', registries: ['docker.io/library'] };
  const cases: CheckCase[] = [
    { name: 'unqualified ref is docker.io', check, facts: { imageRef: 'nginx:1.27' }, broken: false },
    { name: 'user repo on docker hub', check, facts: { imageRef: 'grafana/grafana:11.2.0' }, broken: false },
    { name: 'index.docker.io alias', check, facts: { imageRef: 'index.docker.io/library/nginx:1' }, broken: false },
    { name: 'allowed org prefix', check, facts: { imageRef: 'ghcr.io/acme/web:1' }, broken: false },
    { name: 'nested path under allowed org', check, facts: { imageRef: 'ghcr.io/acme/team/web:1' }, broken: false },
    { name: 'other org on same registry', check, facts: { imageRef: 'ghcr.io/evil/web:1' }, broken: true, detail: /ghcr\.io\/evil\/web/ },
    { name: 'org prefix is segment-aware', check, facts: { imageRef: 'ghcr.io/acmecorp/web:1' }, broken: true },
    { name: 'glob registry', check, facts: { imageRef: 'reg.internal.example/x/y:1' }, broken: false },
    { name: 'registry with port', check, facts: { imageRef: 'localhost:5000/app:1' }, broken: false },
    { name: 'unknown registry', check, facts: { imageRef: 'evil.example.com/miner:1' }, broken: true, detail: /not from an allowed registry/ },
    { name: 'digest ref from unknown registry', check, facts: { imageRef: `quay.io/x/y@${SHA}` }, broken: true },
    { name: 'official images only: library passes', check: official, facts: { imageRef: 'alpine:3.20' }, broken: false },
    { name: 'official images only: user repo breaks', check: official, facts: { imageRef: 'someone/alpine:3.20' }, broken: true },
    { name: 'image id without repo digest', check, facts: { imageRef: SHA, imageDigest: '' }, broken: true, detail: /referenced by id/ },
    { name: 'image id with repo digest from allowed registry', check, facts: { imageRef: SHA, imageDigest: `ghcr.io/acme/web@${SHA}` }, broken: false },
    { name: 'image id allowed by param', check: { ...check, allowImageIds: true }, facts: { imageRef: SHA, imageDigest: '' }, broken: false },
  ];
  runCases(t, cases);
  t.same(registryAllowlist.check({ container: facts({ imageRef: 'nginx' }), host: undefined, ctx: { now: NOW }, project: undefined }, { registries: ['quay.io'] }).length, 1, 'direct check() works too');
});

t.test('latest-tag', async (t) => {
  const check = { type: 'latest-tag' };
  runCases(t, [
    { name: 'explicit version tag', check, facts: { imageRef: 'nginx:1.27.3' }, broken: false },
    { name: 'latest tag', check, facts: { imageRef: 'nginx:latest' }, broken: true, detail: /moving tag "latest"/ },
    { name: 'missing tag', check, facts: { imageRef: 'nginx' }, broken: true, detail: /no tag/ },
    { name: 'missing tag with registry port', check, facts: { imageRef: 'localhost:5000/app' }, broken: true },
    { name: 'registry port with tag', check, facts: { imageRef: 'localhost:5000/app:2' }, broken: false },
    { name: 'digest-pinned without tag', check, facts: { imageRef: `nginx@${SHA}` }, broken: false },
    { name: 'latest but digest-pinned', check, facts: { imageRef: `nginx:latest@${SHA}` }, broken: false },
    { name: 'latest digest-pinned, pinning not accepted', check: { type: 'latest-tag', allowDigestPinned: false }, facts: { imageRef: `nginx:latest@${SHA}` }, broken: true },
    { name: 'image id', check, facts: { imageRef: SHA }, broken: false },
    { name: 'extra forbidden tag glob', check: { type: 'latest-tag', forbiddenTags: ['latest', '*-dev'] }, facts: { imageRef: 'app:2.0-dev' }, broken: true },
  ]);
});

t.test('image-tag-pinned', async (t) => {
  const A = `sha256:${'a'.repeat(64)}`;
  const B = `sha256:${'b'.repeat(64)}`;
  const ID_A = `sha256:${'1'.repeat(64)}`;
  const ID_B = `sha256:${'2'.repeat(64)}`;
  const tagPins = new Map([
    ['registry.example.com/shop/web:v1', A],
    ['docker.io/library/nginx:v2', ID_A], // pinned from a host where the image had no repo digest
    ['registry.example.com/shop/web:latest', A],
  ]);
  const check = { type: 'image-tag-pinned' };
  const web = (ref: string, digest: string, imageId = ID_B) => ({ imageRef: ref, imageDigest: digest ? `registry.example.com/shop/web@${digest}` : '', imageId });
  runCases(t, [
    { name: 'the pinned digest', check, facts: web('registry.example.com/shop/web:v1', A), ctx: { tagPins }, broken: false },
    { name: 'another digest', check, facts: web('registry.example.com/shop/web:v1', B), ctx: { tagPins }, broken: true, detail: /tag registry\.example\.com\/shop\/web:v1 is pinned to sha256:a{64} \(the digest first seen\), but this image is sha256:b{64}: the tag was re-pushed/ },
    { name: 'no pins at all (dry-run)', check, facts: web('registry.example.com/shop/web:v1', B), broken: false },
    { name: 'no pin for this tag (first seen)', check, facts: web('registry.example.com/shop/web:v9', B), ctx: { tagPins }, broken: false },
    { name: 'a tag the rule does not cover', check, facts: web('registry.example.com/shop/web:latest', B), ctx: { tagPins }, broken: false },
    { name: 'covered by an extra glob', check: { ...check, tags: ['v*', 'latest'] }, facts: web('registry.example.com/shop/web:latest', B), ctx: { tagPins }, broken: true },
    { name: 'repositories: outside', check: { ...check, repositories: ['ghcr.io/*'] }, facts: web('registry.example.com/shop/web:v1', B), ctx: { tagPins }, broken: false },
    { name: 'repositories: inside', check: { ...check, repositories: ['registry.example.com/shop/*'] }, facts: web('registry.example.com/shop/web:v1', B), ctx: { tagPins }, broken: true },
    { name: 'a ref by digest names no tag', check, facts: web(`registry.example.com/shop/web:v1@${B}`, B), ctx: { tagPins }, broken: false },
    { name: 'an image id names no tag', check, facts: { imageRef: ID_B, imageDigest: '', imageId: ID_B }, ctx: { tagPins }, broken: false },
    { name: 'pin by image id: same image pulled with a repo digest', check, facts: { imageRef: 'nginx:v2', imageDigest: `nginx@${B}`, imageId: ID_A }, ctx: { tagPins }, broken: false },
    { name: 'pin by image id: local image, other content', check, facts: { imageRef: 'nginx:v2', imageDigest: '', imageId: ID_B }, ctx: { tagPins }, broken: true, detail: /but this image is sha256:2{64}/ },
    { name: 'unknown digest and id', check, facts: { imageRef: 'registry.example.com/shop/web:v1', imageDigest: '', imageId: '' }, ctx: { tagPins }, broken: true, detail: /an image whose digest is unknown/ },
  ]);
  t.same(tagIdentity({ imageRef: 'nginx', imageDigest: '', imageId: ID_A }), { repository: 'docker.io/library/nginx', tag: 'latest', key: 'docker.io/library/nginx:latest', digest: ID_A });
  t.same(tagIdentity({ imageRef: 'localhost:5000/a/b:1.2', imageDigest: `localhost:5000/a/b@${A}`, imageId: ID_A }), { repository: 'localhost:5000/a/b', tag: '1.2', key: 'localhost:5000/a/b:1.2', digest: A });
  t.equal(tagIdentity({ imageRef: `nginx@${A}`, imageDigest: '', imageId: '' }), undefined);
});

t.test('digest-pinned', async (t) => {
  const check = { type: 'digest-pinned' };
  runCases(t, [
    { name: 'pinned', check, facts: { imageRef: `ghcr.io/acme/web@${SHA}` }, broken: false },
    { name: 'tag and digest', check, facts: { imageRef: `ghcr.io/acme/web:1@${SHA}` }, broken: false },
    { name: 'tag only', check, facts: { imageRef: 'ghcr.io/acme/web:1' }, broken: true, detail: /not pinned by digest/ },
    { name: 'image id not accepted by default', check, facts: { imageRef: SHA }, broken: true, detail: /image id/ },
    { name: 'image id accepted by param', check: { type: 'digest-pinned', acceptImageId: true }, facts: { imageRef: SHA }, broken: false },
  ]);
});

t.test('secrets', async (t) => {
  const hits = [
    { location: 'env:DATABASE_URL', detector: 'database-url-credentials' },
    { location: 'label:deploy.token', detector: 'generic-password-assignment' },
    { location: 'command[3]', detector: 'generic-password-assignment' },
    { location: 'history[4]', detector: 'aws-access-key-id' },
  ];
  runCases(t, [
    { name: 'no hits', check: { type: 'secrets' }, broken: false },
    { name: 'all hits by default', check: { type: 'secrets' }, facts: { secretHits: hits }, broken: true, evidence: 4, detail: /database-url-credentials matched in env:DATABASE_URL/ },
    { name: 'only env location', check: { type: 'secrets', locations: ['env'] }, facts: { secretHits: hits }, broken: true, evidence: 1 },
    { name: 'only history location', check: { type: 'secrets', locations: ['history'] }, facts: { secretHits: hits }, broken: true, evidence: 1, detail: /aws-access-key-id/ },
    { name: 'location filtered out', check: { type: 'secrets', locations: ['label'] }, facts: { secretHits: [hits[0]!] }, broken: false },
    { name: 'detector allowlist', check: { type: 'secrets', detectors: ['aws-access-key-id'] }, facts: { secretHits: hits }, broken: true, evidence: 1 },
    { name: 'ignored detector', check: { type: 'secrets', ignoreDetectors: ['generic-password-assignment'] }, facts: { secretHits: hits }, broken: true, evidence: 2 },
    { name: 'unknown location kind is kept', check: { type: 'secrets', locations: ['env'] }, facts: { secretHits: [{ location: 'somewhere', detector: 'jwt' }] }, broken: true },
  ]);
  t.equal(secretLocationKind('entrypoint[0]'), 'command');
  t.equal(secretLocationKind('label:x'), 'label');
  t.equal(secretLocationKind('x'), undefined);
});

function scan(digest: string, vulns: ScanSummary['vulnerabilities'], scannedAt = '2026-02-25T00:00:00Z'): ScanSummary {
  return { digest, scannedAt, scanner: 'trivy', vulnerabilities: vulns };
}

t.test('vulnerabilities', async (t) => {
  const digest = `sha256:${'b'.repeat(64)}`; // the helper's repo digest
  const vulns: ScanSummary['vulnerabilities'] = [
    { id: 'CVE-2024-0001', severity: 'critical', cvss: 9.8, fixable: true, pkg: 'openssl' },
    { id: 'CVE-2024-0002', severity: 'critical', cvss: 9.1, fixable: false, pkg: 'glibc' },
    { id: 'CVE-2024-0003', severity: 'high', cvss: 7.5, fixable: true, pkg: 'zlib' },
    { id: 'CVE-2024-0004', severity: 'medium', cvss: 5.0, fixable: true },
    { id: 'CVE-2024-0005', severity: 'low', fixable: false },
  ];
  const scans = new Map([[digest, scan(digest, vulns)]]);
  runCases(t, [
    { name: 'no scan: nothing to judge', check: { type: 'vulnerabilities', maxCritical: 0 }, broken: false },
    { name: 'criticals over 0', check: { type: 'vulnerabilities', maxCritical: 0 }, ctx: { scans }, broken: true, detail: /2 critical vulnerabilities \(max 0\): CVE-2024-0001, CVE-2024-0002/ },
    { name: 'criticals within 2', check: { type: 'vulnerabilities', maxCritical: 2 }, ctx: { scans }, broken: false },
    { name: 'only fixable', check: { type: 'vulnerabilities', maxCritical: 0, onlyFixable: true }, ctx: { scans }, broken: true, detail: /1 fixable critical/ },
    { name: 'ignored ids', check: { type: 'vulnerabilities', maxCritical: 0, ignore: ['CVE-2024-0001', 'CVE-2024-0002'] }, ctx: { scans }, broken: false },
    { name: 'max CVSS', check: { type: 'vulnerabilities', maxCvss: 9.5 }, ctx: { scans }, broken: true, detail: /CVE-2024-0001 \(9\.8\)/ },
    { name: 'max CVSS respected', check: { type: 'vulnerabilities', maxCvss: 9.8 }, ctx: { scans }, broken: false },
    { name: 'several thresholds', check: { type: 'vulnerabilities', maxCritical: 0, maxHigh: 0, maxMedium: 0 }, ctx: { scans }, broken: true, evidence: 3 },
    {
      name: 'found by image id',
      check: { type: 'vulnerabilities', maxLow: 0 },
      facts: { imageDigest: '' },
      ctx: { scans: new Map([[`sha256:${'a'.repeat(64)}`, scan(`sha256:${'a'.repeat(64)}`, vulns)]]) },
      broken: true,
    },
  ]);
  t.test('many ids are summarised', async (t) => {
    const many = Array.from({ length: 8 }, (_, i) => ({ id: `CVE-1-${i}`, severity: 'high' as const, fixable: true }));
    runCases(t, [{ name: 'list', check: { type: 'vulnerabilities', maxHigh: 1 }, ctx: { scans: new Map([[digest, scan(digest, many)]]) }, broken: true, detail: /and 3 more/ }]);
  });
  t.test('digest from the image ref', async (t) => {
    const d = `sha256:${'d'.repeat(64)}`;
    const s = scan(d, []);
    t.equal(scanFor(facts({ imageDigest: '', imageRef: `x@${d}` }), new Map([[d, s]])), s);
    t.equal(scanFor(facts(), undefined), undefined);
  });
});

t.test('not-scanned', async (t) => {
  const digest = `sha256:${'b'.repeat(64)}`;
  const fresh = new Map([[digest, scan(digest, [], '2026-02-25T00:00:00Z')]]);
  const stale = new Map([[digest, scan(digest, [], '2025-12-01T00:00:00Z')]]);
  const bad = new Map([[digest, scan(digest, [], 'yesterday')]]);
  runCases(t, [
    { name: 'no scan', check: { type: 'not-scanned' }, broken: true, detail: /no vulnerability scan/ },
    { name: 'scanned', check: { type: 'not-scanned' }, ctx: { scans: fresh }, broken: false },
    { name: 'stale but no max age', check: { type: 'not-scanned' }, ctx: { scans: stale }, broken: false },
    { name: 'stale with max age', check: { type: 'not-scanned', maxAgeDays: 30 }, ctx: { scans: stale }, broken: true, detail: /90 days old \(max 30\)/ },
    { name: 'fresh with max age', check: { type: 'not-scanned', maxAgeDays: 30 }, ctx: { scans: fresh }, broken: false },
    { name: 'bad date', check: { type: 'not-scanned', maxAgeDays: 30 }, ctx: { scans: bad }, broken: true, detail: /no valid date/ },
  ]);
});
