// reported-verdicts.test.ts, every assertion, on a private PostgreSQL cluster (two replicas = two stores on one database).
import { runOnPostgres } from '../store/fixtures/backend';

runOnPostgres(() => require('./reported-verdicts.test'));
