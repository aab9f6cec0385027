// Test helpers: complete container facts with overrides, and one-rule policies.
import type { ContainerFacts__Output, HostFacts__Output } from '../../src/proto/index';
import type { Policy, Rule } from '../../src/policy/types';

export function facts(over: Partial<ContainerFacts__Output> = {}): ContainerFacts__Output {
  return {
    id: 'c0ffee0000000000000000000000000000000000000000000000000000000001',
    name: '/web',
    imageRef: 'ghcr.io/acme/web:1.2.3',
    imageId: `sha256:${'a'.repeat(64)}`,
    imageDigest: `ghcr.io/acme/web@sha256:${'b'.repeat(64)}`,
    labels: {},
    state: 'running',
    user: '10001',
    privileged: false,
    mounts: [],
    networkMode: 'shop_default',
    networks: [{ name: 'shop_default', networkId: 'n1', ipAddress: '172.18.0.2' }],
    pidMode: '',
    ipcMode: 'private',
    utsMode: '',
    usernsMode: '',
    capAdd: [],
    capDrop: ['ALL'],
    securityOpt: ['no-new-privileges:true'],
    readOnlyRootfs: true,
    memoryLimitBytes: 512 * 1024 * 1024,
    nanoCpus: 1e9,
    cpuQuota: 0,
    cpuPeriod: 0,
    cpuShares: 0,
    pidsLimit: 256,
    restartPolicy: 'unless-stopped',
    restartMaxRetries: 0,
    envNames: ['PATH'],
    command: ['web', 'serve'],
    createdAtMs: 0,
    startedAtMs: 0,
    finishedAtMs: 0,
    exitCode: 0,
    pid: 123,
    devices: [],
    imageUser: '',
    restartCount: 0,
    secretHits: [],
    project: '',
    ...over,
  };
}

export function host(labels: Record<string, string> = {}): HostFacts__Output {
  return {
    hostname: 'docker-1', osPlatform: 'linux', osDistro: 'Debian GNU/Linux', osRelease: '12', kernel: '6.1.0', arch: 'x64',
    cpus: 4, memoryBytes: 8 * 2 ** 30, dockerVersion: '27.3.1', dockerApiVersion: '1.47', cgroupVersion: 2, cgroupDriver: 'systemd', labels,
  };
}

export function rule(check: Rule['check'], over: Partial<Rule> = {}): Rule {
  return { id: `t.${check.type}`, description: 'test', severity: 'high', mode: 'enforce', action: { type: 'kill' }, check, ...over };
}

export function policyOf(...rules: Rule[]): Policy {
  return { apiVersion: 'bulkhead.dev/v1', kind: 'Policy', metadata: { name: 't' }, spec: { rules } };
}

export const NOW = new Date('2026-03-01T12:00:00Z');
