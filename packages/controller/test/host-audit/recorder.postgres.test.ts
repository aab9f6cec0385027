// recorder.test.ts, every assertion, on a private PostgreSQL cluster (the host_audits SQL is shared).
import { runOnPostgres } from '../store/fixtures/backend';

runOnPostgres(() => require('./recorder.test'));
