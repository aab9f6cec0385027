// prune-record.test.ts on a private PostgreSQL cluster (the host_audits SQL is shared; the API/CLI part runs once, on SQLite).
import { runOnPostgres } from '../store/fixtures/backend';

runOnPostgres(() => require('./prune-record.test'));
