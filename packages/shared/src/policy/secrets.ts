// Secret detectors: decide whether a piece of text (an env value, a label, a
// command argument, an image history line) holds secret material, and name
// the detectors that matched. The agent runs these ON THE HOST and reports
// only { location, detector } — the matched text never leaves this module,
// which is why every function here returns detector names and nothing else.

export interface SecretDetector {
  /** Stable name, reported in SecretHit.detector and in finding evidence. */
  readonly name: string;
  readonly description: string;
}

interface DetectorImpl extends SecretDetector {
  /** Returns true when `text` contains what this detector looks for. */
  test(text: string): boolean;
}

// Values that are obviously not secrets: templates, placeholders, booleans,
// references to files. Keeping these out is most of the false-positive work.
const PLACEHOLDER_RE =
  /^(?:\$\{[^}]*\}|\$\(.*\)|\$[A-Za-z_][A-Za-z0-9_]*|\{\{.*\}\}|<[^>]*>|%[A-Za-z_][A-Za-z0-9_]*%|%\([^)]*\)s|\*+|x{3,}|X{3,}|\.{3,}|-|true|false|yes|no|on|off|null|nil|none|undefined|empty|changeit_placeholder|required|optional|prompt|redacted|\[redacted\]|<redacted>|\*\*\*redacted\*\*\*)$/i;

/** A value pointing at a file (Docker secrets, mounted credentials) rather than holding the secret. */
function isFileReference(v: string): boolean {
  if (/^file:/i.test(v)) return true;
  return /^(?:\/|\.\.?\/|~\/)[^\s]*$/.test(v);
}

/** True when a value assigned to a secret-looking key is worth reporting. */
function isNonTrivialValue(raw: string): boolean {
  const v = raw.trim().replace(/^["']|["']$/g, '');
  if (v.length === 0) return false;
  if (PLACEHOLDER_RE.test(v)) return false;
  if (isFileReference(v)) return false;
  return true;
}

// database URLs: scheme://user:password@host — the password part must be a
// real value (not empty, not a ${VAR} template).
const DB_SCHEMES =
  'postgres(?:ql)?|postgis|mysql|mysqlx|mariadb|mongodb(?:\\+srv)?|redis|rediss|valkey|amqps?|mssql|sqlserver|oracle|cockroach(?:db)?|clickhouse|couchdb|couchbase|cassandra|neo4j(?:\\+s)?|bolt|nats|mqtts?|ldaps?|ftps?|sftp|smtps?|jdbc:[a-z0-9]+';
const DB_URL_RE = new RegExp(`(?:^|[^A-Za-z0-9+.-])(?:${DB_SCHEMES})://([^\\s:/@'"]*):([^\\s@'"]+)@[^\\s/'"@]+`, 'gi');

const AWS_KEY_ID_RE = /(?:^|[^A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])/;
const AWS_SECRET_RE =
  /aws[_.-]?secret(?:[_.-]?access)?[_.-]?key["']?\s*(?:[:=]|=>)\s*["']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])/i;
const AWS_SECRET_VALUE_RE = /^[A-Za-z0-9/+]{40}$/;
const GCP_SA_RE = /"type"\s*:\s*"service_account"|"private_key_id"\s*:\s*"[0-9a-f]{16,}"/;
const PEM_RE = /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----/;
const GITHUB_RE = /(?:^|[^A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})/;
const SLACK_RE = /(?:^|[^A-Za-z0-9])xox[abprs]-[A-Za-z0-9-]{10,}/;
const JWT_RE = /(?:^|[^A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/;

// key=value and --flag=value / --flag value forms. The key may carry a
// prefix (DB_PASSWORD=, mysql-root-password:) but must END with the keyword,
// so PASSWORD_FILE=… and TOKEN_TTL=… do not match.
const ASSIGN_KEYWORDS =
  'password|passwd|passphrase|pwd|pass|secret|token|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|private[_-]?key|client[_-]?secret|auth[_-]?token|access[_-]?token';
const ASSIGN_RE = new RegExp(
  `(?:^|[^A-Za-z0-9])(?:[A-Za-z0-9]+[_.-])*(?:${ASSIGN_KEYWORDS})["']?\\s*(?:=|:(?!//)|=>)\\s*("[^"]*"|'[^']*'|[^\\s"'&;,]+)`,
  'gi',
);
const FLAG_RE = new RegExp(`(?:^|\\s)--?((?:[a-z0-9]+-)*)(?:password|passwd|passphrase|pass|pwd|secret|token|api-?key|auth-token|access-token|client-secret)(=|\\s+)("[^"]*"|'[^']*'|[^\\s"']+)`, 'gi');
// "--no-password db", "--ask-password host": boolean flags, the next word is not their value.
const BOOLEAN_FLAG_PREFIX = /^(?:no|ask|prompt|skip|require|use|with|without|disable|enable|allow|reset|change|show|hide|print|read|stdin)-/i;
// Dockerfile history keeps the legacy `ENV NAME value` form.
const ENV_SPACE_RE = /(?:^|\s)ENV\s+([A-Za-z_][A-Za-z0-9_]*)\s+([^\s=][^\s]*)/g;

function testDbUrl(text: string): boolean {
  DB_URL_RE.lastIndex = 0;
  for (let m = DB_URL_RE.exec(text); m; m = DB_URL_RE.exec(text)) {
    if (isNonTrivialValue(m[2]!)) return true;
  }
  return false;
}

function testAssign(text: string): boolean {
  ASSIGN_RE.lastIndex = 0;
  for (let m = ASSIGN_RE.exec(text); m; m = ASSIGN_RE.exec(text)) {
    // `pwd=/app` and friends are paths, not passwords; isNonTrivialValue drops them.
    if (isNonTrivialValue(m[1]!)) return true;
  }
  FLAG_RE.lastIndex = 0;
  for (let m = FLAG_RE.exec(text); m; m = FLAG_RE.exec(text)) {
    const v = m[3]!;
    if (v.startsWith('-')) continue; // "--password --verbose": the next token is another flag
    if (m[2] !== '=' && BOOLEAN_FLAG_PREFIX.test(m[1]!)) continue;
    if (isNonTrivialValue(v)) return true;
  }
  ENV_SPACE_RE.lastIndex = 0;
  for (let m = ENV_SPACE_RE.exec(text); m; m = ENV_SPACE_RE.exec(text)) {
    if (isSecretName(m[1]!) && isNonTrivialValue(m[2]!)) return true;
  }
  return false;
}

const DETECTORS: readonly DetectorImpl[] = [
  {
    name: 'database-url-credentials',
    description: 'A connection URL with an embedded password (postgres://user:pass@host, mysql, mongodb(+srv), redis, amqp, mssql, …).',
    test: testDbUrl,
  },
  {
    name: 'aws-access-key-id',
    description: 'An AWS access key id (AKIA… long-term or ASIA… temporary, 20 characters).',
    test: (t) => AWS_KEY_ID_RE.test(t),
  },
  {
    name: 'aws-secret-access-key',
    description: 'A 40-character AWS secret access key assigned to an aws_secret_access_key-like name.',
    test: (t) => AWS_SECRET_RE.test(t),
  },
  {
    name: 'gcp-service-account-key',
    description: 'A Google Cloud service-account JSON key ("type": "service_account" / "private_key_id").',
    test: (t) => GCP_SA_RE.test(t),
  },
  {
    name: 'private-key-pem',
    description: 'A PEM private key block (-----BEGIN … PRIVATE KEY-----).',
    test: (t) => PEM_RE.test(t),
  },
  {
    name: 'github-token',
    description: 'A GitHub token (ghp_, gho_, ghu_, ghs_, ghr_ or github_pat_).',
    test: (t) => GITHUB_RE.test(t),
  },
  {
    name: 'slack-token',
    description: 'A Slack token (xoxa-, xoxb-, xoxp-, xoxr-, xoxs-).',
    test: (t) => SLACK_RE.test(t),
  },
  {
    name: 'jwt',
    description: 'A JSON Web Token (eyJ….eyJ….signature).',
    test: (t) => JWT_RE.test(t),
  },
  {
    name: 'generic-password-assignment',
    description: 'A password/secret/token/api_key assignment with a real value (password=…, --password …); references like ${VAR} or file paths are ignored.',
    test: testAssign,
  },
];

/** Every detector, for docs, policy params validation and `bulkhead` output. */
export const SECRET_DETECTORS: readonly SecretDetector[] = DETECTORS.map(({ name, description }) => ({ name, description }));

/** Names of the detectors, for quick membership checks. */
export const SECRET_DETECTOR_NAMES: readonly string[] = DETECTORS.map((d) => d.name);

/**
 * Text no detector can match: it contains none of the fragments every
 * detector needs ("://" for a database URL, "AKIA"/"ASIA", "secret",
 * "service_account"/"private_key_id", "gh?_"/"github_pat_", "xox", "eyJ", and
 * the assignment keywords — each contains "pass", "pwd", "secret", "token" or
 * "key" — and "ENV" for history lines). One scan instead of a dozen: almost
 * every value (PATH=…, APP_MODE=prod, sleep 600) is cleared here, which keeps
 * the authorization plugin's decision on a create fast. Keep in step with the
 * detectors above (secrets.test.ts checks every detector's examples pass it).
 */
const MAYBE_SECRET_RE = /:\/\/|AKIA|ASIA|secret|service_account|private_key_id|gh[pousr]_|github_pat_|xox|eyJ|pass|pwd|token|key|ENV/i;

/** False when `text` cannot match any detector (see MAYBE_SECRET_RE). Exported for tests. */
export function maybeSecret(text: string): boolean {
  return MAYBE_SECRET_RE.test(text);
}

/** Env/label names that can be secret names (isSecretName, the AWS secret key names). */
const MAYBE_SECRET_NAME_RE = /pass|pwd|secret|token|key|cred/i;

/**
 * Names of the detectors that match `text`, in catalogue order. Never returns
 * (or logs) the matched material.
 */
export function detectSecrets(text: string): string[] {
  if (!text || !MAYBE_SECRET_RE.test(text)) return [];
  const out: string[] = [];
  for (const d of DETECTORS) if (d.test(text)) out.push(d.name);
  return out;
}

// Env names that hold a secret by convention. The name is split into words
// (DB_PASSWORD, dbPassword, db-password → db, password) and the LAST word (or
// last two) decides, so PASSWORD_FILE, TOKEN_TTL and SECRET_NAME are not secrets.
const SECRET_LAST_WORDS = new Set(['password', 'passwd', 'passphrase', 'pass', 'pwd', 'secret', 'token', 'apikey', 'credentials', 'creds']);
const SECRET_KEY_QUALIFIERS = new Set(['api', 'private', 'secret', 'access', 'master', 'encryption', 'signing', 'auth', 'client', 'license', 'session']);
const NOT_SECRET_NAMES = new Set(['pwd', 'oldpwd']);

function splitWords(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
}

/** True when an env/label NAME says it holds a secret (DB_PASSWORD, API_KEY, GITHUB_TOKEN, SECRET_KEY_BASE…). */
export function isSecretName(name: string): boolean {
  const lower = name.toLowerCase();
  if (NOT_SECRET_NAMES.has(lower)) return false;
  const w = splitWords(name);
  if (w.length === 0) return false;
  const last = w[w.length - 1]!;
  if (SECRET_LAST_WORDS.has(last)) return true;
  if (last === 'key' && w.length >= 2 && SECRET_KEY_QUALIFIERS.has(w[w.length - 2]!)) return true;
  // Rails' SECRET_KEY_BASE and similar "<qualifier>_key_base".
  if (last === 'base' && w.length >= 3 && w[w.length - 2] === 'key' && w[w.length - 3] === 'secret') return true;
  return false;
}

/**
 * Detectors matching one environment variable. Besides what detectSecrets
 * finds in the value, a secret-looking NAME with a real value is reported as
 * `generic-password-assignment` (and an AWS secret key name with a 40-char
 * value as `aws-secret-access-key`). Empty values, ${VAR} templates and file
 * references (PASSWORD_FILE=/run/secrets/db) are fine.
 */
export function detectSecretsInEnv(name: string, value: string): string[] {
  if (!MAYBE_SECRET_RE.test(value) && !MAYBE_SECRET_NAME_RE.test(name)) return [];
  const found = new Set(detectSecrets(value));
  if (value && isNonTrivialValue(value)) {
    const words = splitWords(name).join('_');
    if (/aws_secret(?:_access)?_key$/.test(words) || words === 'secret_access_key') {
      if (AWS_SECRET_VALUE_RE.test(value.trim())) found.add('aws-secret-access-key');
    }
    if (isSecretName(name)) found.add('generic-password-assignment');
  }
  return SECRET_DETECTOR_NAMES.filter((n) => found.has(n));
}

/**
 * Detectors per argument of a command line (Entrypoint + Cmd, one element per
 * argument). `--password hunter2` split over two arguments is reported at the
 * index of the value. Returns only the arguments with hits.
 */
export function detectSecretsInArgv(argv: readonly string[]): { index: number; detectors: string[] }[] {
  const out: { index: number; detectors: string[] }[] = [];
  for (let i = 0; i < argv.length; i++) {
    const found = new Set(detectSecrets(argv[i]!));
    const pair = i > 0 ? `${argv[i - 1]!} ${argv[i]!}` : '';
    if (i > 0 && !found.has('generic-password-assignment') && MAYBE_SECRET_RE.test(pair) && testAssign(pair) && !testAssign(argv[i - 1]!)) {
      found.add('generic-password-assignment');
    }
    if (found.size > 0) out.push({ index: i, detectors: SECRET_DETECTOR_NAMES.filter((n) => found.has(n)) });
  }
  return out;
}
