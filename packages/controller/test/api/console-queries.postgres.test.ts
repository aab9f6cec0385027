// console-queries.test.ts, every assertion, on a private PostgreSQL cluster.
import { runOnPostgres } from '../store/fixtures/backend';

runOnPostgres(() => require('./console-queries.test'));
