// CIS Docker Benchmark 1.6.0, section 3: Docker daemon configuration files.
//
// Modes are compared as permission BITS (check-helpers.permissionOutcome):
// "644 or more restrictive" passes 0644, 644, 0640 and 0600 and fails 0646
// or 0744. docker-bench compared `stat -c %a` output as numbers or against a
// fixed list of strings, which passed 0611 (611 ≤ 644) and failed 0600
// spelled differently. Paths are the ones THIS engine uses: the socket the
// agent talks to, the daemon.json its --config-file names, the TLS files its
// --tlscacert/--tlscert/--tlskey (or daemon.json) name.
import { readdir } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { socketGroupName, stringSetting } from '../lockdown/daemon-config';
import { findUnitFile, ownershipOutcome, permissionOutcome, type OwnershipSpec } from './check-helpers';
import type { CisCheck, CisContext } from './cis-types';

const ROOT_ROOT: OwnershipSpec = { uids: [0], gids: [0], expected: 'root:root' };

function rootDocker(ctx: CisContext): OwnershipSpec {
  const name = socketGroupName(ctx.daemon);
  const g = ctx.accounts.groupByName(name);
  // root:root is stricter than root:docker and passes too.
  return { uids: [0], gids: g ? [0, g.gid] : [0], expected: `root:${name}` };
}

/** Every regular file below a host directory (registry certificates). */
async function filesUnder(hostRoot: string, dir: string): Promise<string[] | undefined> {
  const out: string[] = [];
  const walk = async (d: string, depth: number): Promise<boolean> => {
    let entries;
    try {
      entries = await readdir(join(hostRoot, d), { withFileTypes: true });
    } catch {
      return false;
    }
    for (const e of entries) {
      const p = posix.join(d, e.name);
      if (e.isDirectory() && depth < 4) await walk(p, depth + 1);
      else if (e.isFile()) out.push(p);
    }
    return true;
  };
  return (await walk(dir, 0)) ? out : undefined;
}

type PathsFn = (ctx: CisContext) => Promise<string[] | undefined> | string[] | undefined;

function ownership(id: string, desc: string, paths: PathsFn, spec: OwnershipSpec | ((ctx: CisContext) => OwnershipSpec), notFound: string, remediation: string): CisCheck {
  return {
    id, desc, scored: true, remediation, impact: 'None.',
    async run(ctx) {
      const p = await paths(ctx);
      if (!p || p.length === 0) return { result: 'INFO', details: notFound };
      return ownershipOutcome(ctx, p, typeof spec === 'function' ? spec(ctx) : spec, notFound);
    },
  };
}

function permissions(id: string, desc: string, paths: PathsFn, max: number, notFound: string, remediation: string): CisCheck {
  return {
    id, desc, scored: true, remediation, impact: 'None.',
    async run(ctx) {
      const p = await paths(ctx);
      if (!p || p.length === 0) return { result: 'INFO', details: notFound };
      return permissionOutcome(ctx, p, max, notFound);
    },
  };
}

const unit = (name: string): PathsFn => async (ctx) => {
  const f = await findUnitFile(ctx.hostRoot, name);
  return f ? [f] : undefined;
};
const fixed = (p: string): PathsFn => () => [p];
const certs: PathsFn = (ctx) => filesUnder(ctx.hostRoot, '/etc/docker/certs.d');
const tlsFile = (flag: string): PathsFn => (ctx) => {
  const s = stringSetting(ctx.daemon, flag);
  return s && s.value !== '' ? [s.value] : undefined;
};

export const SECTION_3: { id: string; desc: string; checks: CisCheck[] } = {
  id: '3',
  desc: 'Docker daemon configuration files',
  checks: [
    ownership('3.1', 'Ensure that the docker.service file ownership is set to root:root (Automated)', unit('docker.service'), ROOT_ROOT, 'File not found',
      'Find out the file location: systemctl show -p FragmentPath docker.service. If the file does not exist, this recommendation is not applicable. If the file does exist, you should execute the command below, including the correct file path, in order to set the ownership and group ownership for the file to root. For example, chown root:root /usr/lib/systemd/system/docker.service'),
    permissions('3.2', 'Ensure that docker.service file permissions are appropriately set (Automated)', unit('docker.service'), 0o644, 'File not found',
      'Find out the file location: systemctl show -p FragmentPath docker.service. If the file does not exist, this recommendation is not applicable. If the file exists, execute the command below including the correct file path to set the file permissions to 644. For example, chmod 644 /usr/lib/systemd/system/docker.service'),
    ownership('3.3', 'Ensure that docker.socket file ownership is set to root:root (Automated)', unit('docker.socket'), ROOT_ROOT, 'File not found',
      'Find out the file location: systemctl show -p FragmentPath docker.socket. If the file does not exist, this recommendation is not applicable. If the file exists, run the command below, including the correct file path, to set the ownership and group ownership for the file to root. For example, chown root:root /usr/lib/systemd/system/docker.socket'),
    permissions('3.4', 'Ensure that docker.socket file permissions are set to 644 or more restrictive (Automated)', unit('docker.socket'), 0o644, 'File not found',
      'Find out the file location: systemctl show -p FragmentPath docker.socket. If the file does not exist, this recommendation is not applicable. If the file does exist, you should execute the command below, including the correct file path to set the file permissions to 644. For example, chmod 644 /usr/lib/systemd/system/docker.socket'),
    ownership('3.5', 'Ensure that the /etc/docker directory ownership is set to root:root (Automated)', fixed('/etc/docker'), ROOT_ROOT, 'Directory not found',
      'To resolve this issue you should run the following command: chown root:root /etc/docker. This sets the ownership and group ownership for the directory to root.'),
    permissions('3.6', 'Ensure that /etc/docker directory permissions are set to 755 or more restrictively (Automated)', fixed('/etc/docker'), 0o755, 'Directory not found',
      'You should run the following command: chmod 755 /etc/docker. This sets the permissions for the directory to 755.'),
    ownership('3.7', 'Ensure that registry certificate file ownership is set to root:root (Automated)', certs, ROOT_ROOT, 'Directory not found',
      'The following command could be executed: chown root:root /etc/docker/certs.d/<registry-name>/*. This would set the individual ownership and group ownership for the registry certificate files to root.'),
    permissions('3.8', 'Ensure that registry certificate file permissions are set to 444 or more restrictively (Automated)', certs, 0o444, 'Directory not found',
      'You should execute the following command: find /etc/docker/certs.d/ -type f -exec chmod 0444 {} \\;. This would set the permissions for the registry certificate files to 444.'),
    ownership('3.9', 'Ensure that TLS CA certificate file ownership is set to root:root (Automated)', tlsFile('tlscacert'), ROOT_ROOT, 'No TLS CA certificate found',
      'You should execute the following command: chown root:root <path to TLS CA certificate file>. This sets the individual ownership and group ownership for the TLS CA certificate file to root.'),
    permissions('3.10', 'Ensure that TLS CA certificate file permissions are set to 444 or more restrictively (Automated)', tlsFile('tlscacert'), 0o444, 'No TLS CA certificate found',
      'You should execute the following command: chmod 444 <path to TLS CA certificate file>. This sets the file permissions on the TLS CA file to 444.'),
    ownership('3.11', 'Ensure that Docker server certificate file ownership is set to root:root (Automated)', tlsFile('tlscert'), ROOT_ROOT, 'No TLS Server certificate found',
      'You should run the following command: chown root:root <path to Docker server certificate file>. This sets the individual ownership and the group ownership for the Docker server certificate file to root.'),
    permissions('3.12', 'Ensure that the Docker server certificate file permissions are set to 444 or more restrictively (Automated)', tlsFile('tlscert'), 0o444, 'No TLS Server certificate found',
      'You should execute the command below: chmod 444 <path to Docker server certificate file>. This sets the file permissions of the Docker server certificate file to 444.'),
    ownership('3.13', 'Ensure that the Docker server certificate key file ownership is set to root:root (Automated)', tlsFile('tlskey'), ROOT_ROOT, 'No TLS Key found',
      'You should execute the following command: chown root:root <path to Docker server certificate key file>. This sets the individual ownership and group ownership for the Docker server certificate key file to root.'),
    permissions('3.14', 'Ensure that the Docker server certificate key file permissions are set to 400 (Automated)', tlsFile('tlskey'), 0o400, 'No TLS Key found',
      'You should execute the following command: chmod 400 <path to Docker server certificate key file>. This sets the Docker server certificate key file permissions to 400.'),
    ownership('3.15', 'Ensure that the Docker socket file ownership is set to root:docker (Automated)', (ctx) => [ctx.dockerSocketPath], rootDocker, 'File not found',
      'You should execute the following command: chown root:docker /var/run/docker.sock. This sets the ownership to root and group ownership to docker for the default Docker socket file.'),
    permissions('3.16', 'Ensure that the Docker socket file permissions are set to 660 or more restrictively (Automated)', (ctx) => [ctx.dockerSocketPath], 0o660, 'File not found',
      'You should execute the command below. chmod 660 /var/run/docker.sock. This sets the file permissions of the Docker socket file to 660.'),
    ownership('3.17', 'Ensure that the daemon.json file ownership is set to root:root (Automated)', (ctx) => [ctx.daemon.daemonJsonPath], ROOT_ROOT, 'File not found',
      'You should execute the command below: chown root:root /etc/docker/daemon.json. This sets the ownership and group ownership for the file to root.'),
    permissions('3.18', 'Ensure that daemon.json file permissions are set to 644 or more restrictive (Automated)', (ctx) => [ctx.daemon.daemonJsonPath], 0o644, 'File not found',
      'You should execute the command below: chmod 644 /etc/docker/daemon.json. This sets the file permissions for this file to 644.'),
    ownership('3.19', 'Ensure that the /etc/default/docker file ownership is set to root:root (Automated)', fixed('/etc/default/docker'), ROOT_ROOT, 'File not found',
      'You should execute the following command: chown root:root /etc/default/docker. This sets the ownership and group ownership of the file to root.'),
    permissions('3.20', 'Ensure that the /etc/default/docker file permissions are set to 644 or more restrictively (Automated)', fixed('/etc/default/docker'), 0o644, 'File not found',
      'You should execute the following command: chmod 644 /etc/default/docker. This sets the file permissions for this file to 644.'),
    permissions('3.21', 'Ensure that the /etc/sysconfig/docker file permissions are set to 644 or more restrictively (Automated)', fixed('/etc/sysconfig/docker'), 0o644, 'File not found',
      'You should execute the following command: chmod 644 /etc/sysconfig/docker. This sets the file permissions for this file to 644.'),
    ownership('3.22', 'Ensure that the /etc/sysconfig/docker file ownership is set to root:root (Automated)', fixed('/etc/sysconfig/docker'), ROOT_ROOT, 'File not found',
      'You should execute the following command: chown root:root /etc/sysconfig/docker. This sets the ownership and group ownership for the file to root.'),
    ownership('3.23', 'Ensure that the Containerd socket file ownership is set to root:root (Automated)', (ctx) => [ctx.containerdSocketPath], ROOT_ROOT, 'File not found',
      'You should execute the following command: chown root:root /run/containerd/containerd.sock. This sets the ownership and group ownership for the file to root.'),
    permissions('3.24', 'Ensure that the Containerd socket file permissions are set to 660 or more restrictively (Automated)', (ctx) => [ctx.containerdSocketPath], 0o660, 'File not found',
      'You should execute the following command: chmod 660 /run/containerd/containerd.sock. This sets the file permissions for this file to 660.'),
  ],
};
