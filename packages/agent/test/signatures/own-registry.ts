// A docker-registry 2.8 (the same binary scripts/registry.sh starts) with a config
// scripts/registry.sh does not offer (token auth, client certificates), reusing the TLS
// material of a registry started by the helper. Stopped in `t`'s teardown.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Test } from 'tap';
import { signTools, type TestRegistry } from '../../../../test/helpers/registry';

/** Starts it with `extra` appended to the config (YAML, top level or under http: via `httpExtra`); returns 127.0.0.1:PORT. */
export async function startOwnRegistry(t: Test, base: TestRegistry, dir: string, opts: { extra?: string; httpExtra?: string } = {}): Promise<string> {
  const tools = await signTools();
  await mkdir(join(dir, 'data'), { recursive: true });
  await writeFile(join(dir, 'config.yml'), `version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${dir}/data
http:
  addr: 127.0.0.1:0
  secret: ${randomBytes(16).toString('hex')}
  tls:
    certificate: ${base.dir}/tls/server.crt
    key: ${base.dir}/tls/server.key
${opts.httpExtra ?? ''}
${opts.extra ?? ''}
`);
  let log = '';
  const child = spawn(tools.registry, ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { child.kill('SIGTERM'); });
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`docker-registry did not start:\n${log}`)), 20_000);
    const onData = (b: Buffer): void => {
      log += b.toString();
      const m = /listening on (127\.0\.0\.1:\d+)/.exec(log);
      if (m) { clearTimeout(timer); resolve(m[1]!); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`docker-registry exited (${code}):\n${log}`)); });
  });
}
