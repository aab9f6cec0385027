// CIS Docker Benchmark 1.6.0, section 4: container images and build file.
//
// 4.1 (a user for the container) is decided by the policy evaluator's
// `root-user` check, which knows that "0", "0:0", "root:root" and an image
// whose default USER is root all mean uid 0 (docker-bench only flagged an
// empty User). 4.9 ignores the `ADD file:<digest> in /` layer every base
// image starts with (that is how a rootfs is shipped, not a Dockerfile ADD).
import { containerName } from './audit-policy';
import { fromPolicy, listDetails, NO_CONTAINERS, policyEvidence } from './check-helpers';
import type { CisCheck, CisContext, CisImage, CisOutcome } from './cis-types';

function note(id: string, desc: string, remediation: string, impact = 'None.'): CisCheck {
  return { id, desc, scored: false, remediation, impact, run: () => ({ result: 'NOTE' }) };
}

/** INFO (manual review) listing the images whose history matches, else PASS. */
function historyCheck(ctx: CisContext, what: string, bad: (layer: string) => boolean): CisOutcome {
  if (ctx.images.length === 0) return { result: 'INFO', details: 'No images found' };
  const items = ctx.images.filter((i) => i.history.some(bad)).map((i) => i.name);
  return items.length === 0 ? { result: 'PASS' } : { result: 'INFO', details: listDetails(what, items), items };
}

/** A package-index update in a layer that installs nothing (the cached index goes stale). */
export function isUpdateAlone(layer: string): boolean {
  const l = layer.toLowerCase();
  if (!/\b(apt-get|apt|yum|dnf|apk|zypper|microdnf)\b[^&;|]*\b(update|makecache|refresh)\b/.test(l)) return false;
  return !/\b(install|upgrade|add)\b/.test(l);
}

/** An ADD instruction other than a base image's rootfs tarball. */
export function isAddInstruction(layer: string): boolean {
  const m = /(?:#\(nop\)\s*|^)ADD\s+(.*)$/i.exec(layer.trim());
  if (!m) return false;
  return !/^(file|dir|multi):[0-9a-f]+ in \/\s*$/i.test(m[1]!.replace(/\s+#.*$/, '').trim());
}

function imageName(i: CisImage): string {
  return i.name;
}

export const SECTION_4: { id: string; desc: string; checks: CisCheck[] } = {
  id: '4',
  desc: 'Container Images and Build File',
  checks: [
    {
      id: '4.1',
      desc: 'Ensure that a user for the container has been created (Automated)',
      scored: true,
      remediation: 'You should ensure that the Dockerfile for each container image contains the information: USER <username or ID>. If there is no specific user created in the container base image, then make use of the useradd command to add a specific user before the USER instruction in the Dockerfile.',
      impact: 'Running as a non-root user can present challenges where you wish to bind mount volumes from the underlying host. In this case, care should be taken to ensure that the user running the contained process can read and write to the bound directory, according to their requirements.',
      run(ctx) {
        if (ctx.running.length === 0) return NO_CONTAINERS;
        const out = fromPolicy(ctx, '4.1', 'Running as root');
        if (out.result === 'WARN') {
          // Say why each one is root (empty user, "0:0", image default …).
          out.details = `Running as root: ${ctx.running
            .filter((c) => (ctx.policy.get('4.1') ?? []).some((h) => h.container.id === c.facts.id))
            .map((c) => `${containerName(c.facts)} (${policyEvidence(ctx, '4.1', c.facts.id).join('; ')})`)
            .join(', ')}`;
        }
        return out;
      },
    },
    note('4.2', 'Ensure that containers use only trusted base images (Manual)',
      'Configure and use Docker Content trust. View the history of each Docker image to evaluate its risk, dependent on the sensitivity of the application you wish to deploy using it. Scan Docker images for vulnerabilities at regular intervals.',
      'None.'),
    note('4.3', 'Ensure that unnecessary packages are not installed in the container (Manual)',
      'You should not install anything within the container that is not required. You should consider using a minimal base image rather than the standard Redhat/Centos/Debian images if you can. Some of the options available include BusyBox and Alpine. Not only can this trim your image size considerably, but there would also be fewer pieces of software which could contain vectors for attack.'),
    note('4.4', 'Ensure images are scanned and rebuilt to include security patches (Manual)',
      'Images should be re-built ensuring that the latest version of the base images are used, to keep the operating system patch level at an appropriate level. Once the images have been re-built, containers should be re-started making use of the updated images.',
      'Updating images often requires additional work, as does testing the updated images.'),
    {
      id: '4.5',
      desc: 'Ensure Content trust for Docker is Enabled (Automated)',
      scored: true,
      remediation: 'Add DOCKER_CONTENT_TRUST variable to the /etc/environment file using command echo DOCKER_CONTENT_TRUST=1 | sudo tee -a /etc/environment.',
      impact: 'This prevents users from working with tagged images unless they contain a signature.',
      run: (ctx) => (ctx.env['DOCKER_CONTENT_TRUST'] === '1' ? { result: 'PASS' } : { result: 'WARN', details: 'DOCKER_CONTENT_TRUST is not set to 1 in this environment' }),
    },
    {
      id: '4.6',
      desc: 'Ensure that HEALTHCHECK instructions have been added to container images (Automated)',
      scored: true,
      remediation: 'You should follow the Docker documentation and rebuild your container images to include the HEALTHCHECK instruction.',
      impact: 'None.',
      run(ctx) {
        if (ctx.images.length === 0) return { result: 'INFO', details: 'No images found' };
        const items = ctx.images.filter((i) => {
          const hc = (i.inspect?.Config as { Healthcheck?: { Test?: string[] | null } | null } | undefined)?.Healthcheck;
          return !hc || !hc.Test || hc.Test.length === 0 || hc.Test[0] === 'NONE';
        }).map(imageName);
        return items.length === 0 ? { result: 'PASS' } : { result: 'WARN', details: listDetails('Images w/o HEALTHCHECK', items), items };
      },
    },
    {
      id: '4.7',
      desc: 'Ensure update instructions are not used alone in the Dockerfile (Manual)',
      scored: false,
      remediation: 'You should use update instructions together with install instructions and version pinning for packages while installing them. This prevent caching and force the extraction of the required versions. Alternatively, you could use the --no-cache flag during the docker build process to avoid using cached layers.',
      impact: 'Adding the update instructions to the Dockerfile will reduce the effectiveness of caching.',
      run: (ctx) => historyCheck(ctx, 'Update instructions found', isUpdateAlone),
    },
    note('4.8', 'Ensure setuid and setgid permissions are removed (Manual)',
      'You should allow setuid and setgid permissions only on executables which require them. You could remove these permissions at build time by adding the following command in your Dockerfile, preferably towards the end of the Dockerfile: RUN find / -perm /6000 -type f -exec chmod a-s {} \\; || true',
      'The above command would break all executables that depend on setuid or setgid permissions including legitimate ones. You should therefore be careful to modify the command to suit your requirements so that it does not reduce the permissions of legitimate programs excessively. Because of this, you should exercise a degree of caution and examine all processes carefully before making this type of modification in order to avoid outages.'),
    {
      id: '4.9',
      desc: 'Ensure that COPY is used instead of ADD in Dockerfiles (Manual)',
      scored: false,
      remediation: 'You should use COPY rather than ADD instructions in Dockerfiles.',
      impact: 'Care needs to be taken in implementing this control if the application requires functionality that is part of the ADD instruction, for example, if you need to retrieve files from remote URLS.',
      run: (ctx) => historyCheck(ctx, 'ADD in image history', isAddInstruction),
    },
    note('4.10', 'Ensure secrets are not stored in Dockerfiles (Manual)',
      'Do not store any kind of secrets within Dockerfiles. Where secrets are required during the build process, make use of a secrets management tool, such as the buildkit builder included with Docker.',
      'A proper secrets management process will be required for Docker image building.'),
    note('4.11', 'Ensure only verified packages are installed (Manual)',
      'You should use a secure package distribution mechanism of your choice to ensure the authenticity of software packages.'),
    note('4.12', 'Ensure all signed artifacts are validated (Manual)',
      'Validate artifacts signatures before uploading to the package registry.'),
  ],
};
