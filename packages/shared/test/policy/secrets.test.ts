import t from 'tap';
import { detectSecrets, detectSecretsInEnv, detectSecretsInArgv, isSecretName, maybeSecret, SECRET_DETECTORS, SECRET_DETECTOR_NAMES } from '../../src/policy/secrets';

// Assembled at run time so that this file does not itself trip secret scanners.
const AKIA = 'AKIA' + 'Q3EGRSXXNM5PJ7ZB';
const ASIA = 'ASIA' + 'Q3EGRSXXNM5PJ7ZB';
const AWS_SECRET = 'wJalrXUtnFEMI/K7MDENG/' + 'bPxRfiCYEXAMPLEKEY';
const GHP = 'ghp_' + 'a'.repeat(18) + 'B'.repeat(18);
const GITHUB_PAT = 'github_pat_' + '11ABCDEFG0' + 'x'.repeat(30);
const SLACK = 'xoxb-' + '123456789012-1234567890123-abcdefABCDEF';
const JWT = 'eyJhbGciOiJIUzI1NiJ9' + '.' + 'eyJzdWIiOiIxMjM0NTY3ODkwIn0' + '.' + 'dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U';
const PEM = '-----BEGIN ' + 'RSA PRIVATE KEY-----\nMIIEow...\n-----END RSA PRIVATE KEY-----';

t.test('every detector is named and described', async (t) => {
  t.same(SECRET_DETECTOR_NAMES, SECRET_DETECTORS.map((d) => d.name));
  for (const name of ['database-url-credentials', 'aws-access-key-id', 'aws-secret-access-key', 'gcp-service-account-key', 'private-key-pem', 'github-token', 'slack-token', 'jwt', 'generic-password-assignment']) {
    t.ok(SECRET_DETECTOR_NAMES.includes(name), name);
  }
  for (const d of SECRET_DETECTORS) t.ok(d.description.length > 10, `${d.name} has a description`);
});

const TEXT_CASES: [string, string, string[]][] = [
  // [name, text, expected detectors]
  ['postgres url', 'postgres://app:s3cr3t@db.internal:5432/app', ['database-url-credentials']],
  ['postgresql url', 'DATABASE_URL=postgresql://app:s3cr3t@db/app', ['database-url-credentials']],
  ['mysql url', 'mysql://root:hunter2@10.0.0.5/shop', ['database-url-credentials']],
  ['mongodb+srv url', 'mongodb+srv://admin:pa55@cluster0.example.net/test?retryWrites=true', ['database-url-credentials']],
  ['redis url with empty user', 'redis://:s3cr3t@cache:6379/0', ['database-url-credentials']],
  ['amqp url', 'amqp://guest:guest2@rabbit:5672/', ['database-url-credentials']],
  ['mssql url', 'mssql://sa:Str0ng!Pass@sql:1433', ['database-url-credentials']],
  ['jdbc url', 'jdbc:postgresql://u:p4ss@db/x', ['database-url-credentials']],
  ['db url without password', 'postgres://app@db/app', []],
  ['db url with templated password', 'postgres://app:${DB_PASSWORD}@db/app', []],
  ['db url with empty password', 'postgres://app:@db/app', []],
  ['http url with credentials is not a database url', 'https://user:pw@example.com/', []],
  ['aws access key id', `AWS_ACCESS_KEY_ID=${AKIA}`, ['aws-access-key-id']],
  ['aws temporary key id', ASIA, ['aws-access-key-id']],
  ['akia too short', 'AKIA1234', []],
  ['aws secret key assignment', `aws_secret_access_key = ${AWS_SECRET}`, ['aws-secret-access-key', 'generic-password-assignment']],
  ['aws secret key, 40 chars but no key name', AWS_SECRET, []],
  ['gcp service account json', '{"type": "service_account", "project_id": "p"}', ['gcp-service-account-key']],
  ['gcp private_key_id', '{"private_key_id": "0123456789abcdef0123"}', ['gcp-service-account-key']],
  ['pem rsa private key', PEM, ['private-key-pem']],
  ['pem openssh private key', '-----BEGIN OPENSSH PRIVATE KEY-----', ['private-key-pem']],
  ['pem pkcs8 private key', '-----BEGIN PRIVATE KEY-----', ['private-key-pem']],
  ['pem public key is fine', '-----BEGIN PUBLIC KEY-----', []],
  ['pem certificate is fine', '-----BEGIN CERTIFICATE-----', []],
  ['github classic token', GHP, ['github-token']],
  ['github fine-grained token', GITHUB_PAT, ['github-token']],
  ['github prefix alone', 'ghp_short', []],
  ['slack bot token', SLACK, ['slack-token']],
  ['jwt', `Authorization: Bearer ${JWT}`, ['jwt']],
  ['eyJ but not a jwt', 'eyJhbGciOi', []],
  ['password assignment', 'password=hunter2', ['generic-password-assignment']],
  ['prefixed password assignment', 'MYSQL_ROOT_PASSWORD=hunter2', ['generic-password-assignment']],
  ['api_key assignment', 'api_key: abcdef123456', ['generic-password-assignment']],
  ['secret assignment quoted', 'secret="very secret"', ['generic-password-assignment']],
  ['token assignment', 'token=abc123', ['generic-password-assignment']],
  ['pwd assignment', 'pwd=letmein', ['generic-password-assignment']],
  ['--password=x flag', 'mysqld --password=x', ['generic-password-assignment']],
  ['--password x flag', 'app --db-password hunter2 --verbose', ['generic-password-assignment']],
  ['--token flag', 'agent --token=abc.def', ['generic-password-assignment']],
  ['password flag followed by another flag', 'app --password --verbose', []],
  ['boolean --no-password flag', 'psql --no-password appdb', []],
  ['boolean --ask-password flag', 'mysqldump --ask-password shop', []],
  ['docker login --password-stdin', 'docker login --password-stdin -u ci registry.example.com', []],
  ['--token-file path', 'agent --token-file /run/secrets/t', []],
  ['history: ENV with =', '/bin/sh -c #(nop)  ENV DB_PASSWORD=hunter2', ['generic-password-assignment']],
  ['history: legacy ENV name value', '/bin/sh -c #(nop)  ENV API_TOKEN s3cr3tvalue', ['generic-password-assignment']],
  ['history: legacy ENV, harmless name', '/bin/sh -c #(nop)  ENV NGINX_VERSION 1.25.3', []],
  ['history: ARG with secret', 'ARG NPM_TOKEN=abc123def', ['generic-password-assignment']],
  ['json password field', '{"user": "app", "password": "hunter2"}', ['generic-password-assignment']],
  ['empty token', 'TOKEN=', []],
  ['password file', 'PASSWORD_FILE=/run/secrets/x', []],
  ['password pointing at a path', 'password=/run/secrets/db', []],
  ['templated password', 'password=${DB_PASSWORD}', []],
  ['shell variable password', 'password=$DB_PASSWORD', []],
  ['placeholder password', 'password=<your-password>', []],
  ['masked password', 'password=********', []],
  ['PWD is a directory', 'PWD=/app', []],
  ['token ttl', 'TOKEN_TTL=3600', []],
  ['bypass is not pass', 'BYPASS=1', []],
  ['ordinary command', 'nginx -g daemon off;', []],
  ['apt history line', '/bin/sh -c apt-get update && apt-get install -y curl', []],
  ['empty', '', []],
];

t.test('detectSecrets: table', async (t) => {
  for (const [name, text, want] of TEXT_CASES) t.same(detectSecrets(text), want, name);
});

t.test('the pre-filter: clears ordinary values, never a text some detector matches', async (t) => {
  for (const [name, text, want] of TEXT_CASES) if (want.length > 0) t.ok(maybeSecret(text), `passes the pre-filter: ${name}`);
  for (const plain of ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin', 'APP_MODE=bench', 'sleep', '600', 'nginx -g daemon off;', 'bulkhead.project=web']) {
    t.notOk(maybeSecret(plain), `cleared: ${plain}`);
    t.same(detectSecrets(plain), []);
  }
  // Each detector on its own, with the pre-filter out of the way, agrees on the table.
  for (const [name, text, want] of TEXT_CASES) if (!maybeSecret(text)) t.same(want, [], `no detector can match what the pre-filter clears: ${name}`);
});

t.test('detectSecrets never returns secret material', async (t) => {
  const all = [AKIA, AWS_SECRET, GHP, SLACK, JWT, 'hunter2'].join(' password=hunter2 ');
  for (const d of detectSecrets(all)) t.ok(SECRET_DETECTOR_NAMES.includes(d));
});

const ENV_CASES: [string, string, string, string[]][] = [
  ['DB_PASSWORD set', 'DB_PASSWORD', 'hunter2', ['generic-password-assignment']],
  ['PASSWORD set', 'PASSWORD', 'x', ['generic-password-assignment']],
  ['camelCase dbPassword', 'dbPassword', 'hunter2', ['generic-password-assignment']],
  ['API_KEY', 'API_KEY', 'abc', ['generic-password-assignment']],
  ['APIKEY', 'APIKEY', 'abc', ['generic-password-assignment']],
  ['PRIVATE_KEY', 'PRIVATE_KEY', 'abc', ['generic-password-assignment']],
  ['SECRET_KEY_BASE', 'SECRET_KEY_BASE', 'abcdef', ['generic-password-assignment']],
  ['CLIENT_SECRET', 'CLIENT_SECRET', 'abcdef', ['generic-password-assignment']],
  ['GITHUB_TOKEN with a real token', 'GITHUB_TOKEN', GHP, ['github-token', 'generic-password-assignment']],
  ['AWS secret by name', 'AWS_SECRET_ACCESS_KEY', AWS_SECRET, ['aws-secret-access-key', 'generic-password-assignment']],
  ['AWS key id by value', 'AWS_ACCESS_KEY_ID', AKIA, ['aws-access-key-id']],
  ['DATABASE_URL', 'DATABASE_URL', 'postgres://u:p4ss@db/x', ['database-url-credentials']],
  ['empty TOKEN', 'TOKEN', '', []],
  ['PASSWORD_FILE path', 'PASSWORD_FILE', '/run/secrets/x', []],
  ['POSTGRES_PASSWORD_FILE path', 'POSTGRES_PASSWORD_FILE', '/run/secrets/db', []],
  ['PASSWORD pointing at a file', 'PASSWORD', '/run/secrets/db', []],
  ['templated', 'DB_PASSWORD', '${FROM_VAULT}', []],
  ['PWD', 'PWD', '/app', []],
  ['OLDPWD', 'OLDPWD', 'x', []],
  ['TOKEN_TTL', 'TOKEN_TTL', '3600', []],
  ['PASSWORD_MIN_LENGTH', 'PASSWORD_MIN_LENGTH', '12', []],
  ['SECRET_NAME', 'SECRET_NAME', 'db', []],
  ['AWS_ACCESS_KEY_ID is not a secret name', 'AWS_ACCESS_KEY_ID', 'not-a-key', []],
  ['PATH', 'PATH', '/usr/local/bin:/usr/bin', []],
  ['HOME', 'HOME', '/root', []],
];

t.test('detectSecretsInEnv: table', async (t) => {
  for (const [name, k, v, want] of ENV_CASES) t.same(detectSecretsInEnv(k, v), want, name);
});

t.test('isSecretName', async (t) => {
  t.ok(isSecretName('MYSQL_ROOT_PASSWORD'));
  t.ok(isSecretName('db-pass'));
  t.notOk(isSecretName('PASS_THROUGH'));
  t.notOk(isSecretName(''));
});

t.test('detectSecretsInArgv: split flag and value', async (t) => {
  t.same(detectSecretsInArgv(['app', '--password', 'hunter2', '--port', '80']), [{ index: 2, detectors: ['generic-password-assignment'] }]);
  t.same(detectSecretsInArgv(['app', '--password=hunter2']), [{ index: 1, detectors: ['generic-password-assignment'] }]);
  t.same(detectSecretsInArgv(['app', '--password', '--verbose']), []);
  t.same(detectSecretsInArgv(['nginx', '-g', 'daemon off;']), []);
  t.same(detectSecretsInArgv(['psql', 'postgres://u:p4ss@db/x']), [{ index: 1, detectors: ['database-url-credentials'] }]);
});
