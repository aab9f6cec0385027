// Authorization-plugin bypasses, end to end — request BODIES (classes 1 and 2):
// dockerd decodes a create body with Go's encoding/json, so the plugin must
// read it the same way or an attacker with API access gets a container past
// the policy:
//   1. a body JSON.parse rejects but Go's decoder accepts (a stray `}` or `]`
//      after the object: Go stops after the first value) must not fail open;
//   2. Go matches keys case-insensitively, with Unicode simple folding
//      (`hostconfig`, `HOSTCONFIG`, `binds`, `privileged`, `Bindſ` with
//      U+017F), and applies repeated keys in order (a second HostConfig
//      object merges into the first, the last scalar wins, `Image` twice).
// Each attack is sent as raw bytes over the engine's socket to a real dockerd
// with the real agent's plugin and host-safety rules in enforce mode
// (test/helpers/authz-bypass-stack.ts), and must be REFUSED with a message
// naming the rule it breaks, and dockerd must not have created the
// container. Each benign control of the same shape (non-root user, no
// dangerous setting, keys in another case or repeated on harmless fields)
// must be allowed and run, so a fix that refuses too much fails here too.
// Every body was first sent to a private dockerd WITHOUT the plugin: it
// creates exactly what the comment next to it says (checked with inspect).
import t from 'tap';
import {
  API, createBody, engineVersions, expectAllowed, expectNotCreated, expectRefused, expectRuns, startBypassStack,
  TEST_IMAGE, TEST_IMAGE_USER1000, type BypassStack,
} from '../helpers/authz-bypass-stack';

interface Attack {
  why: string;
  /** The exact body bytes. */
  body: (s: BypassStack) => string;
  /** The rule the container breaks (any one of these named in the denial). */
  rules: string[];
}

interface Benign {
  why: string;
  body: (s: BypassStack) => string;
  /** What dockerd must have stored (inspect), to show the request meant what the comment says. */
  expect: (c: { User: string; Image: string; Binds: string[] | null; Memory: number; Privileged: boolean }, s: BypassStack) => Record<string, unknown>;
  stored: Record<string, unknown> | ((s: BypassStack) => Record<string, unknown>);
}

const J = JSON.stringify;
const IMG = J(TEST_IMAGE);
const IMG_1000 = J(TEST_IMAGE_USER1000);
const LBL = '{"bulkhead.test":"1"}';
/** Writable host /etc in the container: what most attacks below smuggle in. */
const ETC = '["/etc:/host-etc"]';
const EVIL = J(createBody({ User: '1000' }, { Binds: ['/etc:/host-etc'] }));
const GOOD = J(createBody({ User: '1000' }));

const TRAILING: Attack[] = [
  // Go: the first value is the request; the rest is never read (26.1's dec.More() is false before `}` / `]`).
  { why: 'a /etc bind mount, then a stray "}"', body: () => `${EVIL}}`, rules: ['hs.sensitive-mounts'] },
  { why: 'a /etc bind mount, then a stray "]"', body: () => `${EVIL}]`, rules: ['hs.sensitive-mounts'] },
  { why: 'a /etc bind mount, then "}" and more', body: () => `${EVIL}\n}}]`, rules: ['hs.sensitive-mounts'] },
];

const TRAILING_BENIGN: Benign[] = [
  {
    why: 'a compliant body, then a stray "}"', body: () => `${GOOD}}`,
    expect: (c) => ({ User: c.User, Binds: c.Binds }), stored: { User: '1000', Binds: null },
  },
];

const FOLDING: Attack[] = [
  // Go matches every key case-insensitively: this is a /etc bind mount as user 1000.
  {
    why: 'every key in lower case (hostconfig, binds, user, image …)',
    body: () => `{"image":${IMG},"user":"1000","cmd":["sleep","300"],"labels":${LBL},"hostconfig":{"networkmode":"none","binds":${ETC}}}`,
    rules: ['hs.sensitive-mounts'],
  },
  {
    why: 'HOSTCONFIG in upper case',
    body: () => `{"Image":${IMG},"User":"1000","Cmd":["sleep","300"],"Labels":${LBL},"HOSTCONFIG":{"NetworkMode":"none","Binds":${ETC}}}`,
    rules: ['hs.sensitive-mounts'],
  },
  {
    why: '"binds" in lower case inside HostConfig',
    body: () => `{"Image":${IMG},"User":"1000","Cmd":["sleep","300"],"Labels":${LBL},"HostConfig":{"NetworkMode":"none","binds":${ETC}}}`,
    rules: ['hs.sensitive-mounts'],
  },
  {
    why: '"privileged": true in lower case',
    body: () => `{"Image":${IMG},"User":"1000","Cmd":["sleep","300"],"Labels":${LBL},"HostConfig":{"NetworkMode":"none","privileged":true}}`,
    rules: ['hs.privileged'],
  },
  {
    // U+017F LATIN SMALL LETTER LONG S folds to "s" (Go's simple folding): this IS "Binds".
    why: '"Bindſ" (with U+017F, which Go folds to "s")',
    body: () => `{"Image":${IMG},"User":"1000","Cmd":["sleep","300"],"Labels":${LBL},"HostConfig":{"NetworkMode":"none","Bind\u017f":${ETC}}}`,
    rules: ['hs.sensitive-mounts'],
  },
  {
    why: '"capAdd": ["SYS_ADMIN"] in another case',
    body: () => `{"Image":${IMG},"User":"1000","Cmd":["sleep","300"],"Labels":${LBL},"HostConfig":{"NetworkMode":"none","capAdd":["SYS_ADMIN"]}}`,
    rules: ['hs.capabilities'],
  },
  {
    why: '"pidmode": "host" in lower case',
    body: () => `{"Image":${IMG},"User":"1000","Cmd":["sleep","300"],"Labels":${LBL},"HostConfig":{"NetworkMode":"none","pidmode":"host"}}`,
    rules: ['hs.host-namespaces'],
  },
];

const REPEATED: Attack[] = [
  // Go merges the second object into the first: Binds stay. JSON.parse keeps only the last.
  {
    why: 'two HostConfig objects: the first binds /etc, the second only sets NetworkMode',
    body: () => `{"Image":${IMG},"User":"1000","Cmd":["sleep","300"],"Labels":${LBL},"HostConfig":{"Binds":${ETC}},"HostConfig":{"NetworkMode":"none"}}`,
    rules: ['hs.sensitive-mounts'],
  },
  {
    why: '"HostConfig" with the /etc bind, then "hostconfig" with NetworkMode (merged too)',
    body: () => `{"Image":${IMG},"User":"1000","Cmd":["sleep","300"],"Labels":${LBL},"HostConfig":{"Binds":${ETC}},"hostconfig":{"NetworkMode":"none"}}`,
    rules: ['hs.sensitive-mounts'],
  },
  {
    // Both keys are the field User; the last one (root) wins.
    why: '"User": "1000" then "user": "0" (the last scalar wins)',
    body: () => `{"Image":${IMG},"User":"1000","user":"0","Cmd":["sleep","300"],"Labels":${LBL},"HostConfig":{"NetworkMode":"none"}}`,
    rules: ['hs.root-user'],
  },
  {
    // The image that runs is the last one: busybox without a USER, i.e. root.
    why: '"Image" twice: the USER 1000 image, then "IMAGE" naming one that runs as root',
    body: () => `{"Image":${IMG_1000},"Cmd":["sleep","300"],"IMAGE":${IMG},"Labels":${LBL},"HostConfig":{"NetworkMode":"none"}}`,
    rules: ['hs.root-user'],
  },
  {
    why: '"Privileged": false then "privileged": true inside one HostConfig',
    body: () => `{"Image":${IMG},"User":"1000","Cmd":["sleep","300"],"Labels":${LBL},"HostConfig":{"NetworkMode":"none","Privileged":false,"privileged":true}}`,
    rules: ['hs.privileged'],
  },
];

const FOLDING_BENIGN: Benign[] = [
  {
    why: 'harmless keys in lower case (image, user, cmd, labels, hostconfig.networkmode)',
    body: () => `{"image":${IMG},"user":"1000","cmd":["sleep","300"],"labels":${LBL},"hostconfig":{"networkmode":"none"}}`,
    expect: (c) => ({ User: c.User, Image: c.Image, Binds: c.Binds }), stored: { User: '1000', Image: TEST_IMAGE, Binds: null },
  },
  {
    why: '"Bindſ" (U+017F) binding an application directory',
    body: (s) => `{"Image":${IMG},"User":"1000","Cmd":["sleep","300"],"Labels":${LBL},"HostConfig":{"NetworkMode":"none","Bind\u017f":${J([`${s.safeDir}:/data`])}}}`,
    expect: (c) => ({ Binds: c.Binds }), stored: (s) => ({ Binds: [`${s.safeDir}:/data`] }),
  },
];

const REPEATED_BENIGN: Benign[] = [
  {
    why: 'two HostConfig objects, both harmless (NetworkMode, then a memory limit)',
    body: () => `{"Image":${IMG},"User":"1000","Cmd":["sleep","300"],"Labels":${LBL},"HostConfig":{"NetworkMode":"none"},"HostConfig":{"Memory":67108864}}`,
    expect: (c) => ({ Memory: c.Memory }), stored: { Memory: 67108864 },
  },
  {
    why: '"User": "0" then "user": "1000" (the last one, a non-root user, wins)',
    body: () => `{"Image":${IMG},"User":"0","user":"1000","Cmd":["sleep","300"],"Labels":${LBL},"HostConfig":{"NetworkMode":"none"}}`,
    expect: (c) => ({ User: c.User }), stored: { User: '1000' },
  },
  {
    why: '"Image" twice: a root image, then "image" naming the USER 1000 image (which wins)',
    body: () => `{"Image":${IMG},"Cmd":["sleep","300"],"image":${IMG_1000},"Labels":${LBL},"HostConfig":{"NetworkMode":"none"}}`,
    expect: (c) => ({ Image: c.Image, User: c.User }), stored: { Image: TEST_IMAGE_USER1000, User: '1000' },
  },
  {
    why: '"privileged": true then "Privileged": false (the last one wins)',
    body: () => `{"Image":${IMG},"User":"1000","Cmd":["sleep","300"],"Labels":${LBL},"HostConfig":{"NetworkMode":"none","privileged":true,"Privileged":false}}`,
    expect: (c) => ({ Privileged: c.Privileged }), stored: { Privileged: false },
  },
];

async function attacks(t: tap.Test, s: BypassStack, tag: string, list: Attack[]): Promise<void> {
  for (const [i, a] of list.entries()) {
    const name = s.name(`${tag}-a${i}`);
    const r = await s.raw('POST', `/${API}/containers/create?name=${name}`, a.body(s));
    expectRefused(t, s, r, a.rules, `attack: ${a.why}`);
    await expectNotCreated(t, s, name, `attack: ${a.why}`);
  }
}

async function benign(t: tap.Test, s: BypassStack, tag: string, list: Benign[]): Promise<void> {
  for (const [i, b] of list.entries()) {
    const name = s.name(`${tag}-b${i}`);
    const r = await s.raw('POST', `/${API}/containers/create?name=${name}`, b.body(s));
    if (!expectAllowed(t, r, `control: ${b.why}: create`)) continue;
    const c = await expectRuns(t, s, name, `control: ${b.why}`);
    if (c) {
      const seen = b.expect({ User: c.Config.User, Image: c.Config.Image, Binds: c.HostConfig.Binds, Memory: c.HostConfig.Memory, Privileged: c.HostConfig.Privileged }, s);
      t.same(seen, typeof b.stored === 'function' ? b.stored(s) : b.stored, `control: ${b.why}: dockerd stored what the body says`);
    }
    await s.docker(['rm', '-f', name]);
  }
}

for (const version of engineVersions()) {
  t.test(`dockerd ${version}: request bodies are read the way dockerd reads them`, async (t) => {
    const s = await startBypassStack(t, { version });

    await t.test('class 1: a body JSON.parse rejects but Go accepts is judged, not allowed unread', async (t) => {
      await attacks(t, s, 'trail', TRAILING);
      await benign(t, s, 'trail', TRAILING_BENIGN);
    });

    await t.test('class 2a: keys match case-insensitively, with Unicode simple folding', async (t) => {
      await attacks(t, s, 'fold', FOLDING);
      await benign(t, s, 'fold', FOLDING_BENIGN);
    });

    await t.test('class 2b: repeated keys apply in order (objects merge, the last scalar wins)', async (t) => {
      await attacks(t, s, 'rep', REPEATED);
      await benign(t, s, 'rep', REPEATED_BENIGN);
    });

    await t.test('the plugin never answered "allow" because it could not decide (fail-open)', async (t) => {
      const failOpen = s.agentLog().filter((l) => /fail-open/.test(String(l['msg'])));
      t.same(failOpen.map((l) => `${String(l['method'])} ${String(l['path'])}: ${JSON.stringify(l['err'])}`), [], 'no fail-open decisions in the agent log');
    });
  });
}
