// CIS Docker Benchmark 1.6.0, section 2: Docker daemon configuration.
//
// Every setting is read through lockdown/daemon-config.ts: the command line
// of the dockerd behind OUR socket, its daemon.json parsed as JSON (the one
// its --config-file names), and `docker info`. docker-bench grepped
// daemon.json for strings, so `"icc": false` inside a comment-like value or
// a key spelled in another case fooled it; an invalid daemon.json is
// reported here as a WARN on every setting it would carry.
import {
  authorizationPlugins, boolSetting, listSetting, objectSetting, stringSetting, tcpHosts, tlsMode, type DaemonConfig,
} from '../lockdown/daemon-config';
import { listDetails } from './check-helpers';
import type { CisCheck, CisOutcome } from './cis-types';

const BUILTIN_INSECURE = new Set(['127.0.0.0/8', '::1/128']);

function where(c: DaemonConfig, s: { source: 'cmdline' | 'daemon.json' } | undefined): string {
  if (!s) return 'default';
  return s.source === 'cmdline' ? 'dockerd command line' : c.daemonJsonPath;
}

/** When daemon.json could not be parsed, its settings are unknown: say so instead of passing. */
function jsonBroken(c: DaemonConfig): CisOutcome | undefined {
  return c.daemonJsonError !== undefined ? { result: 'WARN', details: `${c.daemonJsonPath}: ${c.daemonJsonError}` } : undefined;
}

export const SECTION_2: { id: string; desc: string; checks: CisCheck[] } = {
  id: '2',
  desc: 'Docker daemon configuration',
  checks: [
    {
      id: '2.1',
      desc: 'Run the Docker daemon as a non-root user, if possible (Manual)',
      scored: false,
      remediation: 'Follow the current Dockerdocumentation on how to install the Docker daemon as a non-root user.',
      impact: 'There are multiple prerequisites depending on which distribution that is in use, and also known limitations regarding networking and resource limitation. Running in rootless mode also changes the location of any configuration files in use, including all containers using the daemon.',
      run(ctx) {
        if ((ctx.info.SecurityOptions ?? []).some((o) => o.includes('name=rootless'))) return { result: 'PASS', details: 'dockerd runs rootless' };
        return { result: 'NOTE' };
      },
    },
    {
      id: '2.2',
      desc: 'Ensure network traffic is restricted between containers on the default bridge (Scored)',
      scored: true,
      remediation: 'Edit the Docker daemon configuration file to ensure that inter-container communication is disabled: icc: false.',
      impact: 'Inter-container communication is disabled on the default network bridge. If any communication between containers on the same host is desired, it needs to be explicitly defined using container linking or custom networks.',
      run(ctx) {
        const broken = jsonBroken(ctx.daemon);
        if (broken) return broken;
        const icc = boolSetting(ctx.daemon, 'icc');
        return icc?.value === false ? { result: 'PASS', details: `icc=false (${where(ctx.daemon, icc)})` } : { result: 'WARN', details: `icc is ${icc ? 'true' : 'not set (default true)'}` };
      },
    },
    {
      id: '2.3',
      desc: "Ensure the logging level is set to 'info' (Scored)",
      scored: true,
      remediation: "Ensure that the Docker daemon configuration file has the following configuration included log-level: info. Alternatively, run the Docker daemon as following: dockerd --log-level=info",
      impact: 'None.',
      run(ctx) {
        const broken = jsonBroken(ctx.daemon);
        if (broken) return broken;
        const lvl = stringSetting(ctx.daemon, 'log-level');
        const debug = boolSetting(ctx.daemon, 'debug');
        if (debug?.value === true) return { result: 'WARN', details: `debug is on (${where(ctx.daemon, debug)})` };
        if (!lvl || lvl.value === 'info') return { result: 'PASS' };
        return { result: 'WARN', details: `log-level is "${lvl.value}" (${where(ctx.daemon, lvl)})` };
      },
    },
    {
      id: '2.4',
      desc: 'Ensure Docker is allowed to make changes to iptables (Scored)',
      scored: true,
      remediation: 'Do not run the Docker daemon with --iptables=false option.',
      impact: 'The Docker daemon service requires iptables rules to be enabled before it starts.',
      run(ctx) {
        const broken = jsonBroken(ctx.daemon);
        if (broken) return broken;
        const ipt = boolSetting(ctx.daemon, 'iptables');
        return ipt?.value === false ? { result: 'WARN', details: `iptables=false (${where(ctx.daemon, ipt)})` } : { result: 'PASS' };
      },
    },
    {
      id: '2.5',
      desc: 'Ensure insecure registries are not used (Scored)',
      scored: true,
      remediation: 'You should ensure that no insecure registries are in use.',
      impact: 'None.',
      run(ctx) {
        const broken = jsonBroken(ctx.daemon);
        if (broken) return broken;
        const regs = new Set(listSetting(ctx.daemon, 'insecure-registry', 'insecure-registries').map((s) => s.value));
        for (const cidr of ctx.info.RegistryConfig?.InsecureRegistryCIDRs ?? []) regs.add(cidr);
        for (const [name, cfg] of Object.entries(ctx.info.RegistryConfig?.IndexConfigs ?? {})) if (cfg?.Secure === false) regs.add(cfg.Name ?? name);
        const items = [...regs].filter((r) => !BUILTIN_INSECURE.has(r)).sort();
        return items.length === 0 ? { result: 'PASS' } : { result: 'WARN', details: listDetails('Insecure registries', items), items };
      },
    },
    {
      id: '2.6',
      desc: 'Ensure aufs storage driver is not used (Scored)',
      scored: true,
      remediation: 'Do not start Docker daemon as using dockerd --storage-driver aufs option.',
      impact: 'aufs is the only storage driver that allows containers to share executable and shared library memory. Its use should be reviewed in line with your organization\'s security policy.',
      run: (ctx) => (ctx.info.Driver === 'aufs' ? { result: 'WARN', details: 'Storage driver: aufs' } : { result: 'PASS', details: `Storage driver: ${ctx.info.Driver ?? 'unknown'}` }),
    },
    {
      id: '2.7',
      desc: 'Ensure TLS authentication for Docker daemon is configured (Scored)',
      scored: true,
      remediation: 'Follow the steps mentioned in the Docker documentation or other references. By default, TLS authentication is not configured.',
      impact: 'You would need to manage and guard certificates and keys for the Docker daemon and Docker clients.',
      run(ctx) {
        const tcp = tcpHosts(ctx.daemon);
        if (tcp.length === 0) return { result: 'INFO', details: 'Docker daemon not listening on TCP' };
        const items = tcp.map((h) => h.raw);
        const tls = tlsMode(ctx.daemon);
        const complete = stringSetting(ctx.daemon, 'tlscacert') && stringSetting(ctx.daemon, 'tlscert') && stringSetting(ctx.daemon, 'tlskey');
        if (tls === 'verify' && complete) return { result: 'PASS', details: listDetails('Docker daemon listening on TCP with TLS and verification', items), items };
        if (tls === 'none') return { result: 'WARN', details: listDetails('Docker daemon currently listening on TCP without TLS', items), items };
        return { result: 'WARN', details: listDetails('Docker daemon currently listening on TCP with TLS, but no verification', items), items };
      },
    },
    {
      id: '2.8',
      desc: 'Ensure the default ulimit is configured appropriately (Manual)',
      scored: false,
      remediation: 'Run Docker in daemon mode and pass --default-ulimit as option with respective ulimits as appropriate in your environment and in line with your security policy. Example: dockerd --default-ulimit nproc=1024:2048 --default-ulimit nofile=100:200',
      impact: 'If ulimits are not set correctly, overutilization by individual containers could make the host system unusable.',
      run(ctx) {
        const cmd = ctx.daemon.flags.all('default-ulimit');
        const json = objectSetting(ctx.daemon, 'default-ulimits');
        const items = [...cmd, ...Object.keys(json ?? {})];
        return items.length > 0 ? { result: 'PASS', details: listDetails('Default ulimits', items), items } : { result: 'INFO', details: "Default ulimit doesn't appear to be set" };
      },
    },
    {
      id: '2.9',
      desc: 'Enable user namespace support (Scored)',
      scored: true,
      remediation: 'Please consult the Docker documentation for various ways in which this can be configured depending upon your requirements. Your steps might also vary based on platform. For example, on Red Hat: touch /etc/subuid /etc/subgid, then start the docker daemon with --userns-remap flag: dockerd --userns-remap=default',
      impact: 'User namespace remapping may cause issues with a number of Docker features, like sharing the host PID or network namespace, using external volume or storage drivers, or Docker build.',
      run(ctx) {
        if ((ctx.info.SecurityOptions ?? []).some((o) => o.includes('name=userns'))) return { result: 'PASS' };
        const s = stringSetting(ctx.daemon, 'userns-remap');
        return s && s.value !== '' ? { result: 'PASS', details: `userns-remap=${s.value}` } : { result: 'WARN' };
      },
    },
    {
      id: '2.10',
      desc: 'Ensure the default cgroup usage has been confirmed (Scored)',
      scored: true,
      remediation: 'The default setting is in line with good security practice and can be left in situ. If you wish to specifically set a non-default cgroup, pass the --cgroup-parent parameter to the Docker daemon when starting it.',
      impact: 'None.',
      run(ctx) {
        const s = stringSetting(ctx.daemon, 'cgroup-parent');
        return s && s.value !== '' ? { result: 'INFO', details: `Confirm cgroup usage: cgroup-parent=${s.value}` } : { result: 'PASS' };
      },
    },
    {
      id: '2.11',
      desc: 'Ensure base device size is not changed until needed (Scored)',
      scored: true,
      remediation: 'Do not set --storage-opt dm.basesize until needed.',
      impact: 'None.',
      run(ctx) {
        const opts = listSetting(ctx.daemon, 'storage-opt', 'storage-opts').map((s) => s.value);
        const base = opts.filter((o) => /^dm\.basesize=/i.test(o));
        return base.length > 0 ? { result: 'WARN', details: listDetails('Storage options', base), items: base } : { result: 'PASS' };
      },
    },
    {
      id: '2.12',
      desc: 'Ensure that authorization for Docker client commands is enabled (Scored)',
      scored: true,
      remediation: 'Install/Create an authorization plugin. Configure the authorization policy as desired. Start the docker daemon using command dockerd --authorization-plugin=<PLUGIN_ID>',
      impact: 'Each Docker command specifically passes through the authorization plugin mechanism. This may introduce a slight performance drop.',
      run(ctx) {
        const plugins = authorizationPlugins(ctx.daemon);
        return plugins.length > 0 ? { result: 'PASS', details: listDetails('Authorization plugins', plugins), items: plugins } : { result: 'WARN' };
      },
    },
    {
      id: '2.13',
      desc: 'Ensure centralized and remote logging is configured (Scored)',
      scored: true,
      remediation: 'Set up the desired log driver following its documentation. Start the docker daemon using that logging driver. Example: dockerd --log-driver=syslog --log-opt syslog-address=tcp://192.xxx.xxx.xxx',
      impact: 'None.',
      run(ctx) {
        const d = ctx.info.LoggingDriver ?? stringSetting(ctx.daemon, 'log-driver')?.value ?? 'json-file';
        return d === 'json-file' || d === 'local' || d === 'none' ? { result: 'WARN', details: `Log driver: ${d}` } : { result: 'PASS', details: `Log driver: ${d}` };
      },
    },
    {
      id: '2.14',
      desc: 'Ensure containers are restricted from acquiring new privileges (Scored)',
      scored: true,
      remediation: 'You should run the Docker daemon using command: dockerd --no-new-privileges',
      impact: 'no_new_priv prevents LSMs like SELinux from escalating the privileges of individual containers.',
      run(ctx) {
        const broken = jsonBroken(ctx.daemon);
        if (broken) return broken;
        return boolSetting(ctx.daemon, 'no-new-privileges')?.value === true ? { result: 'PASS' } : { result: 'WARN' };
      },
    },
    {
      id: '2.15',
      desc: 'Ensure live restore is enabled (Scored)',
      scored: true,
      remediation: 'Run Docker in daemon mode and pass --live-restore option.',
      impact: 'None.',
      run(ctx) {
        const on = ctx.info.LiveRestoreEnabled ?? boolSetting(ctx.daemon, 'live-restore')?.value;
        return on === true ? { result: 'PASS' } : { result: 'WARN' };
      },
    },
    {
      id: '2.16',
      desc: 'Ensure Userland Proxy is Disabled (Scored)',
      scored: true,
      remediation: 'You should run the Docker daemon as below: dockerd --userland-proxy=false',
      impact: 'Some systems with older Linux kernels may not be able to support hairpin NAT and therefore require the userland proxy service. Also, some networking setups can be impacted by the removal of the userland proxy.',
      run(ctx) {
        const broken = jsonBroken(ctx.daemon);
        if (broken) return broken;
        return boolSetting(ctx.daemon, 'userland-proxy')?.value === false ? { result: 'PASS' } : { result: 'WARN' };
      },
    },
    {
      id: '2.17',
      desc: 'Ensure that a daemon-wide custom seccomp profile is applied if appropriate (Manual)',
      scored: false,
      remediation: 'By default, Docker\'s default seccomp profile is applied. If this is adequate for your environment, no action is necessary. Alternatively, if you choose to apply your own seccomp profile, use the --seccomp-profile flag at daemon start or put it in the daemon runtime parameters file.',
      impact: 'A misconfigured seccomp profile could possibly interrupt your container environment. You should therefore exercise extreme care if you choose to override the default settings.',
      run(ctx) {
        const opt = (ctx.info.SecurityOptions ?? []).find((o) => o.includes('name=seccomp'));
        const custom = stringSetting(ctx.daemon, 'seccomp-profile');
        if (custom && custom.value !== '' && custom.value !== 'builtin') {
          return custom.value === 'unconfined' ? { result: 'WARN', details: 'Daemon-wide seccomp profile: unconfined' } : { result: 'PASS', details: `Custom seccomp profile: ${custom.value}` };
        }
        return { result: 'INFO', details: opt ? `Seccomp: ${opt}` : 'Seccomp not reported by docker info' };
      },
    },
    {
      id: '2.18',
      desc: 'Ensure that experimental features are not implemented in production (Scored)',
      scored: true,
      remediation: 'You should not pass --experimental as a runtime parameter to the Docker daemon on production systems.',
      impact: 'None.',
      run(ctx) {
        const exp = ctx.info.ExperimentalBuild === true || boolSetting(ctx.daemon, 'experimental')?.value === true;
        return exp ? { result: 'WARN', details: 'Experimental features are enabled' } : { result: 'PASS' };
      },
    },
  ],
};
